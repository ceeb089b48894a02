"""VERP: the tagged bounce address as each message's envelope sender, and tags that can't be
forged; the Feedback-ID header."""

from __future__ import annotations

import re
from email import message_from_bytes

import pytest

from digest.config import Settings
from digest.delivery.send import deliver
from digest.delivery.subscribers import add_subscriber
from digest.delivery.verp import check_tag, envelope_sender, feedback_id, make_tag, read_tag
from digest.storage import Database
from tests.delivery.test_send import Renders, new_issue, settings_for
from tests.smtp_helpers import FlakySMTP

BOUNCES = "bounces@news.example.org"


def with_bounces(settings: Settings, **more: object) -> Settings:
    return settings.replace(newsletter={"bounce_address": BOUNCES, **more})


def test_a_tag_names_its_subscriber_and_issue_and_nothing_else() -> None:
    tag = make_tag("key", 345, "ann@example.com", 12)
    assert len(f"bounces+{tag}") <= 64  # an RFC 5321 local part
    read = read_tag(BOUNCES, f"bounces+{tag}@news.example.org")
    assert read is not None
    assert (read.issue_id, read.subscriber_id) == (12, 345)
    assert check_tag("key", read, "ann@example.com")
    assert not check_tag("key", read, "bob@example.com")  # the address is under the MAC
    assert not check_tag("other key", read, "ann@example.com")
    # Servers may lower-case the local part on the way back: the tag is lower case already.
    assert read_tag(BOUNCES, f"BOUNCES+{tag.upper()}@NEWS.example.org") == read


@pytest.mark.parametrize(
    "address",
    [
        "bounces@news.example.org",  # no tag
        "bounces+12.345@news.example.org",  # no MAC
        "bounces+12.345.aaaaaaaaaaaaaaaa@other.example.org",  # another domain
        "other+12.345.aaaaaaaaaaaaaaaa@news.example.org",  # another mailbox
        "bounces+12.0.aaaaaaaaaaaaaaaa@news.example.org",  # no subscriber 0
    ],
)
def test_what_is_not_a_tag(address: str) -> None:
    assert read_tag(BOUNCES, address) is None


def test_an_altered_tag_fails() -> None:
    tag = make_tag("key", 345, "ann@example.com", 12)
    for forged in (tag.replace("12.", "13.", 1), tag.replace(".345.", ".346."), tag[:-1] + "a"):
        read = read_tag(BOUNCES, f"bounces+{forged}@news.example.org")
        assert read is None or not check_tag("key", read, "ann@example.com"), forged


def test_envelope_sender_by_settings() -> None:
    plain = Settings().replace(newsletter={"from_addr": "News <news@example.org>"})
    assert envelope_sender(plain, "k", 3, "a@b.example", 1) == "news@example.org"
    tagged = with_bounces(plain)
    assert envelope_sender(tagged, "k", 3, "a@b.example", 1).startswith("bounces+1.3.")
    assert envelope_sender(tagged, "k", None, "a@b.example", None) == BOUNCES
    untagged = with_bounces(plain, verp=False)
    assert envelope_sender(untagged, "k", 3, "a@b.example", 1) == BOUNCES


def test_each_message_goes_out_from_its_own_tagged_address(db: Database) -> None:
    sink = FlakySMTP()
    try:
        settings = with_bounces(settings_for(sink))
        ids = {add_subscriber(db, e)[0].id: e for e in ("ann@example.com", "bob@example.com")}
        issue = new_issue(db)
        deliver(db, settings, issue, Renders())
        senders = {env.rcpt_tos[0]: env.mail_from for env, _raw in sink.handler.messages}
        for sid, email in ids.items():
            read = read_tag(BOUNCES, str(senders[email]))
            assert read is not None and read.subscriber_id == sid and read.issue_id == issue
            assert check_tag("test-key", read, email)
        header = message_from_bytes(sink.handler.messages[0][1])["Feedback-ID"]
        assert re.fullmatch(r"issue\d+:weekend-reading:newsletter:digest", header)
        assert feedback_id(settings, None) == "single:weekend-reading:newsletter:digest"
    finally:
        sink.close()


def test_without_a_bounce_address_the_from_address_is_the_sender(db: Database) -> None:
    sink = FlakySMTP()
    try:
        settings = settings_for(sink)
        add_subscriber(db, "ann@example.com")
        deliver(db, settings, new_issue(db), Renders())
        assert [env.mail_from for env, _raw in sink.handler.messages] == ["news@example.org"]
    finally:
        sink.close()
