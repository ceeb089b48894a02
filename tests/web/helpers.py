"""What the readers' pages tests share: settings with sign-up on and SMTP to the sink, a
client, the CSRF token of a page, waiting for the outbox's emails, the links in them."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, insert, select

from digest.config import Settings
from digest.models import Issue, Subscriber, SubscriberEvent
from digest.storage import Database
from digest.types import UNSUBSCRIBE_PLACEHOLDER
from tests.conftest import digest_env, free_port, wait_for
from tests.servers import SMTPSink

KEY = "signup-test-key"
BASE = "https://news.example.org"


def settings_for(smtp: SMTPSink | None, **web: Any) -> Settings:
    """Sign-up on (an https base URL), SMTP to the sink (or sending off)."""
    smtp_values = {"host": "127.0.0.1", "port": smtp.port} if smtp else {"host": ""}
    return Settings().replace(
        newsletter={"secret_key": KEY, "base_url": BASE}, smtp=smtp_values, web=web
    )


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def parsed(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(raw: bytes) -> str:
    part = parsed(raw).get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(raw: bytes, kind: str) -> str:
    """The path of the first /KIND/TOKEN link in an email's text part."""
    match = re.search(rf"https?://[^/\s]+(/{kind}/[A-Za-z0-9._-]+)", text_of(raw))
    assert match, f"no /{kind}/ link in the email"
    return match.group(1)


def settled(client: Any) -> None:
    """Wait until the app's outbox has done every queued sign-up and email (a queue joined)."""
    assert client.app.state.site.outbox.wait_idle(10), "the outbox did not finish"


def page_of(response: Any, address: str) -> bytes:
    """A check-your-inbox page with the address it names taken out (to compare pages)."""
    return bytes(response.content).replace(address.encode(), b"ADDRESS")


def row(db: Database, email: str) -> Subscriber | None:
    with db.session() as s:
        return s.scalar(select(Subscriber).where(Subscriber.email == email))


def events(db: Database, email: str) -> list[str]:
    with db.session() as s:
        found = s.scalar(select(Subscriber.id).where(Subscriber.email == email))
        query = select(SubscriberEvent.kind).where(SubscriberEvent.subscriber_id == found)
        return [str(k) for k in s.scalars(query.order_by(SubscriberEvent.id))]


def subscribers(db: Database) -> dict[str, str]:
    with db.session() as s:
        return {r.email: str(r.status) for r in s.scalars(select(Subscriber))}


@contextlib.contextmanager
def serving(
    env: dict[str, str], cwd: Path, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A real `digest serve` process on ``port`` (default: a free one): its base URL and the
    process (stderr captured in cwd/serve.log)."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"DIGEST_WEB_PORT": str(port), "DIGEST_NEWSLETTER_BASE_URL": base, **env}
    log = (cwd / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "--log-level", "info", "serve"],
        env=digest_env(env), cwd=cwd, stdout=subprocess.DEVNULL, stderr=log, text=True,
    )  # fmt: skip

    def answers() -> bool:
        assert process.poll() is None, (cwd / "serve.log").read_text()
        try:
            httpx.get(base + "/", timeout=1)
        except httpx.TransportError:
            return False
        return True

    try:
        wait_for(answers, 30, what="digest serve to answer", every=0.1)
        yield base, process
    finally:
        process.terminate()
        process.wait(10)
        log.close()


WEEK = timedelta(days=7)


def add_issues(db: Database, numbers: Iterable[int], status: str = "sent") -> None:
    """Issues written straight into the database (one executemany: years of history in a
    moment), issue N's window ending N weeks after 2020-01-04, its HTML with the placeholder
    of a personal link (the web puts the archive there)."""
    first = datetime(2020, 1, 4, 8, 0, tzinfo=UTC)
    rows = [
        {
            "number": n,
            "window_start": first + (n - 1) * WEEK,
            "window_end": first + n * WEEK,
            "created_at": first + n * WEEK,
            "subject": f"Weekend Reading #{n}",
            "html": f'<html><body><p>Issue {n}</p><a href="{UNSUBSCRIBE_PLACEHOLDER}">'
            "unsubscribe</a></body></html>",
            "text": "",
            "post_count": 3,
            "status": status,
            "pick_titles": f'["Pick of #{n}"]',
        }  # fmt: skip
        for n in numbers
    ]
    with db.session() as s:
        s.execute(insert(Issue), rows)


@contextlib.contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements ``db`` runs inside the block (an engine event), BEGIN included."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
