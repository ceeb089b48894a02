"""DKIM signing with OpenSSL's RSA: dkimpy's very signature, over-signed headers (issue 23)."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest

from digest.config import Settings
from digest.delivery.dkimsign import DkimSigner, signed_headers
from digest.delivery.message import PreparedEmail
from digest.errors import ConfigError
from digest.types import UNSUBSCRIBE_PLACEHOLDER, RenderedEmail
from tests.smtp_helpers import make_dkim_key

RENDERED = RenderedEmail(
    "Weekend Reading #1", f"<p>hi <a href='{UNSUBSCRIBE_PLACEHOLDER}'>u</a></p>", "hi"
)
SETTINGS = Settings().replace(
    newsletter={
        "from_addr": "Weekend Reading <news@example.org>",
        "base_url": "https://news.example.org",
    }
)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return make_dkim_key(tmp_path_factory.mktemp("dkim"))


def message(to: str = "ann@example.com") -> bytes:
    email = PreparedEmail(RENDERED, SETTINGS, feedback_id="issue1:weekend-reading:newsletter:x")
    return email.render(to=to, unsubscribe_url="https://news.example.org/unsubscribe/t1")


def dns_for(public: str) -> object:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.org."
        return f"v=DKIM1; k=rsa; p={public}".encode()

    return dns


def test_the_signature_is_dkimpys_byte_for_byte(
    key: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = message()
    ours = DkimSigner("example.org", "s1", key[0].read_bytes()).sign(raw, now=1767000000)
    headers, _body = dkim.rfc822_parse(raw)
    monkeypatch.setattr(dkim.time, "time", lambda: 1767000000.5)
    theirs = dkim.sign(
        raw, b"s1", b"example.org", key[0].read_bytes(), include_headers=signed_headers(headers)
    )
    assert ours == theirs + raw


def test_headers_a_reader_acts_on_are_signed_once_more_than_present(
    key: tuple[Path, str],
) -> None:
    signed = DkimSigner("example.org", "s1", key[0].read_bytes()).sign(message())
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    h = header.split(" h=", 1)[1].split(";", 1)[0].replace("\r\n", "").replace(" ", "")
    listed = h.split(":")
    for name in ("from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe"):
        assert listed.count(name) == 2, name
    assert listed.count("list-unsubscribe-post") == 2 and listed.count("feedback-id") == 2
    assert listed.count("mime-version") == 1 and listed.count("reply-to") == 1
    assert dkim.verify(signed, dnsfunc=dns_for(key[1]))


def test_an_unusable_key_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no readable PEM private key"):
        DkimSigner("example.org", "s1", b"-----BEGIN PRIVATE KEY-----\nnope\n")
