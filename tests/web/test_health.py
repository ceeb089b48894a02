"""For whoever watches the service: GET /healthz and GET /metrics, and the access log.

End to end: real `digest serve` and `digest run` processes (the poll, the sign-ups and the send
before them run in process), real HTTP and SMTP; the PostgreSQL server cut off through a
forwarder. The rest on SQLite (tests/README.md)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from digest.storage import Database
from digest.web import make_app
from digest.web.app import redact
from tests.conftest import BACKENDS, free_port, run_cli
from tests.daemon_helpers import Farm, Running, base_env
from tests.poll_helpers import write_opml
from tests.servers import Forwarder, Response, SMTPSink
from tests.web.helpers import link_in, serving, settings_for


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, read by prometheus_client's own parser: {(sample, labels): value}."""
    r = httpx.get(base + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def one(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics[(name, tuple(sorted(labels.items())))]


def mail_env(workdir: Path, db_url: str, farm: Farm, smtp: SMTPSink) -> dict[str, str]:
    write_opml(
        workdir / "feeds.opml",
        [(f, f"{n} blog", farm.http.url(f"/{n}.xml")) for f, n in (("ML", "ml"), ("ML", "deep"))]
        + [("Systems", "broken blog", farm.http.url("/broken.xml"))],
    )
    farm.http.route("/broken.xml", Response(500, b"down"))
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_FEEDS_OPML": str(workdir / "feeds.opml"),
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp.port),
        "DIGEST_NEWSLETTER_FROM": "Weekend Reading <news@example.org>",
    }


def cli(args: list[str], env: dict[str, str]) -> None:
    result = run_cli(args, env)
    assert result.exit_code == 0, result.output


def test_a_scrape_counts_what_was_fetched_stored_sent_and_who_reads(
    workdir: Path, sqlite_url: str, farm: Farm, smtp: SMTPSink
) -> None:
    env = mail_env(workdir, sqlite_url, farm, smtp)
    cli(["poll"], env)
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        cli(["subscribers", "add", email], env)
    cli(["subscribers", "remove", "c@example.com"], env)
    cli(["send"], env)
    cli(["poll"], env)  # the same bodies again
    before = time.time()

    with serving(env, workdir) as (base, _process):
        health = httpx.get(base + "/healthz", timeout=10)
        assert health.status_code == 200 and health.headers["cache-control"] == "no-store"
        report = health.json()
        assert (report["status"], report["database"], report["daemon"]) == ("ok", "ok", None)
        # The broken feed waits out its backoff: the second poll asked the other two.
        assert report["last_poll"]["feeds"] == 2 and report["last_poll"]["errors"] == 0
        assert report["next_send"] is not None
        unsubscribe = link_in(smtp.raw[0], "unsubscribe")  # one reader leaves, one click
        assert httpx.post(base + unsubscribe, timeout=10).status_code == 200
        metrics = scrape(base)
    # Two polls: the first stored two feeds' posts and failed on the third, the second found
    # the same bodies again (unchanged).
    fetches = {o: one(metrics, "digest_fetches_total", outcome=o) for o in
               ("new", "unchanged", "not_modified", "error")}  # fmt: skip
    assert fetches == {"new": 2, "unchanged": 2, "not_modified": 0, "error": 1}
    assert one(metrics, "digest_posts") == 6
    assert one(metrics, "digest_feeds_failing") == 1
    assert one(metrics, "digest_feeds", status="error") == 1
    assert one(metrics, "digest_issues", status="sent") == 1
    assert one(metrics, "digest_deliveries", status="sent") == 2
    assert one(metrics, "digest_subscribers", status="active") == 1
    assert one(metrics, "digest_subscribers", status="unsubscribed") == 1  # c was removed
    assert one(metrics, "digest_issue_bounce_rate", issue="1") == 0
    assert before - 120 < one(metrics, "digest_last_poll_timestamp_seconds") <= time.time()
    assert before - 120 < one(metrics, "digest_last_send_timestamp_seconds") <= before
    assert 0 < one(metrics, "digest_last_poll_duration_seconds") < 60
    assert ("digest_daemon_heartbeat_age_seconds", ()) not in metrics  # no daemon
    # The access log: a line per request, the reader's token cut out.
    log = (workdir / "serve.log").read_text()
    assert "GET /healthz 200" in log and "GET /metrics 200" in log
    assert "POST /unsubscribe/… 200" in log
    assert unsubscribe.split("/")[-1] not in log


