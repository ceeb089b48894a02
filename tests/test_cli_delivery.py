"""Delivery end to end: `digest` as a real process, a real aiosmtpd, `digest serve` over HTTP."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from digest.lockholder import LockHolder, new_token
from digest.metakeys import SENDER, lock_key
from digest.models import Delivery
from digest.storage import Database, utcnow
from tests.conftest import cli_json, digest_env, free_port, run_cli, run_digest
from tests.issue_helpers import SAT, add_feed, add_post
from tests.smtp_helpers import FlakySMTP
from tests.web.helpers import serving

pytestmark = pytest.mark.slow
WEEK = timedelta(days=7)
INJECTION = "a@b.example\r\nBcc: x@y.example"


@pytest.fixture
def sink() -> Iterator[FlakySMTP]:
    server = FlakySMTP()
    yield server
    server.close()


def env_for(db_url: str, sink: FlakySMTP, web_port: int = 8080) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(sink.port),
        "DIGEST_NEWSLETTER_FROM": "Weekend Reading <news@example.org>",
        "DIGEST_NEWSLETTER_REPLY_TO": "editor@example.org",
        "DIGEST_NEWSLETTER_BASE_URL": f"http://127.0.0.1:{web_port}",
        "DIGEST_WEB_PORT": str(web_port),
    }


def week_of_posts(db_url: str, saturday: object = SAT, tag: str = "") -> None:
    db = Database(db_url)
    ml = add_feed(db, f"Deep Blog{tag}", "ml")
    systems = add_feed(db, f"Kernel Blog{tag}", "systems")
    assert isinstance(saturday, type(SAT))
    add_post(db, ml, f"Attention again{tag}", date=saturday - timedelta(days=2))
    add_post(db, systems, f"Faster fsync{tag}", date=saturday - timedelta(days=3))
    db.dispose()


def cli(args: list[str], env: dict[str, str]) -> str:
    """Set-up steps, in this process (fast); what is under test runs as a real process."""
    result = run_cli(args, env)
    assert result.exit_code == 0, result.output
    return result.output


def digest(args: list[str], env: dict[str, str], cwd: Path, ok: bool = True) -> str:
    result = run_digest(args, env, cwd)
    if ok:
        assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def parsed(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def delivery_counts(db_url: str) -> dict[str, int]:
    db = Database(db_url)
    with db.session() as s:
        rows = s.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        counts: dict[str, int] = {str(status): n for status, n in rows}
    db.dispose()
    return counts


def test_three_subscribers_every_header_then_none(
    workdir: Path, sqlite_url: str, sink: FlakySMTP
) -> None:
    env = env_for(sqlite_url, sink)
    for email in ("ann@example.com", "bob@example.com", "cy@example.com"):
        assert "added" in cli(["subscribers", "add", email, "--name", "Reader"], env)
    week_of_posts(sqlite_url)
    out = digest(["send", "--as-of", "2026-01-10T08:00Z"], env, workdir)
    assert "issue #1: 3 sent, 0 failed" in out
    assert sorted(sink.recipients()) == ["ann@example.com", "bob@example.com", "cy@example.com"]
    tokens, preferences = set(), set()
    for raw in sink.raw:
        msg = parsed(raw)
        for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Id"):
            assert msg[header], header
        assert msg["From"] == "Weekend Reading <news@example.org>"
        assert msg["Reply-To"] == "editor@example.org"
        assert str(msg["To"]).startswith("Reader <")
        assert str(msg["Subject"]).startswith("Weekend Reading #1")
        assert re.fullmatch(r"<[^@\s]+@example\.org>", str(msg["Message-ID"]))
        assert msg["List-Id"] == "Weekend Reading <weekend-reading.example.org>"
        unsub = re.fullmatch(r"<(http://127\.0\.0\.1:8080/unsubscribe/([\w.-]+))>",
                             str(msg["List-Unsubscribe"]))  # fmt: skip
        assert unsub, msg["List-Unsubscribe"]
        tokens.add(unsub.group(2))
        assert msg["List-Unsubscribe-Post"] is None  # an http base_url: no one-click (RFC 8058)
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        own = re.search(r"http://127\.0\.0\.1:8080/preferences/([\w.-]+)", parts[0].get_content())
        assert own and own.group(1) != unsub.group(2)  # a token of its own, for that page
        preferences.add(own.group(1))
        for part in parts:  # the subscriber's own links in the footer of both parts
            assert unsub.group(1) in part.get_content()
            assert own.group(0) in part.get_content()
        assert "Attention again" in parts[0].get_content()
    assert len(tokens) == 3 and len(preferences) == 3
    assert delivery_counts(sqlite_url) == {"sent": 3}

    summary = cli_json(["send", "--as-of", "2026-01-10T08:00Z", "--json"], env)
    assert (summary["sent"], summary["already"], summary["pending"]) == (0, 3, 0)
    assert len(sink.recipients()) == 3


def test_451_once_still_delivers(workdir: Path, sqlite_url: str, sink: FlakySMTP) -> None:
    env = env_for(sqlite_url, sink)
    for email in ("ann@example.com", "bob@example.com"):
        cli(["subscribers", "add", email], env)
    week_of_posts(sqlite_url)
    sink.handler.replies = ["451 4.7.1 Greylisted, try again"]
    out = cli(["send", "--as-of", "2026-01-10T08:00Z"], env)
    assert "2 sent" in out
    assert sorted(sink.recipients()) == ["ann@example.com", "bob@example.com"]


def test_550_5_1_1_at_rcpt_bounces_at_once_a_block_is_soft_the_others_go_on(
    workdir: Path, sqlite_url: str, sink: FlakySMTP
) -> None:
    """A refusal at RCPT is judged as a DSN with the same code is (issue 23): 5.1.1 bounces
    the address now (not after three issues), a 5.7.1 block is a soft bounce."""
    env = env_for(sqlite_url, sink)
    emails = ("ann@example.com", "gone@example.com", "blocked@example.com", "cy@example.com")
    for email in emails:
        cli(["subscribers", "add", email], env)
    sink.handler.reject = {
        "gone@example.com": "550 5.1.1 No such user",
        "blocked@example.com": "550 5.7.1 Blocked by policy",
    }
    week_of_posts(sqlite_url)
    out = cli(["send", "--as-of", SAT.isoformat()], env)
    assert "issue #1: 2 sent, 2 failed" in out and "now bounced: gone@example.com" in out
    listed = {s["email"]: s for s in cli_json(["subscribers", "list", "--json"], env)}
    assert listed["gone@example.com"]["status"] == "bounced"
    assert listed["blocked@example.com"]["status"] == "active"  # one soft bounce of five
    events = cli_json(["bounces", "list", "--json"], env)
    assert sorted((e["email"], e["kind"], e["source"], e["status_code"]) for e in events) == [
        ("blocked@example.com", "soft", "smtp", "5.7.1"),
        ("gone@example.com", "hard", "smtp", "5.1.1"),
    ]
    week_of_posts(sqlite_url, SAT + WEEK, tag=" 2")
    out = cli(["send", "--as-of", (SAT + WEEK).isoformat()], env)
    assert "issue #2: 2 sent, 1 failed" in out  # the bounced address is not tried again
    assert Counter(sink.recipients()) == {"ann@example.com": 2, "cy@example.com": 2}
    rates = cli_json(["status", "--json"], env)["issue_rates"]
    first = next(r for r in rates if r["number"] == 1)
    assert (first["sent"], first["failed"], first["hard_bounces"]) == (2, 2, 0)  # counted once
    assert first["bounce_rate"] == 0.5
    text = cli(["status"], env)
    assert "#1: 2 handed to the relay, 2 refused (50.00% of 4 tried)" in text
    assert "only refusals at sending are known" in text


def test_kill_9_mid_send_then_send_again(workdir: Path, db_url: str, sink: FlakySMTP) -> None:
    env = env_for(db_url, sink)
    # The size is no longer what makes the kill land mid-send (the held message is): 300.
    everyone = [f"reader{i:04d}@example.com" for i in range(300)]
    (workdir / "list.txt").write_text("\n".join(everyone) + "\n")
    assert "300 added" in cli(["subscribers", "import", "list.txt"], env)
    week_of_posts(db_url)
    sink.handler.hold_after(100)  # 100 go through; the next ones wait: the kill comes then
    full_env = digest_env(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "send", "--as-of", "2026-01-10T08:00Z"],
        env=full_env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert sink.handler.held.wait(60), "the send never reached its 101st message"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(sink.recipients()) == 100
    in_flight = delivery_counts(db_url).get("sending", 0)
    assert 1 <= in_flight <= 2  # smtp.connections: the held message(s)
    sink.handler.release()  # the server takes the held ones: the client never heard it

    out = cli(["send", "--as-of", "2026-01-10T08:00Z"], env)
    assert "0 failed" in out
    got = Counter(sink.recipients())
    assert set(got) == set(everyone)  # all 300 reached
    duplicates = sum(got.values()) - len(got)
    assert duplicates <= in_flight  # at most the message in flight at the kill
    assert delivery_counts(db_url) == {"sent": 300}


def test_a_send_whose_lock_was_taken_from_a_live_run_leaves_its_message_in_flight(
    workdir: Path, db_url: str, sink: FlakySMTP
) -> None:
    """A run's lock taken over while it still lives (its heartbeat late: a frozen VM, another
    host): the newcomer sends the rest, not the message the old run has with the server; the
    old run finishes that one and the list gets each message once. (A kill -9 on this host is
    found dead and its message goes again at once: test_kill_9_mid_send_then_send_again.)"""
    env = {**env_for(db_url, sink), "DIGEST_SMTP_CONNECTIONS": "1"}
    everyone = [f"reader{i:02d}@example.com" for i in range(10)]
    (workdir / "list.txt").write_text("\n".join(everyone) + "\n")
    assert "10 added" in cli(["subscribers", "import", "list.txt"], env)
    week_of_posts(db_url)
    sink.handler.hold_after(3)  # the old run's 4th message stays with the server
    send = ["send", "--as-of", "2026-01-10T08:00Z"]
    pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    run = [sys.executable, "-m", "digest", *send]
    old = subprocess.Popen(run, env=digest_env(env), cwd=workdir, **pipes)
    try:
        assert sink.handler.held.wait(60), "the old run never reached its 4th message"
        as_if_its_heartbeat_stopped_two_minutes_ago(db_url)
        sink.handler.hold_after(100)  # the held message stays held; the newcomer's go through
        newcomer = run_digest([*send, "--json"], env, workdir)
        summary = json.loads(newcomer.stdout)
        assert (summary["sent"], summary["already"], summary["waiting"]) == (6, 3, 1)
        assert (summary["resent"], summary["left"]) == (0, 1)
        assert (
            "1 message in flight under a run that may still be sending them" in (summary["reason"])
        )
        assert delivery_counts(db_url) == {"sent": 9, "sending": 1}
    finally:
        sink.handler.release()  # the old run's message gets its answer
        out, err = old.communicate(timeout=60)
    # Whether or not its heartbeat (every 10 s) came round to see the takeover before it
    # ended, it sent and wrote down 4.
    assert out.startswith("issue #1: 4 sent,"), (old.returncode, out, err)
    assert Counter(sink.recipients()) == Counter(everyone)  # each once
    assert delivery_counts(db_url) == {"sent": 10}  # the old run wrote down what it finished
    last = json.loads(digest([*send, "--json"], env, workdir))
    assert (last["issue"], last["sent"], last["already"], last["left"]) == (1, 0, 10, 0)
    assert Counter(sink.recipients()) == Counter(everyone)


def as_if_its_heartbeat_stopped_two_minutes_ago(db_url: str) -> None:
    """The send lock's row as a run on another host left it two minutes ago: stale, taken
    over by the next send, and not known to be dead."""
    now = utcnow()
    frozen = LockHolder(4242, "frozen-vm.example", now - 3 * WEEK, now - timedelta(minutes=2),
                        new_token())  # fmt: skip
    db = Database(db_url)
    db.set_meta(lock_key(SENDER), frozen.to_json())
    db.dispose()


def test_two_overlapping_sends_deliver_each_message_once(
    workdir: Path, db_url: str, sink: FlakySMTP
) -> None:
    env = env_for(db_url, sink)
    everyone = [f"reader{i:02d}@example.com" for i in range(20)]
    (workdir / "list.txt").write_text("\n".join(everyone) + "\n")
    assert "20 added" in cli(["subscribers", "import", "list.txt"], env)
    week_of_posts(db_url)
    sink.handler.hold_after(2)  # the first send stalls at its third message, its lock held
    send = ["send", "--as-of", "2026-01-10T08:00Z"]
    full_env = digest_env(env)
    run = [sys.executable, "-m", "digest", *send]
    pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    first = subprocess.Popen(run, env=full_env, cwd=workdir, **pipes)
    try:
        assert sink.handler.held.wait(60), "the first send never reached its third message"
        second = run_digest(send, env, workdir)
        assert second.returncode == 1 and second.stdout == ""
        assert re.fullmatch(
            rf"Error: another send holds database \S+: pid {first.pid} on \S+, running since "
            r"[\d-]+ [\d:]+ UTC, last heartbeat [\d:]+ UTC\n",
            second.stderr,
        ), second.stderr
        waiting = subprocess.Popen([*run, "--wait"], env=full_env, cwd=workdir, **pipes)
        assert waiting.stderr is not None
        said = [waiting.stderr.readline()]  # it says it waits before it does
        while said[-1] and "waiting for it" not in said[-1]:
            said.append(waiting.stderr.readline())
        sink.handler.release()  # the first send goes on, ends, and lets the waiting one in
        out, err = waiting.communicate(timeout=60)
    finally:
        sink.handler.release()
        first.wait(30)
    assert first.returncode == 0, first.stderr
    assert waiting.returncode == 0, err
    said_all = "".join(said) + err
    assert "another send holds database" in said_all and "waiting for it" in said_all
    assert "0 sent, 0 failed, 0 skipped, 20 sent before" in out
    got = Counter(sink.recipients())
    assert set(got) == set(everyone) and max(got.values()) == 1  # each one message
    assert delivery_counts(db_url) == {"sent": 20}


def test_a_test_copy_to_a_subscriber_before_any_key_is_stored(
    workdir: Path, sqlite_url: str, sink: FlakySMTP
) -> None:
    env = env_for(sqlite_url, sink)
    cli(["subscribers", "add", "ada@example.com"], env)  # no secret key stored yet
    week_of_posts(sqlite_url)
    began = time.monotonic()
    out = cli(["send", "--as-of", "2026-01-10T08:00Z", "--to", "ada@example.com"], env)
    assert time.monotonic() - began < 10  # it waited 30 s for SQLite's lock, then failed
    assert "test copy of issue #1 sent to ada@example.com" in out
    [raw] = sink.raw
    assert "/unsubscribe/" in raw.decode() and "test-copy" not in raw.decode()


def test_header_injection_refused_by_add_and_import(
    workdir: Path, sqlite_url: str, sink: FlakySMTP
) -> None:
    env = env_for(sqlite_url, sink)
    added = run_cli(["subscribers", "add", INJECTION], env)
    assert added.exit_code == 1 and added.stdout == ""
    assert "line break" in added.stderr and "Traceback" not in added.stderr
    assert len(added.stderr.strip().splitlines()) == 1
    (workdir / "list.csv").write_text(
        f'email,name\nok@example.com,Ok\n"{INJECTION}",Eve\n"c@example.com, d@example.com",Two\n',
        newline="",
    )
    imported = run_cli(["subscribers", "import", "list.csv", "--json"], env)
    assert imported.exit_code == 0, imported.output
    summary = json.loads(imported.stdout)
    assert summary["added"] == 1
    # The quoted address with CR LF inside spans two lines; one record per line refuses both.
    assert [i["line"] for i in summary["invalid"]] == [3, 4, 5]
    assert "quote is opened and never closed" in summary["invalid"][0]["error"]
    assert "several addresses" in summary["invalid"][2]["error"]
    listed = cli_json(["subscribers", "list", "--json"], env)
    assert [s["email"] for s in listed] == ["ok@example.com"]


def test_one_click_unsubscribe_over_http(workdir: Path, sqlite_url: str, sink: FlakySMTP) -> None:
    port = free_port()
    env = env_for(sqlite_url, sink, web_port=port)
    for email in ("ann@example.com", "bob@example.com", "cy@example.com"):
        cli(["subscribers", "add", email], env)
    week_of_posts(sqlite_url)
    cli(["send", "--as-of", "2026-01-10T08:00Z"], env)
    by_to = {str(parsed(raw)["To"]): parsed(raw) for raw in sink.raw}
    url = str(by_to["bob@example.com"]["List-Unsubscribe"]).strip("<>")
    with serving(env, workdir, port) as (base, _process):
        token = url.rsplit("/", 1)[1]
        forged = f"{base}/unsubscribe/{token[:-2]}{token[-1]}{token[-2]}"
        if forged.endswith(token):
            forged = f"{base}/unsubscribe/{token.split('.')[0]}.{'A' * 22}"
        assert httpx.post(forged, data={"List-Unsubscribe": "One-Click"}).status_code == 400
        page = httpx.get(url)
        assert page.status_code == 200 and "<button" in page.text
        done = httpx.post(url, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
        assert done.status_code == 200
        assert "set-cookie" not in done.headers and "location" not in done.headers
        assert httpx.get(f"{base}/issues/1").status_code == 200
    listed = cli_json(["subscribers", "list", "--json"], env)
    assert {s["email"]: s["status"] for s in listed} == {
        "ann@example.com": "active",
        "bob@example.com": "unsubscribed",
        "cy@example.com": "active",
    }
    week_of_posts(sqlite_url, SAT + WEEK, tag=" 2")
    cli(["send", "--as-of", (SAT + WEEK).isoformat()], env)
    second = [r for r in sink.recipients()[3:]]
    assert sorted(second) == ["ann@example.com", "cy@example.com"]


def test_dry_run_test_copy_and_list(workdir: Path, sqlite_url: str, sink: FlakySMTP) -> None:
    env = env_for(sqlite_url, sink)
    assert run_cli(["subscribers", "add", "ann@example.com"], env).exit_code == 0
    added = run_cli(["subscribers", "add", "Bob <BOB@example.com>", "--sections", "systems"], env)
    assert added.output == "added: bob@example.com (systems)\n"
    week_of_posts(sqlite_url)
    dry = run_cli(["send", "--as-of", "2026-01-10T08:00Z", "--dry-run"], env)
    assert dry.exit_code == 0, dry.output
    assert "ann@example.com  [all]  Weekend Reading #1" in dry.output
    assert "bob@example.com  [systems]  Weekend Reading #1" in dry.output
    assert "would go to 2 of 2 active subscribers: all (1): Weekend Reading #1" in dry.output
    assert "; systems (1): Weekend Reading #1" in dry.output and "nothing sent" in dry.output
    as_json = json.loads(
        run_cli(["send", "--as-of", "2026-01-10T08:00Z", "--dry-run", "--json"], env).stdout
    )
    assert [(r["email"], r["sections"], r["gets"]) for r in as_json["recipients"]] == [
        ("ann@example.com", "all", True),
        ("bob@example.com", ["systems"], True),
    ]
    assert (as_json["mode"], as_json["dry_run"]["active"], as_json["dry_run"]["gets"]) == (
        "dry-run",
        2,
        2,
    )
    test = run_cli(["send", "--as-of", "2026-01-10T08:00Z", "--to", "me@example.org"], env)
    assert test.exit_code == 0, test.output
    assert sink.recipients() == ["me@example.org"]
    assert delivery_counts(sqlite_url) == {}
    listing = run_cli(["subscribers", "list"], env).output
    assert re.match(r"EMAIL\s+STATUS\s+SECTIONS\s+NAME\n", listing)
    assert re.search(r"bob@example\.com\s+active\s+systems\s+Bob", listing)
    assert run_cli(["subscribers", "remove", "bob@example.com"], env).exit_code == 0
    gone = run_cli(["subscribers", "remove", "bob@example.com"], env)
    assert gone.exit_code == 1 and "no subscriber bob@example.com" in gone.output
    # A status with its date ("unsubscribed 2026-… UTC") widens its column: the rest line up.
    from digest.delivery.subscribers import add_subscriber, unsubscribe

    db = Database(sqlite_url)
    unsubscribe(db, add_subscriber(db, "cy@example.com", sections="systems")[0].id)
    lines = run_cli(["subscribers", "list"], env).output.splitlines()
    assert re.match(r"cy@example\.com\s+unsubscribed \d{4}-\d\d-\d\d \d\d:\d\d UTC", lines[2])
    assert lines[0].index("SECTIONS") == lines[1].index("all") == lines[2].index("systems")


def test_sending_off_records_only(workdir: Path, sqlite_url: str) -> None:
    env = {"DIGEST_DATABASE_URL": sqlite_url}
    assert run_cli(["subscribers", "add", "ann@example.com"], env).exit_code == 0
    week_of_posts(sqlite_url)
    dry = run_cli(["send", "--as-of", "2026-01-10T08:00Z", "--dry-run"], env)
    assert "would go to 1 of 1 active subscriber: all (1): Weekend Reading #1" in dry.output
    assert "sending is off (smtp.host is not set): `digest send` would record" in dry.output
    out = run_cli(["send", "--as-of", "2026-01-10T08:00Z"], env)
    assert out.exit_code == 0
    assert "sending is off (smtp.host is not set): issue #1 recorded" in out.output


@pytest.mark.skipif(shutil.which("spamassassin") is None, reason="spamassassin not installed")
def test_spamassassin_scores_a_sent_message_below_2(
    workdir: Path, sqlite_url: str, sink: FlakySMTP
) -> None:
    env = env_for(sqlite_url, sink)
    env["DIGEST_NEWSLETTER_BASE_URL"] = "https://digest.example.org"
    cli(["subscribers", "add", "ann@example.com", "--name", "Ann Reader"], env)
    db = Database(sqlite_url)
    prose = (
        "We moved the write path off the hot lock and measured again. The tail latency fell "
        "by half, but only after we stopped batching small writes behind large ones. Here is "
        "what we tried first, why it did not help, and the numbers from a week in production."
    )
    for b in range(8):
        feed = add_feed(db, f"Blog {b}", "ml" if b % 2 else "systems")
        for k in range(3):
            add_post(db, feed, f"Notes on queueing, part {k + 1}", text=prose,
                     date=SAT - timedelta(days=1 + k, hours=b), author=f"Writer {b}")  # fmt: skip
    db.dispose()
    digest(["send", "--as-of", "2026-01-10T08:00Z"], env, workdir)
    (raw,) = sink.raw
    # What the receiving server adds in front; spamassassin expects a delivered message.
    received = b"Return-Path: <news@example.org>\r\n"
    result = subprocess.run(
        ["spamassassin", "-L", "-t"], input=received + raw, capture_output=True, timeout=120
    )
    report = result.stdout.decode("utf-8", "replace")
    match = re.search(r"X-Spam-Status: \w+, score=(-?[\d.]+)", report)
    assert match, report[-2000:]
    print(f"spamassassin score {match.group(1)} for a {len(raw)} byte message")  # pytest -s
    assert float(match.group(1)) < 2.0, report[report.find("Content analysis details") :]


def test_a_send_after_a_crash_says_it_resumed_the_issue(
    workdir: Path, sqlite_url: str, sink: FlakySMTP
) -> None:
    """kill -9 mid-send, then a plain `digest send --json` days later: it delivers the rest of
    issue #1 and says so (mode resumed, K sent), not {"mode": "empty", "sent": 0}."""
    env = env_for(sqlite_url, sink)
    everyone = [f"reader{i:02d}@example.com" for i in range(20)]
    (workdir / "list.txt").write_text("\n".join(everyone) + "\n")
    assert "20 added" in cli(["subscribers", "import", "list.txt"], env)
    week_of_posts(sqlite_url)
    sink.handler.hold_after(5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "send", "--as-of", "2026-01-10T08:00Z"],
        env=digest_env(env), cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert sink.handler.held.wait(60), "the send never reached its 6th message"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    sink.handler.release()
    before = delivery_counts(sqlite_url)
    resumed = run_digest(["send", "--json"], env, workdir)  # no --as-of: the week ends now
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert (summary["mode"], summary["issue"]) == ("resumed", 1), summary  # not "empty"
    assert summary["left"] == 0
    assert summary["reason"] is None
    assert summary["sent"] == 20 - before.get("sent", 0) and summary["sent"] >= 15
    assert summary["resent"] == before.get("sending", 0)
    assert summary["then"]["mode"] == "empty"  # and nothing new since issue #1
    assert set(sink.recipients()) == set(everyone)
    assert delivery_counts(sqlite_url) == {"sent": 20}


