"""Hearing back, end to end: `digest send` to a real aiosmtpd, bounces and complaints in a real
dovecot, `digest bounces fetch` over IMAPS (a real process) and IMAP, `digest send` again,
`digest status`. The other commands run in process; SQLite only (bounces/test_apply.py and
test_services.py store bounces on both backends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from digest.delivery.verp import check_tag, make_tag, read_tag
from tests.bounce_helpers import bounce
from tests.conftest import run_cli, run_digest
from tests.imap_helpers import PASSWORD, Dovecot
from tests.issue_helpers import SAT
from tests.smtp_helpers import FlakySMTP
from tests.test_cli_delivery import week_of_posts

pytestmark = pytest.mark.slow
BOUNCES = "bounces@news.example.org"
KEY = "e2e-signing-key"
READERS = [f"reader{n:02d}@example.com" for n in range(1, 21)]
HARD, SOFT, COMPLAINS, AWAY, FORGED = READERS[:5]


@pytest.fixture
def sink() -> Iterator[FlakySMTP]:
    server = FlakySMTP()
    yield server
    server.close()


@pytest.fixture
def imap() -> Iterator[Dovecot]:
    server = Dovecot()
    yield server
    server.close()


def env_for(db_url: str, sink: FlakySMTP, imap: Dovecot, *, tls: bool = True) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(sink.port),
        "DIGEST_NEWSLETTER_FROM": "Weekend Reading <news@example.org>",
        "DIGEST_NEWSLETTER_BOUNCE_ADDRESS": BOUNCES,
        "DIGEST_NEWSLETTER_SECRET_KEY": KEY,
        "DIGEST_BOUNCES_IMAP_URL": imap.url(tls=tls),
        "DIGEST_BOUNCES_PASSWORD": PASSWORD,
        "DIGEST_BOUNCES_CA_FILE": str(imap.cert),  # trust the test certificate
    }


def sent(sink: FlakySMTP) -> dict[str, tuple[str, str]]:
    """recipient -> (envelope sender, Message-ID) of what the SMTP server received."""
    with sink.handler.lock:
        return {
            env.rcpt_tos[0]: (str(env.mail_from), str(message_from_bytes(raw)["Message-ID"]))
            for env, raw in sink.handler.messages
        }


def cli(args: list[str], env: dict[str, str], ok: bool = True) -> str:
    """What a command prints, stdout and stderr (run in this process)."""
    result = run_cli(args, env)
    if ok:
        assert result.exit_code == 0, result.output
    return result.stdout + result.stderr


def data(args: list[str], env: dict[str, str]) -> Any:
    """The JSON a command prints on stdout (its log lines go to stderr)."""
    result = run_cli([*args, "--json"], env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def statuses(env: dict[str, str]) -> dict[str, str]:
    rows = data(["subscribers", "list"], env)
    return {r["email"]: r["status"] for r in rows}


def test_bounces_and_complaints_end_to_end(
    workdir: Path, sqlite_url: str, sink: FlakySMTP, imap: Dovecot
) -> None:
    env = env_for(sqlite_url, sink, imap)
    (workdir / "list.txt").write_text("\n".join(READERS) + "\n")
    assert "20 added" in cli(["subscribers", "import", "list.txt"], env)
    week_of_posts(sqlite_url)
    assert "issue #1: 20 sent" in cli(["send", "--as-of", "2026-01-10T08:00Z"], env)

    # Every message left from its reader's own tagged bounce address.
    first = sent(sink)
    assert sorted(first) == READERS
    for email, (sender, _mid) in first.items():
        tag = read_tag(BOUNCES, sender)
        assert tag is not None and tag.issue_id is not None, sender
        assert check_tag(KEY, tag, email)

    def back(name: str, email: str, copy: int = 0, verp: str | None = None) -> bytes:
        sender, mid = first[email]
        raw = bounce(name, rcpt=email, verp=verp or sender, msgid=mid)
        return f"X-Copy: {copy}\r\n".encode() + raw  # a bounce repeated is a new message

    tag = read_tag(BOUNCES, first[FORGED][0])
    assert tag is not None
    guessed = make_tag("guessed-key", tag.subscriber_id, FORGED, tag.issue_id)
    forged = f"bounces+{guessed}@news.example.org"
    soft_kinds = ["microsoft365_blocked", "gmail_dsn_over_quota", "exim_quota"]
    imap.append(
        back("postfix_dsn_hard", HARD),
        *(back(soft_kinds[n % 3], SOFT, n) for n in range(4)),
        back("arf_abuse", COMPLAINS),
        back("outlook_out_of_office", AWAY),
        back("postfix_dsn_delayed", SOFT),  # delay warnings: no bounce (issue 23)
        back("gmail_delay_warning", SOFT),
        back("microsoft365_ndr", FORGED, verp=forged),
        back("human_reply", AWAY),
    )
    fetched = run_digest(["bounces", "fetch", "--json"], env, workdir)  # a real process
    assert fetched.returncode == 0, fetched.stderr
    summary = json.loads(fetched.stdout)
    assert summary | {"bounced": [], "complained": []} == {
        "messages": 11, "hard": 1, "soft": 4, "complaints": 1, "ignored": 3, "unrecognised": 1,
        "unmatched": 0, "forged": 1, "quarantined": 0, "bounced": [], "complained": [],
    }  # fmt: skip
    assert summary["bounced"] == [HARD] and summary["complained"] == [COMPLAINS]
    now = statuses(env)
    assert [e for e, s in now.items() if s != "active"] == [HARD, COMPLAINS]
    assert (imap.count("INBOX"), imap.count("digest-done")) == (1, 10)  # the reply stays

    # The fifth soft bounce, read over imap:// (STARTTLS): now the second reader bounces.
    imap.append(back(soft_kinds[1], SOFT, 5))
    plain = env_for(sqlite_url, sink, imap, tls=False)
    assert "now bounced: " + SOFT in cli(["bounces", "fetch"], plain)
    now = statuses(env)
    assert (now[HARD], now[SOFT], now[COMPLAINS], now[AWAY], now[FORGED]) == (
        "bounced", "bounced", "complained", "active", "active",
    )  # fmt: skip
    assert imap.count("INBOX") == 1  # the unrecognised reply, flagged and not read again

    # The next issue skips the three.
    week_of_posts(sqlite_url, SAT + timedelta(days=7), tag=" 2")
    out = cli(["send", "--as-of", "2026-01-17T08:00Z"], env)
    assert "issue #2: 17 sent" in out
    again = sink.recipients()[20:]
    assert len(again) == 17 and {HARD, SOFT, COMPLAINS}.isdisjoint(again)
    assert {AWAY, FORGED} <= set(again)

    # The rates, per issue.
    status = data(["status"], env)
    rates = {r["number"]: r for r in status["issue_rates"]}
    assert rates[1] == {
        "number": 1, "sent": 20, "failed": 0, "hard_bounces": 1, "soft_bounces": 1,
        "complaints": 1, "bounce_rate": 0.05, "complaint_rate": 0.05,
    }  # fmt: skip
    assert rates[2]["sent"] == 17 and rates[2]["bounce_rate"] == 0.0
    text = cli(["status"], env)
    assert "#1: 20 handed to the relay, 0 refused; bounce rate 5.00% (1 hard, 1 soft), " in text
    assert "complaint rate 5.00% (1)" in text

    # What was heard, by reader and in all.
    shown = data(["subscribers", "show", SOFT], env)
    assert shown["status"] == "bounced" and len(shown["events"]) == 5
    assert {e["kind"] for e in shown["events"]} == {"soft"}
    assert {e["issue"] for e in shown["events"]} == {1}
    listed = data(["bounces", "list"], env)
    assert sorted(e["kind"] for e in listed) == ["complaint", "hard"] + ["soft"] * 5
    assert "5.1.1" in cli(["subscribers", "show", HARD], env)

    # A complained reader is not subscribed again by hand (without --force) or by import.
    refused = cli(["subscribers", "add", COMPLAINS], env, ok=False)
    assert "reported this newsletter as spam" in refused
    assert "0 added, 20 skipped" in cli(["subscribers", "import", "list.txt"], env)
    assert statuses(env)[COMPLAINS] == "complained"
    assert "resubscribed" in cli(["subscribers", "add", COMPLAINS, "--force"], env)