def test_healthz_says_when_the_daemon_stopped_beating(
    workdir: Path, sqlite_url: str, farm: Farm, runs: list[Running]
) -> None:
    port = free_port()
    env = base_env(workdir, sqlite_url, farm) | {
        "DIGEST_WEB_ENABLED": "true",
        "DIGEST_WEB_PORT": str(port),
        # The first round polls the three new feeds; the next (an empty one, which /healthz
        # would show as the last poll) comes a tick later: 30 s at this interval.
        "DIGEST_FEEDS_POLL_INTERVAL": "1h",
    }
    daemon = Running(env, workdir, workdir / "run.log")
    runs.append(daemon)
    daemon.wait_log(lambda r: r.get("event") == "poll", 60)
    report = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
    assert report["status"] == "ok" and report["daemon"]["alive"] is True
    assert report["daemon"]["pid"] == daemon.proc.pid
    assert 0 <= report["daemon"]["heartbeat_age_s"] < 60
    assert report["last_poll"]["feeds"] == 3
    # The daemon's own access log is in its log format (JSON here), the path as asked.
    line = daemon.wait_log(lambda r: r.get("event") == "http", 10)
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert line["logger"] == "digest.web.access" and line["client"] == "127.0.0.1"

    daemon.proc.kill()  # kill -9: no time to let go of its lock
    daemon.proc.wait()
    with serving({"DIGEST_DATABASE_URL": sqlite_url}, workdir) as (base, _process):
        dead = httpx.get(base + "/healthz", timeout=10)
        assert dead.status_code == 503
        assert dead.json()["status"] == "unhealthy" and dead.json()["database"] == "ok"
        assert dead.json()["daemon"]["alive"] is False
        assert one(scrape(base), "digest_daemon_heartbeat_age_seconds") >= 0


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs DIGEST_TEST_DATABASE_URL")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a server to cut off
def test_healthz_says_when_the_database_server_is_gone(workdir: Path, db_url: str) -> None:
    url = make_url(db_url)
    forwarder = Forwarder((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=forwarder.port)
    Database(db_url).dispose()  # migrated before it goes through the forwarder
    env = {"DIGEST_DATABASE_URL": through.render_as_string(hide_password=False)}
    with serving(env, workdir) as (base, _process):
        assert httpx.get(base + "/healthz", timeout=10).status_code == 200
        forwarder.stop()
        gone = httpx.get(base + "/healthz", timeout=30)
        assert gone.status_code == 503
        assert gone.json()["status"] == "unhealthy"
        assert gone.json()["database"].startswith("unreachable: ")
        assert httpx.get(base + "/metrics", timeout=30).status_code == 503
        forwarder.start()  # back: healthy again, no restart needed
        assert httpx.get(base + "/healthz", timeout=30).status_code == 200
    log = (workdir / "serve.log").read_text()
    assert "GET /healthz 503" in log and "Traceback" not in log


def test_healthz_answers_503_when_the_sqlite_file_is_no_database(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    db = Database(f"sqlite:///{path}")
    with TestClient(make_app(db, settings_for(None))) as client:
        assert client.get("/healthz").status_code == 200
        db.dispose()
        path.write_bytes(b"this is not a database\n" * 200)  # a disk gone bad, a wrong copy
        r = client.get("/healthz")
        assert r.status_code == 503 and r.json()["database"].startswith("unreachable: ")
        assert client.get("/metrics").status_code == 503
    db.dispose()


def test_the_access_log_carries_fields_for_json(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(make_app(sqlite_db, settings_for(None))) as client:
        caplog.set_level(logging.INFO, logger="digest.web.access")
        client.get("/preferences/7.c2VjcmV0LW1hYy12YWx1ZQ")
    (record,) = [r for r in caplog.records if r.name == "digest.web.access"]
    fields: dict[str, Any] = record.fields  # type: ignore[attr-defined]
    assert fields["event"] == "http" and fields["path"] == "/preferences/…"
    assert fields["status"] == 400 and fields["method"] == "GET"
    assert "c2VjcmV0" not in record.getMessage()
    json.dumps(fields)


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/", "/"),
        ("/issues/12", "/issues/12"),
        ("/unsubscribe/12.Xy_z-abcdefgh", "/unsubscribe/…"),
        ("/unsubscribe/short", "/unsubscribe/…"),  # a token route: cut whatever its shape
        ("/confirm/3.1764000000.abcdefghijkl", "/confirm/…"),
        ("/preferences/", "/preferences/"),
        ("/unsubscrib/12.Xy_z-abcdefgh", "/unsubscrib/…"),  # a mistyped link: still cut
        ("/feed.xml", "/feed.xml"),
    ],
)
def test_redact_cuts_tokens_out_of_paths(path: str, logged: str) -> None:
    assert redact(path) == logged


def test_healthz_of_a_process_that_only_serves(workdir: Path, sqlite_url: str) -> None:
    """`digest serve` alone, no daemon ever: healthy, nothing polled yet."""
    with serving({"DIGEST_DATABASE_URL": sqlite_url}, workdir) as (base, _process):
        report = httpx.get(base + "/healthz", timeout=10).json()
    assert report == {**report, "status": "ok", "daemon": None, "last_poll": None}