def test_a_relay_refusing_the_command_bounces_no_one_and_the_next_send_delivers(
    workdir: Path, sqlite_url: str, sink: FlakySMTP
) -> None:
    """A broken relay answering DATA with a 500 (found by hand: aiosmtpd's Mailbox handler
    without its folders) stops the send with that reply; before, it marked every subscriber
    bounced. With the relay mended, the next send delivers each message once."""
    env = env_for(sqlite_url, sink)
    for email in ("ann@example.com", "bob@example.com"):
        cli(["subscribers", "add", email], env)
    week_of_posts(sqlite_url)
    sink.handler.replies = ["500 Error: (FileNotFoundError) [Errno 2] No such file or directory"]
    failed = run_digest(["send", "--as-of", "2026-01-10T08:00Z"], env, workdir)
    assert failed.returncode == 1, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: the SMTP server refused a command: 500 Error: "), last
    assert "Traceback" not in failed.stderr
    listed = cli_json(["subscribers", "list", "--json"], env)
    assert {s["status"] for s in listed} == {"active"}
    assert cli_json(["bounces", "list", "--json"], env) == []
    again = run_digest(["send", "--json"], env, workdir)
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["sent"] + resumed["already"] == 2  # one may have gone beside the refused one
    assert Counter(sink.recipients()) == {"ann@example.com": 1, "bob@example.com": 1}


