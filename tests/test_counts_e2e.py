"""End to end, on both databases: a send through the CLI to an SMTP server on loopback, then
/metrics (a real `digest serve`) and `digest status` show its counts; a bounce taken by the
Postmark webhook changes them; `digest prune` folds the issue's log once delivery.keep_log
has passed (the issue backdated here: no waiting) and nothing either of them reports
changes, and a bounce that comes after the fold is still taken."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, update

from digest.bounces.events import list_events
from digest.models import Delivery, Issue
from digest.storage import Database, utcnow
from tests.conftest import cli_json, run_cli
from tests.daemon_helpers import Farm
from tests.servers import SMTPSink
from tests.web.helpers import serving
from tests.web.test_health import mail_env, one, scrape

POSTMARK = ("postmark", "hook-secret-of-24-chars")
READERS = ("ann@example.com", "bob@example.com", "cy@example.com")


def cli(args: list[str], env: dict[str, str]) -> str:
    result = run_cli(args, env)
    assert result.exit_code == 0, result.output
    return result.output


def status(env: dict[str, str]) -> dict[str, Any]:
    report: dict[str, Any] = cli_json(["status", "--json"], env)
    return {"last_issue": report["last_issue"], "issue_rates": report["issue_rates"]}


def bounce(base: str, n: int, email: str) -> None:
    hard = {"RecordType": "Bounce", "ID": n, "Type": "HardBounce", "Email": email,
            "Details": "smtp;550 5.1.1 no such user"}  # fmt: skip
    r = httpx.post(base + "/webhooks/postmark", content=json.dumps(hard), auth=POSTMARK, timeout=10)
    assert r.status_code == 200, r.text


def reported(base: str) -> dict[str, float]:
    metrics = scrape(base)
    return {
        "sent": one(metrics, "digest_deliveries", status="sent"),
        "failed": one(metrics, "digest_deliveries", status="failed"),
        "pending": one(metrics, "digest_deliveries", status="pending"),
        "bounce_rate": one(metrics, "digest_issue_bounce_rate", issue="1"),
        "last_send": one(metrics, "digest_last_send_timestamp_seconds"),
        "posts": one(metrics, "digest_posts"),
    }


def test_a_send_a_bounce_and_a_fold_as_metrics_and_status_count_them(
    workdir: Path, db_url: str, farm: Farm, smtp: SMTPSink
) -> None:
    env = mail_env(workdir, db_url, farm, smtp) | {
        "DIGEST_WEBHOOKS_POSTMARK": "true",
        "DIGEST_WEBHOOKS_POSTMARK_PASSWORD": POSTMARK[1],
    }
    cli(["poll"], env)
    for email in READERS:
        cli(["subscribers", "add", email], env)
    cli(["send"], env)
    assert sorted(smtp.recipients()) == sorted(READERS)
    sent = status(env)
    assert (sent["last_issue"]["handed_to_relay"], sent["last_issue"]["pending"]) == (3, 0)
    assert (sent["issue_rates"][0]["sent"], sent["issue_rates"][0]["hard_bounces"]) == (3, 0)

    with serving(env, workdir) as (base, _process):
        before = reported(base)
        assert (before["sent"], before["failed"], before["bounce_rate"]) == (3, 0, 0)
        assert before["posts"] == 6
        bounce(base, 1, "bob@example.com")
        bounce(base, 2, "bob@example.com")  # the same reader again: counted once
        bounced = reported(base)
        assert bounced == {**before, "bounce_rate": 1 / 3}
        assert status(env)["issue_rates"][0]["hard_bounces"] == 1

        # Half a year on: the issue's log goes, its counts stay.
        db = Database(db_url)
        try:
            with db.session() as s:
                made = utcnow() - timedelta(days=181)
                s.execute(update(Issue).values(created_at=made))
            counted = status(env)
            pruned = cli_json(["prune", "--json"], env)
            assert (pruned["issues_folded"], pruned["delivery_rows_deleted"]) == ([1], 3)
            with db.session() as s:
                assert s.scalar(select(func.count()).select_from(Delivery)) == 0
            assert reported(base) == bounced
            assert status(env) == counted
            # A bounce after the fold: taken (ann bounces), counted under no issue.
            bounce(base, 3, "ann@example.com")
            assert list_events(db, email="ann@example.com")[0].issue is None
        finally:
            db.dispose()
        assert reported(base) == bounced
    assert cli_json(["prune", "--json"], env)["issues_folded"] == []
    assert "bounced" in cli(["subscribers", "show", "ann@example.com"], env)
