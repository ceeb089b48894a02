"""Classification of what arrives at the bounce address: one fixture per real format."""

from __future__ import annotations

import pytest

from digest.bounces.classify import DELAY_WARNING, classify
from digest.types import BounceKind
from tests.bounce_helpers import MSGID, RCPT, VERP, bounce, names

HARD, SOFT, COMPLAINT = BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT

# fixture -> (kind, note): what each format must come to.
EXPECTED: dict[str, tuple[BounceKind | None, str]] = {
    # RFC 3464 delivery status notifications, by status code
    "postfix_dsn_hard": (HARD, "5.1.1"),
    "postfix_dsn_delayed": (None, DELAY_WARNING),  # Action: delayed: no bounce (issue 23)
    "gmail_dsn_no_such_user": (HARD, "5.1.1"),
    "gmail_dsn_over_quota": (SOFT, "5.2.2"),  # a full mailbox is no dead address
    "microsoft365_ndr": (HARD, "5.1.10"),
    "microsoft365_blocked": (SOFT, "5.7.1"),  # a block list: our problem, not the address's
    "ses_dsn_hard": (HARD, "5.1.1"),
    "dsn_delivered": (None, "delivery notice (delivered or relayed)"),
    # non-standard bounces, through flufl.bounce
    "exim_hard": (HARD, "5.1.1"),
    "exim_quota": (SOFT, "4.2.2"),
    "qmail_hard": (HARD, "5.1.1"),
    "postfix_legacy_hard": (HARD, "failed"),
    "yahoo_hard": (HARD, "5.0.0"),
    "gmail_delay_warning": (None, DELAY_WARNING),
    # RFC 5965 feedback reports
    "arf_abuse": (COMPLAINT, "abuse"),
    "arf_redacted": (COMPLAINT, "abuse"),
    "arf_not_spam": (None, "feedback report (not-spam)"),
    # auto-replies, ignored; and a person's reply, unrecognised
    "outlook_out_of_office": (None, "auto-reply"),
    "vacation_rfc3834": (None, "auto-reply"),
    "gmail_vacation": (None, "auto-reply"),
    "subject_only_out_of_office": (None, "auto-reply"),
    "human_reply": (None, "not a bounce"),
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(EXPECTED) == names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_kind(name: str) -> None:
    report = classify(bounce(name))
    assert (report.kind, report.note) == EXPECTED[name]
    assert report.ignored == (report.kind is None and name != "human_reply")


@pytest.mark.parametrize(
    "name", [n for n, (kind, _) in EXPECTED.items() if kind is not None and n != "arf_redacted"]
)
def test_a_bounce_names_the_recipient_and_our_message(name: str) -> None:
    report = classify(bounce(name))
    assert report.recipients == (RCPT,)
    assert report.message_id == MSGID
    assert VERP in report.addressed_to


def test_a_redacted_complaint_still_links_by_message_id_and_return_path() -> None:
    report = classify(bounce("arf_redacted", verp="bounces+1.2.abc@news.example.org"))
    assert report.recipients == ("redacted@mail.example",)
    assert report.message_id == MSGID
    assert "bounces+1.2.abc@news.example.org" in report.addressed_to


def test_diagnostics_are_the_servers_words_on_one_line() -> None:
    assert classify(bounce("microsoft365_ndr")).diagnostic.startswith(
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound"
    )
    postfix = classify(bounce("postfix_dsn_hard")).diagnostic
    assert "\n" not in postfix and "User unknown in virtual mailbox table" in postfix
    assert "Mailbox is full" in classify(bounce("exim_quota")).diagnostic


def test_an_out_of_office_with_numbers_in_it_is_no_bounce() -> None:
    # "550 unread messages" must not read as an SMTP reply.
    assert classify(bounce("outlook_out_of_office")).kind is None


def test_garbage_and_empty_messages_are_unrecognised() -> None:
    for raw in (b"", b"\x00\xff garbage", b"Content-Type: multipart/report\r\n\r\n--x--"):
        report = classify(raw)
        assert report.kind is None and not report.ignored


def test_a_huge_message_is_read_in_bounded_time() -> None:
    import time

    raw = bounce("exim_hard") + b"x" * 5_000_000 + b"\r\n"
    started = time.monotonic()
    assert classify(raw).kind == HARD
    assert time.monotonic() - started < 5
