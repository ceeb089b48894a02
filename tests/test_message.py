"""build_message: the MIME structure, every header, the personal link, header injection refused."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default

import pytest

from digest.config import Settings
from digest.errors import InputError
from digest.message import address_header, as_bytes, build_message, unsubscribe_url
from digest.types import UNSUBSCRIBE_PLACEHOLDER, RenderedEmail

SETTINGS = Settings().replace(
    newsletter={
        "from_addr": "Weekend Reading <news@example.org>",
        "base_url": "https://digest.example.org",
        "reply_to": "editor@example.org",
    }
)
RENDERED = RenderedEmail(
    subject="Weekend Reading #3 — 2 new posts from 2 blogs",
    html=f'<html><body><p>Hello ünïcode</p><a href="{UNSUBSCRIBE_PLACEHOLDER}">unsub</a></body>',
    text=f"Hello ünïcode\n\nUnsubscribe: {UNSUBSCRIBE_PLACEHOLDER}\n",
)


def _build(**kwargs: object) -> EmailMessage:
    url = unsubscribe_url(SETTINGS, "42.abc")
    args: dict[str, object] = {"to": "reader@example.com", "unsubscribe_url": url}
    args.update(kwargs)
    return build_message(RENDERED, SETTINGS, **args)  # type: ignore[arg-type]


def _parse(msg: EmailMessage) -> Message:
    return message_from_bytes(as_bytes(msg), policy=default)


def test_unsubscribe_url() -> None:
    assert unsubscribe_url(SETTINGS, "7.xyz") == "https://digest.example.org/unsubscribe/7.xyz"


def test_every_header_present() -> None:
    when = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
    msg = _parse(_build(date=when, message_id="<m1@example.org>"))
    assert msg["From"] == "Weekend Reading <news@example.org>"
    assert msg["To"] == "reader@example.com"
    assert msg["Reply-To"] == "editor@example.org"
    assert msg["Subject"] == RENDERED.subject
    assert msg["Date"] == "Sat, 10 Jan 2026 08:00:00 +0000"
    assert msg["Message-ID"] == "<m1@example.org>"
    assert msg["List-Id"] == "Weekend Reading <weekend-reading.example.org>"
    assert msg["List-Unsubscribe"] == "<https://digest.example.org/unsubscribe/42.abc>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["MIME-Version"] == "1.0"


def test_defaults_for_date_and_message_id() -> None:
    msg = _parse(_build())
    assert msg["Date"]
    assert str(msg["Message-ID"]).endswith("@example.org>")
    assert _parse(_build())["Message-ID"] != msg["Message-ID"]


def test_multipart_alternative_text_then_html_with_personal_link() -> None:
    msg = _parse(_build())
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())  # type: ignore[attr-defined]
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    text, html = (p.get_content() for p in parts)
    assert "https://digest.example.org/unsubscribe/42.abc" in text
    assert 'href="https://digest.example.org/unsubscribe/42.abc"' in html
    assert UNSUBSCRIBE_PLACEHOLDER not in text + html
    assert "ünïcode" in text and "ünïcode" in html


def test_wire_format_has_crlf_and_short_lines() -> None:
    long = RenderedEmail("s", "<p>" + "word " * 5000 + "</p>", "x" * 3000)
    raw = as_bytes(build_message(long, SETTINGS, to="a@b.example", unsubscribe_url="https://u/1"))
    assert b"\r\n" in raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


@pytest.mark.parametrize(
    "to", ["a@b.example\r\nBcc: x@y.example", "a@b.example\nBcc: x@y.example", "a@b\rc"]
)
def test_header_injection_in_to_is_refused(to: str) -> None:
    with pytest.raises(InputError, match="line break"):
        _build(to=to)


def test_header_injection_in_url_is_refused() -> None:
    with pytest.raises(InputError):
        _build(unsubscribe_url="https://x/u/1\r\nBcc: x@y.example")


def test_subject_with_line_break_is_flattened() -> None:
    rendered = RenderedEmail("one\r\nBcc: x@y.example", "<p>h</p>", "t")
    msg = _parse(build_message(rendered, SETTINGS, to="a@b.example", unsubscribe_url="https://u/1"))
    assert msg["Subject"] == "one Bcc: x@y.example"
    assert msg["Bcc"] is None


def test_no_reply_to_when_unset() -> None:
    settings = SETTINGS.replace(newsletter={"reply_to": ""})
    msg = build_message(RENDERED, settings, to="a@b.example", unsubscribe_url="https://u/1")
    assert msg["Reply-To"] is None


def test_address_header_quotes_names() -> None:
    assert address_header("a@b.example") == "a@b.example"
    assert address_header("a@b.example", "Doe, Jane") == '"Doe, Jane" <a@b.example>'
    with pytest.raises(InputError):
        address_header("a@b.example", "x\nBcc: y@z.example")
