"""Does the sign-up form's answer time tell who is on the list? (issue 23)

Starts a real `digest serve` (sign-up on, a local SMTP server, web.signup_rate lifted) on a
SQLite database holding active and complained subscribers, then times POST /subscribe over
HTTP, in turns: a new address, an active one, one that complained. Prints the median and p90
of each and their ratios: 1.0 means the time says nothing.

    .venv/bin/python bench/signup.py [--rounds 150]

Run it against another checkout's code with PYTHONPATH=that/src (the child inherits it).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
from aiosmtpd.controller import Controller

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# Between two sign-ups: the outbox's work on one (a database write, an email) is over before
# the next is timed, so each answer is timed alone.
GAP_S = 0.05


class Sink:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(rounds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="digest-bench-signup-"))
    url = f"sqlite:///{folder / 'digest.db'}"
    smtp = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")} | {
        "DIGEST_DATABASE_URL": url,
        "DIGEST_WEB_PORT": str(port),
        "DIGEST_WEB_SIGNUP": "true",
        "DIGEST_WEB_SIGNUP_RATE": "10000",
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp.port),
        "DIGEST_NEWSLETTER_SECRET_KEY": "bench",
    }
    digest = [sys.executable, "-m", "digest"]
    from sqlalchemy import update

    from digest.delivery.subscribers import add_subscriber
    from digest.models import Subscriber
    from digest.storage import Database

    db = Database(url)
    for k in range(rounds):
        info, _ = add_subscriber(db, f"active{k}@example.com")
        if k % 2:
            with db.session() as s:
                s.execute(update(Subscriber).where(Subscriber.id == info.id)
                          .values(status="complained"))  # fmt: skip
    db.dispose()
    server = subprocess.Popen([*digest, "serve"], env=env, cwd=folder, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(100):
                try:
                    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/subscribe").text)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)  # the server starting: a bench, not a test
        assert csrf is not None
        # http.client sends a small request in one write: httpx's two (headers, then body)
        # met the server's delayed ACK, a 40 ms floor under every answer that hid the rest.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        times: dict[str, list[float]] = {"new": [], "active": [], "complained": []}
        for k in range(rounds):
            kind = ("active", "complained")[k % 2]
            for label, email in (("new", f"new{k}@example.com"), (kind, f"active{k}@example.com")):
                body = urlencode({"csrf": csrf.group(1), "email": email, "sections": "ml"})
                began = time.perf_counter()
                conn.request("POST", "/subscribe", body.encode(), FORM)
                answer = conn.getresponse()
                answer.read()
                times[label].append((time.perf_counter() - began) * 1000)
                assert answer.status == 200
                time.sleep(GAP_S)  # one address at a time, as a prober would: no overlap
        conn.close()
    finally:
        server.terminate()
        server.wait(15)
        smtp.stop()
    median = {label: statistics.median(ms) for label, ms in times.items()}
    for label, ms in times.items():
        p90 = statistics.quantiles(ms, n=10)[-1]
        print(f"{label:>10}: {len(ms):4} sign-ups, median {median[label]:.2f} ms, p90 {p90:.2f} ms")
    print(f"complained/new {median['complained'] / median['new']:.2f}, "
          f"active/new {median['active'] / median['new']:.2f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150)
    run(parser.parse_args().rounds)
