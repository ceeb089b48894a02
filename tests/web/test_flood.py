"""200 sign-ups from one client address within a minute, against a real `digest serve` and a
real SMTP server: at most web.signup_rate confirmation emails, every answer the same page,
and the server answering other requests all along."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from digest.storage import Database
from tests.conftest import wait_for
from tests.servers import SMTPSink
from tests.web.helpers import csrf_of, serving, subscribers

pytestmark = pytest.mark.slow
SIGNUPS = 200
RATE = 10  # web.signup_rate's default


def test_a_flood_from_one_client(
    db_url: str, smtp: SMTPSink, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_WEB_SIGNUP": "true",
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp.port),
    }
    with serving(env, workdir) as (base, _process), httpx.Client(base_url=base) as client:
        csrf = csrf_of(client.get("/subscribe").text)
        probes: list[float] = []
        flooding = threading.Event()
        flooding.set()

        def probe() -> None:  # a reader opening the archive meanwhile
            with httpx.Client(base_url=base, timeout=10) as reader:
                while flooding.is_set():
                    began = time.monotonic()
                    assert reader.get("/").status_code == 200
                    probes.append(time.monotonic() - began)
                    time.sleep(0.05)

        def sign_up(k: int) -> tuple[int, bytes, float]:
            began = time.monotonic()
            data = {"csrf": csrf, "email": f"flood{k}@example.com", "sections": ["ml"]}
            r = client.post("/subscribe", data=data, timeout=10)
            return r.status_code, r.content, time.monotonic() - began

        watcher = threading.Thread(target=probe)
        watcher.start()
        began = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(sign_up, range(SIGNUPS)))
        took = time.monotonic() - began
        flooding.clear()
        watcher.join(10)
        # The outbox's own count: every job it took is done (nothing more can come).
        wait_for(lambda: client.get("/healthz").json()["outbox"]["queued"] == 0)
        mails = len(smtp.messages)
    assert "sign-up form on at http://127.0.0.1:" in (workdir / "serve.log").read_text()
    assert took < 60
    assert {status for status, _body, _s in answers} == {200}
    # One page for all (but for the address it names, as typed).
    pages = {body.replace(f"flood{k}@".encode(), b"") for k, (_st, body, _s) in enumerate(answers)}
    assert len(pages) == 1
    assert mails == RATE
    assert len(subscribers(Database(db_url))) == RATE
    latencies = sorted(s for _status, _body, s in answers)
    assert probes and max(probes) < 1.0
    with capsys.disabled():
        print(
            f"\n{SIGNUPS} sign-ups from one client in {took:.2f} s: {mails} emails; sign-up "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} "
            f"ms; archive during the flood: {len(probes)} requests, max "
            f"{max(probes) * 1000:.0f} ms"
        )
