"""build_message: the MIME structure, every header, the personal link, header injection refused."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default

import pytest

from digest.config import Settings
from digest.delivery.message import (
    PreparedEmail,
    address_header,
    as_bytes,
    build_message,
    seven_bit,
    unsubscribe_url,
)
from digest.errors import InputError
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


def _decoded(raw: bytes) -> tuple[str, str]:
    msg = message_from_bytes(raw, policy=default)
    text, html = (p.get_content() for p in msg.iter_parts())
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


def _expected(body: str, url: str) -> str:
    return "".join(line + "\n" for line in body.replace(UNSUBSCRIBE_PLACEHOLDER, url).splitlines())


@pytest.mark.parametrize(
    "body",
    [
        f"{UNSUBSCRIBE_PLACEHOLDER}",
        f"start {UNSUBSCRIBE_PLACEHOLDER}",
        f"{UNSUBSCRIBE_PLACEHOLDER} end\n\nnext",
        f"a{UNSUBSCRIBE_PLACEHOLDER}{UNSUBSCRIBE_PLACEHOLDER}b  \n",
        "x" * 300 + UNSUBSCRIBE_PLACEHOLDER + "é" * 200 + " \t",
        "no placeholder at all\r\nwith CRLF and = signs == and trailing space \n\n\n",
        "",
    ],
)
def test_prepared_body_decodes_to_the_personal_text(body: str) -> None:
    url = "https://digest.example.org/unsubscribe/42.a-b_c"
    rendered = RenderedEmail("s", "<p>" + body + "</p>", body)
    raw = build_message(rendered, SETTINGS, to="a@b.example", unsubscribe_url=url).as_bytes()
    text, html = _decoded(raw)
    assert text == _expected(body, url)
    assert html == _expected("<p>" + body + "</p>", url)


def test_body_lines_are_8bit_and_short() -> None:
    url = "https://digest.example.org/unsubscribe/" + "x" * 150
    body = ("é" * 300 + " word" * 300 + UNSUBSCRIBE_PLACEHOLDER) * 3
    raw = PreparedEmail(RenderedEmail("s", body, body), SETTINGS).render(
        to="a@b.example", unsubscribe_url=url
    )
    body_lines = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(line) for line in body_lines) <= 998
    assert b"Content-Transfer-Encoding: 8bit" in raw
    assert b"base64" not in raw  # SpamAssassin frowns on base64 text that is mostly ASCII
    text, html = _decoded(raw)
    assert " ".join(html.split()) == " ".join(_expected(body, url).split())


def test_a_line_that_cannot_be_folded_goes_quoted_printable() -> None:
    url = "https://digest.example.org/unsubscribe/1.ab"
    html = f'<a href="https://x.example/{"a" * 1500}">{UNSUBSCRIBE_PLACEHOLDER}</a>'
    raw = PreparedEmail(RenderedEmail("s", html, "short text"), SETTINGS).render(
        to="a@b.example", unsubscribe_url=url
    )
    assert raw.count(b"Content-Transfer-Encoding: 8bit") == 1  # the text part
    assert raw.count(b"Content-Transfer-Encoding: quoted-printable") == 1
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert _decoded(raw)[1] == _expected(html, url)


def test_seven_bit_for_a_server_without_8bitmime() -> None:
    url = "https://digest.example.org/unsubscribe/1.ab"
    body = "Grüße — " + "word " * 400 + UNSUBSCRIBE_PLACEHOLDER
    raw = PreparedEmail(RenderedEmail("s", body, body), SETTINGS).render(
        to="a@b.example", unsubscribe_url=url
    )
    seven = seven_bit(raw)
    assert seven.isascii() and b"quoted-printable" in seven
    assert max(len(line) for line in seven.split(b"\r\n")) <= 78
    assert _decoded(seven) == _decoded(raw)


def test_prepared_copies_differ_only_in_personal_parts() -> None:
    prepared = PreparedEmail(RENDERED, SETTINGS)
    one = prepared.render(
        to="one@example.com", unsubscribe_url="https://u/1.aa", message_id="<1@x>"
    )
    two = prepared.render(
        to="two@example.com", unsubscribe_url="https://u/2.bb", message_id="<2@x>"
    )
    assert _decoded(one)[0].endswith("Unsubscribe: https://u/1.aa\n")
    assert _decoded(two)[0].endswith("Unsubscribe: https://u/2.bb\n")
    assert one.count(b"https://u/1.aa") == 3 and b"https://u/2.bb" not in one


def test_non_ascii_display_name_is_encoded() -> None:
    to = address_header("jo@example.com", "Jöhn Dœ")
    raw = PreparedEmail(RENDERED, SETTINGS).render(to=to, unsubscribe_url="https://u/1")
    assert raw.split(b"\r\n\r\n", 1)[0].isascii()  # headers; bodies are 8bit
    assert message_from_bytes(raw, policy=default)["To"] == "Jöhn Dœ <jo@example.com>"


def test_long_subject_is_folded_and_encoded() -> None:
    rendered = RenderedEmail("Weekend Reading #12 — " + "many words " * 20, "<p>h</p>", "t")
    raw = PreparedEmail(rendered, SETTINGS).render(to="a@b.example", unsubscribe_url="https://u/1")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert message_from_bytes(raw, policy=default)["Subject"] == rendered.subject.strip()


def test_each_placeholder_gets_its_own_url() -> None:
    from digest.types import PREFERENCES_PLACEHOLDER

    unsubscribe, preferences = (
        "https://d.example/unsubscribe/1.a",
        "https://d.example/preferences/1.b",
    )
    body = f"Unsubscribe: {UNSUBSCRIBE_PLACEHOLDER}\nSections: {PREFERENCES_PLACEHOLDER}\n"
    html = f'<a href="{UNSUBSCRIBE_PLACEHOLDER}">u</a> <a href="{PREFERENCES_PLACEHOLDER}">p</a>'
    raw = PreparedEmail(RenderedEmail("s", html, body), SETTINGS).render(
        to="a@b.example", unsubscribe_url=unsubscribe, preferences_url=preferences
    )
    text, page = _decoded(raw)
    assert text == f"Unsubscribe: {unsubscribe}\nSections: {preferences}\n"
    assert page == f'<a href="{unsubscribe}">u</a> <a href="{preferences}">p</a>\n'


def test_a_line_with_two_placeholders_stays_under_998_bytes_with_long_urls() -> None:
    from digest.types import PREFERENCES_PLACEHOLDER

    url = "https://digest.example.org/" + "x" * 160  # 187 bytes each
    line = "w" * 700 + UNSUBSCRIBE_PLACEHOLDER + PREFERENCES_PLACEHOLDER  # 788 bytes, no space
    raw = PreparedEmail(RenderedEmail("s", line, line), SETTINGS).render(
        to="a@b.example", unsubscribe_url=url, preferences_url=url + "p"
    )
    assert max(len(x) for x in raw.split(b"\r\n")) <= 998
    text, _html = _decoded(raw)
    assert text == "w" * 700 + url + url + "p\n"
