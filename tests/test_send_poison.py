"""A send fed poison among good subscribers (issue 23), through `digest send` and `digest run`
with a real aiosmtpd: the good ones get the issue once, each poison row is reported and set
aside (failed for this issue: not tried again, not sent twice), and the send completes.

The poison: an address with a non-ASCII local part (a row from an older import or a restored
database; smtplib can't encode it and raised out of the whole send), a name with a line break
(no header can hold it), and an address the server refuses with 550 5.1.1 (bounced at once).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from digest.daemon.schedule import SEND_STATE_KEY, SendState
from digest.delivery.subscribers import add_subscriber
from digest.models import Delivery, Subscriber
from digest.storage import Database, utcnow
from tests.conftest import run_cli, run_digest
from tests.daemon_helpers import Farm, Running, base_env
from tests.smtp_helpers import FlakySMTP
from tests.test_cli_delivery import week_of_posts

pytestmark = pytest.mark.slow
GOOD = ["ann@example.com", "bob@example.com", "cy@example.com"]
UNENCODABLE, BROKEN_NAME, GONE = "zoë@example.com", "dan@example.com", "gone@example.com"


@pytest.fixture
def sink() -> Iterator[FlakySMTP]:
    server = FlakySMTP()
    server.handler.reject = {GONE: "550 5.1.1 No such user"}
    yield server
    server.close()


def add_readers(db_url: str) -> None:
    """The good readers, and the poison among them (rows as no command of ours writes them)."""
    db = Database(db_url)
    for email in [GOOD[0], "placeholder@example.com", GOOD[1], BROKEN_NAME, GONE, GOOD[2]]:
        add_subscriber(db, email)
    with db.session() as s:
        s.execute(
            update(Subscriber)
            .where(Subscriber.email == "placeholder@example.com")
            .values(email=UNENCODABLE)
        )
        s.execute(
            update(Subscriber)
            .where(Subscriber.email == BROKEN_NAME)
            .values(name="Dan\r\nBcc: all@example.net")
        )
    db.dispose()


def outcomes(db_url: str) -> dict[str, str]:
    db = Database(db_url)
    with db.session() as s:
        rows = s.execute(
            select(Subscriber.email, Delivery.status).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
    db.dispose()
    return {email: str(status) for email, status in rows}


def check_outcome(db_url: str, sink: FlakySMTP) -> None:
    assert Counter(sink.recipients()) == dict.fromkeys(GOOD, 1)
    assert outcomes(db_url) == {
        **dict.fromkeys(GOOD, "sent"),
        UNENCODABLE: "failed",
        BROKEN_NAME: "failed",
        GONE: "failed",
    }


def test_digest_send_sets_the_poison_aside_and_completes(
    workdir: Path, sqlite_url: str, sink: FlakySMTP
) -> None:
    env = {
        "DIGEST_DATABASE_URL": sqlite_url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(sink.port),
        "DIGEST_NEWSLETTER_FROM": "Weekend Reading <news@example.org>",
    }
    add_readers(sqlite_url)
    week_of_posts(sqlite_url)
    sent = run_digest(["send", "--as-of", "2026-01-10T08:00Z", "--json"], env, workdir)
    assert sent.returncode == 0, sent.stderr
    summary = json.loads(sent.stdout)
    assert (summary["sent"], summary["failed"], summary["pending"]) == (3, 3, 0)
    assert summary["bounced"] == [GONE]
    failures = " ".join(summary["failures"])
    for email in (UNENCODABLE, BROKEN_NAME, GONE):
        assert email in failures and email in sent.stderr  # reported
    assert "Traceback" not in sent.stderr
    assert sent.stderr.count("without List-Unsubscribe-Post") == 1  # an http base_url: said
    check_outcome(sqlite_url, sink)
    again = run_digest(["send", "--as-of", "2026-01-10T08:00Z"], env, workdir)
    assert again.returncode == 0, again.stderr
    check_outcome(sqlite_url, sink)  # nothing retried, nothing sent twice


def test_digest_run_sets_the_poison_aside_and_keeps_running(
    workdir: Path, sqlite_url: str, farm: Farm, sink: FlakySMTP, runs: list[Running]
) -> None:
    now = utcnow()
    env = base_env(workdir, sqlite_url, farm) | {
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(sink.port),
        # Due this minute and owed at start-up: no wall-clock minute to wait for.
        "DIGEST_NEWSLETTER_SEND_AT": f"cron: {now.minute} {now.hour} * * *",
    }
    assert run_cli(["poll"], env).exit_code == 0
    add_readers(sqlite_url)
    db = Database(sqlite_url)
    db.set_meta(SEND_STATE_KEY, SendState(last_due=now - timedelta(minutes=2)).to_json())
    db.dispose()
    daemon = Running(env, workdir, workdir / "run.log")
    runs.append(daemon)
    send = daemon.wait_log(lambda r: r.get("event") == "send", 60)
    assert (send["sent"], send["failed"]) == (3, 3), send
    set_aside = [r for r in daemon.records() if r.get("event") == "send_failed"]
    assert {r["email"] for r in set_aside} == {UNENCODABLE, BROKEN_NAME}
    check_outcome(sqlite_url, sink)
    assert daemon.proc.poll() is None  # still running
    said = [r for r in daemon.records() if "without List-Unsubscribe-Post" in r["message"]]
    assert len(said) == 2  # at start, and as the send delivered
    code, _took = daemon.terminate()
    assert code == 0, daemon.log.read_text()
