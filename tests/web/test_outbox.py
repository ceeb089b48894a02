"""The sign-up outbox when one job goes wrong (issue 23): a name that is an encoded word, one
stored before names were checked, a database error, a bug, a worker that dies. The good
sign-ups are all mailed, the bad one is logged and counted (/metrics), the worker goes on or
is started again (/healthz); and the request does no database work, whoever the address is."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from digest.delivery.subscribers import add_subscriber
from digest.errors import StorageError
from digest.models import Subscriber
from digest.storage import Database, utcnow
from digest.web import make_app
from tests.conftest import wait_for
from tests.servers import SMTPSink
from tests.web.helpers import csrf_of, settings_for, settled

# The red team's name: Python's email package decoded it into a line break and a Bcc: header.
HOSTILE = "=?utf-8?q?x=0D=0ABcc:_v@example.com?="


@pytest.fixture
def app(sqlite_url: str, smtp: SMTPSink) -> Iterator[Starlette]:
    db = Database(sqlite_url)
    app = make_app(db, settings_for(smtp))
    yield app
    app.state.site.close()
    db.dispose()


def sign_up(client: TestClient, email: str, name: str = "") -> Any:
    csrf = csrf_of(client.get("/subscribe").text)
    data = {"csrf": csrf, "email": email, "name": name, "sections": ["ml", "systems"]}
    return client.post("/subscribe", data=data)


def fail_once_in_the_outbox(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """The database raises ``error`` the next time the outbox's worker asks it for anything."""
    real: Callable[[Database], AbstractContextManager[Session]] = Database.session
    raised: list[BaseException] = []

    def session(self: Database) -> AbstractContextManager[Session]:
        if threading.current_thread().name == "digest-outbox" and not raised:
            raised.append(error)
            raise error
        return real(self)

    monkeypatch.setattr(Database, "session", session)


def test_an_encoded_word_name_is_refused_and_the_later_sign_ups_mailed(
    app: Starlette, smtp: SMTPSink
) -> None:
    with TestClient(app) as client:
        hostile = sign_up(client, "eve@example.com", name=HOSTILE)
        assert hostile.status_code == 400
        assert "a name can&#39;t contain &#34;=?&#34;" in hostile.text
        for k in range(3):
            assert sign_up(client, f"r{k}@example.com").status_code == 200
        wait_for(lambda: len(smtp.messages) == 3, what="three confirmation emails")
        settled(client)
    assert smtp.recipients() == ["r0@example.com", "r1@example.com", "r2@example.com"]


def test_a_stored_encoded_word_name_is_left_out_of_the_to_header(
    app: Starlette, smtp: SMTPSink
) -> None:
    db: Database = app.state.site.db
    with db.session() as s:  # a row from before names were checked for "=?"
        s.add(Subscriber(email="eve@example.com", name=HOSTILE, status="pending",
                         hard_bounces=0, created_at=utcnow()))  # fmt: skip
    with TestClient(app) as client:
        sign_up(client, "eve@example.com")  # no name given: the stored one stays
        sign_up(client, "ann@example.com", name="Ann")
        settled(client)
    assert smtp.recipients() == ["eve@example.com", "ann@example.com"]
    eve, ann = smtp.messages
    assert (eve["To"], ann["To"]) == ("eve@example.com", "Ann <ann@example.com>")
    assert "Bcc" not in eve and b"Bcc" not in smtp.raw[0]


@pytest.mark.parametrize(
    "error",
    [StorageError("database error: disk I/O error"), RuntimeError("a bug in a template")],
    ids=["database-error", "bug"],
)
def test_one_failing_job_is_logged_and_counted_and_the_next_goes(
    app: Starlette,
    smtp: SMTPSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    fail_once_in_the_outbox(monkeypatch, error)
    with TestClient(app) as client:
        sign_up(client, "lost@example.com")  # its job meets the error
        sign_up(client, "ann@example.com")
        sign_up(client, "bob@example.com")
        settled(client)
        health = client.get("/healthz")
        metrics = client.get("/metrics").text
    assert smtp.recipients() == ["ann@example.com", "bob@example.com"]
    assert f"outbox: a sign-up failed: {error}" in caplog.text
    assert health.status_code == 200
    outbox = health.json()["outbox"]
    assert (outbox["worker"], outbox["sent"], outbox["failed"]) == ("running", 2, 1)
    assert 'digest_outbox_jobs_total{outcome="failed"} 1.0' in metrics
    assert 'digest_outbox_jobs_total{outcome="sent"} 2.0' in metrics


def test_a_worker_that_dies_is_started_again(
    app: Starlette,
    smtp: SMTPSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # SystemExit is no Exception: it ends the thread, not only the job.
    fail_once_in_the_outbox(monkeypatch, SystemExit("stop"))
    with TestClient(app) as client:
        sign_up(client, "lost@example.com")
        wait_for(lambda: "the outbox's worker stopped: SystemExit" in caplog.text)
        health = client.get("/healthz").json()  # looks at the worker: starts it again
        assert (health["outbox"]["worker"], health["outbox"]["restarts"]) == ("running", 1)
        sign_up(client, "ann@example.com")
        settled(client)
        assert "digest_outbox_restarts_total 1.0" in client.get("/metrics").text
    assert smtp.recipients() == ["ann@example.com"]
    assert "started again" in caplog.text


def test_the_request_does_no_database_work_whoever_the_address_is(
    app: Starlette, smtp: SMTPSink
) -> None:
    """A complained address was answered in 4-5 ms, others in 9-12: timing told who had
    complained. Now the request only queues the sign-up: no statement runs on its thread, for
    a new, an active or a complained address."""
    db: Database = app.state.site.db
    add_subscriber(db, "active@example.com")
    complained, _ = add_subscriber(db, "frank@example.com")
    with db.session() as s:
        s.get_one(Subscriber, complained.id).status = "complained"  # type: ignore[assignment]
    on_request_threads: list[str] = []

    def note(*_args: Any) -> None:
        if threading.current_thread().name != "digest-outbox":
            on_request_threads.append(threading.current_thread().name)

    with TestClient(app) as client:
        csrf = csrf_of(client.get("/subscribe").text)
        event.listen(db.engine, "before_cursor_execute", note)
        try:
            for email in ("new@example.com", "active@example.com", "frank@example.com"):
                data = {"csrf": csrf, "email": email, "sections": ["ml"]}
                assert client.post("/subscribe", data=data).status_code == 200
            settled(client)
        finally:
            event.remove(db.engine, "before_cursor_execute", note)
    assert on_request_threads == []
    assert sorted(smtp.recipients()) == ["active@example.com", "new@example.com"]
