"""`digest run` sending end to end: real process, feed farm, aiosmtpd, restarts and kill -9.

No test waits for a send time: the schedule's last send time fell a minute ago and the next is
a year away (daemon_helpers.base_env). A daemon owed that send (its stored state says so) sends
it at start-up, as after any downtime; a send later in a test is asked for with SIGUSR1 ("send
now", as an operator does), once the test has seen what must come before it in the log. A send
is caught mid-way by an SMTP server that holds every message after the first few.
"""

from __future__ import annotations

import json
import re
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from digest.daemon.schedule import SEND_STATE_KEY, SendState
from digest.delivery.subscribers import add_subscriber
from digest.models import Issue
from digest.storage import Database
from tests.conftest import free_port, run_cli, run_digest
from tests.daemon_helpers import Farm, Running, base_env, last_send_time
from tests.servers import SMTPSink
from tests.smtp_helpers import FlakySMTP

pytestmark = pytest.mark.slow

LINK = re.compile(r"https://(?:ml|sys|deep)\.example/posts/\d+\.html")


@pytest.fixture
def sink() -> Iterator[FlakySMTP]:
    server = FlakySMTP()
    yield server
    server.close()


def links_by_recipient(sink: SMTPSink) -> dict[str, list[tuple[str, ...]]]:
    """For each recipient, the post links of each message they got, in order."""
    with sink.handler.lock:
        received = list(sink.handler.messages)
    out: dict[str, list[tuple[str, ...]]] = {}
    for envelope, raw in received:
        text = ""
        for part in message_from_bytes(raw).walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                text += payload.decode(part.get_content_charset() or "utf-8")
        links = tuple(sorted(set(LINK.findall(text))))
        for rcpt in envelope.rcpt_tos:
            out.setdefault(rcpt, []).append(links)
    return out


def prepare(
    workdir: Path, sqlite_url: str, farm: Farm, sink: SMTPSink, subscribers: int
) -> dict[str, str]:
    """Feeds polled once, subscribers added, and the last send time owed (the daemon was
    last running before it): the daemon sends it at start-up, within newsletter.send_grace."""
    last_send = last_send_time()
    env = base_env(workdir, sqlite_url, farm, last_send) | {
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(sink.port),
    }
    polled = run_cli(["poll"], env)
    assert polled.exit_code == 0, polled.output
    db = Database(sqlite_url)
    for k in range(subscribers):
        add_subscriber(db, f"reader{k}@example.com")
    db.set_meta(SEND_STATE_KEY, SendState(last_due=last_send - timedelta(minutes=1)).to_json())
    db.dispose()
    return env


def is_send(record: dict[str, object]) -> bool:
    return record.get("event") == "send"


def test_send_restart_and_no_post_twice(
    workdir: Path, sqlite_url: str, farm: Farm, sink: FlakySMTP, runs: list[Running]
) -> None:
    env = prepare(workdir, sqlite_url, farm, sink, subscribers=3)
    # The web endpoint too, in the same process.
    port = free_port()
    env |= {"DIGEST_WEB_ENABLED": "true", "DIGEST_WEB_PORT": str(port)}
    first = Running(env, workdir, workdir / "run1.log")
    runs.append(first)
    first.wait_log(is_send, 30)  # logged once every message is out
    got = links_by_recipient(sink)
    assert sorted(got) == [f"reader{k}@example.com" for k in range(3)]
    assert all(len(issues) == 1 and len(issues[0]) == 9 for issues in got.values()), got
    sends = [r for r in first.records() if is_send(r)]
    assert len(sends) == 1 and sends[0]["sent"] == 3  # one send event per send
    assert sends[0]["logger"] == "digest.daemon.sends" and "issue #1: 3 sent" in sends[0]["message"]

    page = httpx.get(f"http://127.0.0.1:{port}/issues/1", timeout=10)
    assert page.status_code == 200
    assert "https://ml.example/posts/0.html" in page.text

    # One daemon per database.
    refused = run_digest(["run"], env, workdir, timeout=30)
    assert refused.returncode == 1 and "another digest daemon" in refused.stderr

    code, took = first.terminate()
    assert code == 0 and took < 10, first.text()

    # A new post; a restart; once it is polled, a send: only the new post goes out.
    new_link = farm.add_post("ml")
    second = Running(env, workdir, workdir / "run2.log")
    runs.append(second)
    second.wait_log(lambda r: r.get("event") == "poll" and r.get("new_posts", 0) >= 1, 20)
    second.signal(signal.SIGUSR1)
    second.wait_log(is_send, 30)
    code, took = second.terminate()
    assert code == 0 and took < 10
    got = links_by_recipient(sink)
    for issues in got.values():
        assert len(issues) == 2, got
        assert issues[1] == (new_link,)
        seen = Counter(link for links in issues for link in links)
        assert max(seen.values()) == 1  # no post went out twice
    assert len(sink.raw) == 6  # the daemon is gone: nothing more can come
    assert [r["message"] for r in second.records() if r.get("event") == "send_now"] == [
        "send: sending now, as asked"
    ]

    status = run_cli(["status", "--json"], env)
    report = json.loads(status.stdout)
    assert report["last_issue"]["number"] == 2
    assert report["last_issue"]["delivered"] == 3


