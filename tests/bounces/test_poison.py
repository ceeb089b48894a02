"""One unreadable message among good ones in a real dovecot: `digest bounces fetch` applies the
good ones, sets the poison aside and says so, and the next fetch is fine (issue 23)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from digest.delivery.subscribers import add_subscriber, list_subscribers
from digest.delivery.verp import make_tag
from digest.storage import Database
from tests.bounce_helpers import bounce
from tests.conftest import run_cli
from tests.imap_helpers import PASSWORD, Dovecot

pytestmark = pytest.mark.slow
KEY = "poison-key"
BOUNCES = "bounces@news.example.org"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    yield server
    server.close()


@pytest.fixture
def imap(dovecot: Dovecot) -> Iterator[Dovecot]:
    yield dovecot
    for folder in ("INBOX", "digest-done", "digest-quarantine"):
        client = dovecot.client()
        if client.select(folder)[0] == "OK" and client.search(None, "ALL")[1][0]:
            client.store("1:*", "+FLAGS", r"(\Deleted)")
            client.expunge()
        client.logout()


def env_for(db_url: str, imap: Dovecot) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_NEWSLETTER_FROM": "Weekend Reading <news@example.org>",
        "DIGEST_NEWSLETTER_BOUNCE_ADDRESS": BOUNCES,
        "DIGEST_NEWSLETTER_SECRET_KEY": KEY,
        "DIGEST_BOUNCES_IMAP_URL": imap.url(),
        "DIGEST_BOUNCES_PASSWORD": PASSWORD,
        "DIGEST_BOUNCES_CA_FILE": str(imap.cert),
    }


def tagged(db: Database, email: str) -> str:
    info, _ = add_subscriber(db, email)
    subscriber = next(s for s in list_subscribers(db) if s.email == info.email)
    return f"bounces+{make_tag(KEY, subscriber.id, email, None)}@news.example.org"


def nested(depth: int = 1400) -> bytes:
    """A multipart nested deeper than Python's recursion limit (~80 KB)."""
    head = b"From: someone@example.net\r\nTo: bounces@news.example.org\r\nSubject: nest\r\n"
    levels = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    return head + levels + b"Content-Type: text/plain\r\n\r\nhi\r\n"


def test_a_poison_message_is_set_aside_and_the_rest_applied(db_url: str, imap: Dovecot) -> None:
    db = Database(db_url)
    ann, bob = "ann@example.com", "bob@example.com"
    ann_verp, bob_verp = tagged(db, ann), tagged(db, bob)
    mac = ann_verp.partition("@")[0].rpartition(".")[2]
    out_of_range = f"bounces+0.999999999999.{mac}@news.example.org"
    imap.append(
        bounce("postfix_dsn_hard", rcpt=ann, verp=ann_verp),
        nested(),
        bounce("postfix_dsn_hard", rcpt=ann, verp=out_of_range),  # overflows PostgreSQL's integer
        bounce("arf_abuse", rcpt=bob, verp=bob_verp),
    )
    env = env_for(db_url, imap)
    result = run_cli(["bounces", "fetch"], env)
    assert result.exit_code == 0, result.output
    assert "4 messages: 1 hard, 0 soft, 1 complaints" in result.output
    assert "1 forged (ignored), 1 unreadable (set aside)" in result.output
    assert "now bounced: ann@example.com; now complained: bob@example.com" in result.output
    statuses = {s.email: s.status for s in list_subscribers(db)}
    assert statuses == {ann: "bounced", bob: "complained"}
    assert (imap.count("INBOX"), imap.count("digest-done"), imap.count("digest-quarantine")) == (
        0,
        3,
        1,
    )

    again = run_cli(["bounces", "fetch", "--json"], env)
    assert again.exit_code == 0 and json.loads(again.output)["messages"] == 0

    listed = run_cli(["bounces", "list"], env).output
    assert "1 unreadable messages set aside (in the folder digest-quarantine)" in listed
    assert "someone@example.net  'nest': RecursionError" in listed
    status = json.loads(run_cli(["status", "--json"], env).stdout)
    assert status["bounces_set_aside"]["count"] == 1
    assert "1 unreadable messages set aside in digest-quarantine" in run_cli(["status"], env).output
    db.dispose()
