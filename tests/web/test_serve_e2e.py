"""`digest serve` as a real process with a real SMTP server (issue 23): the sign-up outbox fed
poison among good sign-ups keeps going; SIGTERM stops it as `digest run` stops (exit 0, a
"stopped" line), and the confirmations still queued are kept and sent at the next start."""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest.configfile import load_settings
from digest.models import Subscriber
from digest.storage import Database, utcnow
from digest.web import make_app
from tests.conftest import wait_for
from tests.servers import SMTPSink
from tests.web.helpers import csrf_of, serving

pytestmark = pytest.mark.slow
HOSTILE = "=?utf-8?q?x=0D=0ABcc:_v@example.com?="
PACKAGED = Path(__file__).resolve().parents[2] / "templates"


def env_for(sqlite_url: str, smtp: SMTPSink, **more: str) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": sqlite_url,
        "DIGEST_WEB_SIGNUP": "true",
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp.port),
        "DIGEST_NEWSLETTER_SECRET_KEY": "serve-e2e-key",
        **more,
    }


def sign_up(client: httpx.Client, email: str, name: str = "") -> httpx.Response:
    csrf = csrf_of(client.get("/subscribe").text)
    return client.post("/subscribe", data={"csrf": csrf, "email": email, "name": name,
                                           "sections": ["ml", "systems"]})  # fmt: skip


def outbox(client: httpx.Client) -> dict[str, Any]:
    report: dict[str, Any] = client.get("/healthz").json()["outbox"]
    return report


def test_the_outbox_outlives_poison_among_good_sign_ups(
    sqlite_url: str, smtp: SMTPSink, workdir: Path
) -> None:
    # A template of the operator's that fails for one address (a bug, not a TemplateError:
    # it is the kind of failure that ended the worker), ...
    templates = workdir / "templates"
    templates.mkdir()
    confirm = (PACKAGED / "confirm.txt.j2").read_text()
    bug = '{% if email.startswith("poison") %}{{ 1 // 0 }}{% endif %}\n'
    (templates / "confirm.txt.j2").write_text(bug + confirm)
    # ... and a row from before names were checked, whose name is an encoded word.
    db = Database(sqlite_url)
    with db.session() as s:
        s.add(Subscriber(email="eve@example.com", name=HOSTILE, status="pending",
                         hard_bounces=0, created_at=utcnow()))  # fmt: skip
    env = env_for(sqlite_url, smtp, DIGEST_NEWSLETTER_TEMPLATES=str(templates))
    with serving(env, workdir) as (base, process), httpx.Client(base_url=base) as client:
        assert sign_up(client, "ann@example.com").status_code == 200
        assert sign_up(client, "poison@example.com").status_code == 200  # its job fails
        assert sign_up(client, "eve@example.com").status_code == 200  # mailed without the name
        refused = sign_up(client, "mallory@example.com", name=HOSTILE)  # refused by the form
        assert refused.status_code == 400 and "=?" in refused.text
        for email in ("bob@example.com", "cy@example.com"):
            assert sign_up(client, email).status_code == 200
        wait_for(lambda: outbox(client)["queued"] == 0, what="the outbox to finish")
        report = client.get("/healthz")
        metrics = client.get("/metrics").text
        assert process.poll() is None
        # Still running, still mailing.
        assert sign_up(client, "dee@example.com").status_code == 200
        wait_for(lambda: "dee@example.com" in smtp.recipients(), what="a later sign-up's email")
    log = (workdir / "serve.log").read_text()
    assert smtp.recipients() == [
        "ann@example.com", "eve@example.com", "bob@example.com", "cy@example.com",
        "dee@example.com",
    ]  # fmt: skip
    eve = smtp.messages[1]
    assert eve["To"] == "eve@example.com" and "Bcc" not in eve
    assert report.status_code == 200
    assert {k: report.json()["outbox"][k] for k in ("worker", "sent", "failed", "restarts")} == {
        "worker": "running", "sent": 4, "failed": 1, "restarts": 0,
    }  # fmt: skip
    assert 'digest_outbox_jobs_total{outcome="failed"} 1.0' in metrics
    assert "outbox: a sign-up failed: integer division or modulo by zero" in log
    db.dispose()


def test_sigterm_stops_serve_cleanly_and_keeps_the_queued_confirmations(
    sqlite_url: str, smtp: SMTPSink, workdir: Path
) -> None:
    from digest.web.outbox import KEPT_KEY

    # The SMTP server holds the first recipient until the test releases it: that email is
    # in flight, and the others wait in the queue, when SIGTERM comes.
    arrived, release = threading.Event(), threading.Event()
    accept = smtp.handler.handle_RCPT

    async def held(*args: Any) -> str:
        arrived.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)
        return str(await accept(*args))

    smtp.handler.handle_RCPT = held  # type: ignore[method-assign]
    env = env_for(sqlite_url, smtp)
    try:
        with serving(env, workdir) as (base, process), httpx.Client(base_url=base) as client:
            for who in ("ann", "bob", "cy"):
                assert sign_up(client, f"{who}@example.com").status_code == 200
            wait_for(arrived.is_set, what="the first email to reach the SMTP server")
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0
    finally:
        release.set()
    log = (workdir / "serve.log").read_text()
    assert "SIGTERM received" in log and "outbox: 3 job(s) not done at the stop" in log
    assert log.rstrip().endswith("stopped")
    assert smtp.recipients() == []
    # The next start (here: the web app in this process) sends them, once each.
    smtp.handler.handle_RCPT = accept  # type: ignore[method-assign]
    db = Database(sqlite_url)
    assert db.get_meta(KEPT_KEY) not in (None, "[]")
    app = make_app(db, load_settings(env=env))
    assert app.state.site.outbox.wait_idle(10)
    app.state.site.close()
    assert sorted(smtp.recipients()) == ["ann@example.com", "bob@example.com", "cy@example.com"]
    assert db.get_meta(KEPT_KEY) == "[]"
    db.dispose()