def test_smtp_down_the_send_says_why_then_resumes(workdir: Path, sqlite_url: str) -> None:
    """SMTP down: `digest send` leaves the messages for later and says why in its line (the
    SMTP error), exit 1; with the server back, the next send resumes them and says so."""
    closed = free_port()  # nothing listens there
    env = {
        "DIGEST_DATABASE_URL": sqlite_url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(closed),
        "DIGEST_NEWSLETTER_FROM": "Weekend Reading <news@example.org>",
        "DIGEST_NEWSLETTER_BASE_URL": "https://digest.example.org",
    }
    for email in ("ann@example.com", "bob@example.com"):
        cli(["subscribers", "add", email], env)
    week_of_posts(sqlite_url)
    # Each message is tried 4 times, 1 + 2 + 4 s apart (the retry's backoff, not a wait).
    failed = run_digest(["send", "--as-of", "2026-01-10T08:00Z"], env, workdir)
    assert failed.returncode == 1, failed.stderr
    line = failed.stdout.strip()
    assert line.startswith("issue #1: 0 sent, 0 failed, 0 skipped, 2 left for the next"), line
    assert f"; the last SMTP error: cannot connect to 127.0.0.1:{closed}: " in line
    sink = FlakySMTP()
    try:
        up = run_digest(["send", "--json"], env | {"DIGEST_SMTP_PORT": str(sink.port)}, workdir)
    finally:
        sink.close()
    assert up.returncode == 0, up.stderr
    summary = json.loads(up.stdout)
    assert (summary["mode"], summary["sent"], summary["left"], summary["reason"]) == (
        "resumed",
        2,
        0,
        None,
    )
    assert sorted(sink.recipients()) == ["ann@example.com", "bob@example.com"]