def test_kill_9_during_a_send_then_restart(
    workdir: Path, sqlite_url: str, farm: Farm, sink: FlakySMTP, runs: list[Running]
) -> None:
    count = 60
    env = prepare(workdir, sqlite_url, farm, sink, subscribers=count)
    sink.handler.hold_after(10)  # ten go through; then every message waits for the test
    first = Running(env, workdir, workdir / "run1.log")
    runs.append(first)
    assert sink.handler.held.wait(40), first.text()
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    first.kill()
    assert len(sink.raw) == 10  # killed part-way, a message (or two) in flight
    sink.handler.release()

    second = Running(env, workdir, workdir / "run2.log")
    runs.append(second)
    second.wait_log(is_send, 60)
    got = links_by_recipient(sink)
    assert sorted(got) == sorted(f"reader{k}@example.com" for k in range(count))
    copies = sum(len(issues) for issues in got.values())
    # smtp.connections (2) connections, one message in flight on each at the kill: at most two
    # duplicates.
    assert copies - count <= 2, Counter({k: len(v) for k, v in got.items()}).most_common(3)
    assert "resuming the interrupted send" in second.text()
    code, _took = second.terminate()
    assert code == 0


def test_without_smtp_issues_are_recorded_and_logged_once(
    workdir: Path, sqlite_url: str, farm: Farm, sink: FlakySMTP, runs: list[Running]
) -> None:
    env = prepare(workdir, sqlite_url, farm, sink, subscribers=2)
    env = {k: v for k, v in env.items() if not k.startswith("DIGEST_SMTP_")}
    run = Running(env, workdir, workdir / "run.log")
    runs.append(run)
    line = run.wait_log(is_send, 30)
    assert line["mode"] == "off" and line["issue"] == 1
    assert "issue #1 recorded, nothing sent" in line["message"]
    run.wait_log(lambda r: r.get("event") == "poll", 10)
    code, _took = run.terminate()
    assert code == 0
    off = [r for r in run.records() if "sending is off (smtp.host is empty)" in r["message"]]
    assert len(off) == 1
    assert "To send mail, set smtp.host (and smtp.port" in off[0]["message"]
    assert "newsletter.from" in off[0]["message"] and "newsletter.base_url" in off[0]["message"]
    assert sink.raw == []
    report = json.loads(run_cli(["status", "--json"], env).stdout)
    assert report["last_issue"]["number"] == 1 and report["last_issue"]["posts"] == 9
    assert report["sending"] is False