def test_import_streams_a_long_file_and_reports_its_bad_lines(
    workdir: Path, sqlite_url: str, sink: FlakySMTP
) -> None:
    """A real `digest subscribers import`: a line that isn't UTF-8 is refused on its own, the
    first 1,000 refused lines are listed and the rest counted, duplicates across the file's
    batches (2,000 rows each) are skipped; then the same from stdin adds nothing new."""
    env = env_for(sqlite_url, sink)
    good = [f"r{i}@example.com" for i in range(2500)]
    lines = [*good, "r7@example.com", *[f"bad{i}" for i in range(1003)]]
    data = ("\n".join(lines) + "\n").encode() + b"caf\xe9@example.com\n"
    (workdir / "big.txt").write_bytes(data)
    result = run_digest(["subscribers", "import", "big.txt"], env, workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2500 added, 1 skipped, 1004 invalid"
    errors = result.stderr.splitlines()
    assert len(errors) == 1001 and errors[-1] == "... and 4 more invalid lines"
    assert errors[0].startswith("line 2502: 'bad0' is not a valid email address")
    again = run_cli(["subscribers", "import", "-", "--json"], env, stdin="\n".join(good[:3]))
    summary = json.loads(again.stdout)
    assert (summary["added"], summary["skipped"], summary["invalid_count"]) == (0, 3, 0)
    (workdir / "utf16.csv").write_bytes("email\nann@example.com\n".encode("utf-16"))
    refused = run_digest(["subscribers", "import", "utf16.csv"], env, workdir)
    assert refused.returncode == 1 and refused.stderr.strip().endswith("utf16.csv: not UTF-8 text")