def test_sigterm_during_a_send_then_restart(
    workdir: Path, sqlite_url: str, farm: Farm, sink: FlakySMTP, runs: list[Running]
) -> None:
    count = 60
    env = prepare(workdir, sqlite_url, farm, sink, subscribers=count)
    sink.handler.hold_after(10)
    first = Running(env, workdir, workdir / "run1.log")
    runs.append(first)
    assert sink.handler.held.wait(40), first.text()
    first.signal(signal.SIGTERM)
    first.wait_log(lambda r: r["message"] == "SIGTERM received", 10)
    sink.handler.release()  # the messages in flight get their answer; no new one starts
    assert first.wait(10) == 0
    assert 10 < len(sink.raw) <= 12  # the ten, and the one or two in flight at SIGTERM
    assert "stopped part-way; the next start completes it" in first.text()

    second = Running(env, workdir, workdir / "run2.log")
    runs.append(second)
    second.wait_log(is_send, 60)
    got = links_by_recipient(sink)
    # The message in flight at SIGTERM was finished, not abandoned: no duplicates at all.
    assert sorted(got) == sorted(f"reader{k}@example.com" for k in range(count))
    assert all(len(issues) == 1 for issues in got.values())
    code, _took = second.terminate()
    assert code == 0


def test_an_early_send_by_hand_then_the_daemon_sends_only_what_is_new(
    workdir: Path, sqlite_url: str, farm: Farm, sink: FlakySMTP, runs: list[Running]
) -> None:
    # The operator polls once on the hourly default, sends by hand early in the week ...
    last_send = last_send_time()
    env = base_env(workdir, sqlite_url, farm, last_send) | {
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(sink.port),
        "DIGEST_FEEDS_POLL_INTERVAL": "1h",
    }
    assert run_cli(["poll"], env).exit_code == 0
    db = Database(sqlite_url)
    for k in range(3):
        add_subscriber(db, f"reader{k}@example.com")
    # ... with a daemon last running before the last send time: its catch-up send at start-up
    # finds that send time covered by the send by hand, and sends nothing.
    db.set_meta(SEND_STATE_KEY, SendState(last_due=last_send - timedelta(minutes=1)).to_json())
    db.dispose()
    early = run_digest(["send"], env, workdir, timeout=60)
    assert early.returncode == 0, early.stderr
    assert "issue #1: 3 sent" in early.stdout
    new_link = farm.add_post("ml")
    # ... then runs the daemon polling every 3 s, and asks it to send once the post is in.
    port = free_port()
    env |= {
        "DIGEST_FEEDS_POLL_INTERVAL": "3s",
        "DIGEST_WEB_ENABLED": "true",
        "DIGEST_WEB_PORT": str(port),
    }
    run = Running(env, workdir, workdir / "run.log")
    runs.append(run)
    caught_up = run.wait_log(is_send, 30)
    assert caught_up["mode"] == "covered" and len(sink.raw) == 3, caught_up
    # The feeds due in an hour were brought forward to the new interval.
    run.wait_log(lambda r: r.get("event") == "poll" and r.get("new_posts", 0) >= 1, 30)
    run.signal(signal.SIGUSR1)
    run.wait_log(lambda r: is_send(r) and r.get("issue") == 2, 30)
    page = httpx.get(f"http://127.0.0.1:{port}/issues/2", timeout=10)
    code, _took = run.terminate()
    assert code == 0, run.text()

    mailed = links_by_recipient(sink)
    # /issues/2 shows exactly the posts its mailed copies held.
    assert page.status_code == 200 and set(LINK.findall(page.text)) == {new_link}
    for issues in mailed.values():
        assert [len(i) for i in issues] == [9, 1] and issues[1] == (new_link,)
    db = Database(sqlite_url)
    with db.session() as s:
        windows = s.execute(
            select(Issue.number, Issue.window_start, Issue.window_end, Issue.post_count).order_by(
                Issue.number
            )
        ).all()
    db.dispose()
    # Windows follow each other; none overlaps; the record is what was mailed.
    assert [w.number for w in windows] == [1, 2]
    assert windows[1].window_start == windows[0].window_end
    assert windows[1].post_count == 1
    served = run_cli(["status", "--json"], env)
    assert json.loads(served.stdout)["last_issue"]["posts"] == 1
