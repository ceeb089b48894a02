"""SMTP transport against real aiosmtpd servers: reuse, retries, 4xx/5xx, TLS, AUTH, DKIM, rate."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import dkim
import pytest

from digest.config import Settings
from digest.delivery.mail import SmtpTransport
from digest.delivery.message import PreparedEmail
from digest.errors import ConfigError, PermanentSendError, SendError, TransientSendError
from digest.types import UNSUBSCRIBE_PLACEHOLDER, RenderedEmail
from tests.smtp_helpers import FlakySMTP, make_cert, make_dkim_key

RENDERED = RenderedEmail(
    "Weekend Reading #1", f"<p>hi <a href='{UNSUBSCRIBE_PLACEHOLDER}'>u</a>", "hi"
)


@pytest.fixture
def server() -> Iterator[FlakySMTP]:
    sink = FlakySMTP()
    yield sink
    sink.close()


def _settings(port: int, **smtp: object) -> Settings:
    return Settings().replace(
        smtp={"host": "127.0.0.1", "port": port, **smtp},
        newsletter={"from_addr": "Weekend Reading <news@example.org>"},
    )


HTTPS = Settings().replace(newsletter={"base_url": "https://x"})


def _raw(to: str) -> bytes:
    return PreparedEmail(RENDERED, HTTPS).render(to=to, unsubscribe_url="https://x/u/1.a")


def test_sends_and_reuses_one_connection(server: FlakySMTP) -> None:
    with SmtpTransport(_settings(server.port)) as t:
        for i in range(5):
            t.send(_raw(f"r{i}@example.com"), f"r{i}@example.com")
        assert t.connections == 1
    assert server.handler.ehlos == 1
    assert server.recipients() == [f"r{i}@example.com" for i in range(5)]
    envelope = server.handler.messages[0][0]
    assert envelope.mail_from == "news@example.org"


def test_8bit_bodies_and_a_server_without_8bitmime(server: FlakySMTP) -> None:
    rendered = RenderedEmail("Grüße", "<p>Grüße — déjà vu</p>", "Grüße — déjà vu")
    raw = PreparedEmail(rendered, Settings()).render(
        to="a@example.com", unsubscribe_url="https://x/u/1.a"
    )
    with SmtpTransport(_settings(server.port)) as t:
        t.send(raw, "a@example.com")
    envelope = server.handler.messages[0][0]
    assert "BODY=8BITMIME" in envelope.mail_options
    server.handler.eight_bit = False
    with SmtpTransport(_settings(server.port)) as t:
        t.send(raw, "b@example.com")
    seven = server.raw[1]
    assert seven.isascii() and b"quoted-printable" in seven
    parts = message_from_bytes(seven).get_payload()
    assert isinstance(parts, list) and len(parts) == 2
    part = parts[0]
    assert isinstance(part, Message)
    text = part.get_payload(decode=True)
    assert isinstance(text, bytes) and text.decode().rstrip() == "Grüße — déjà vu"


def test_lines_starting_with_a_dot_arrive_intact(server: FlakySMTP) -> None:
    raw = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nend"
    with SmtpTransport(_settings(server.port)) as t:
        t.send(raw, "a@example.com")
    assert server.raw == [raw + b"\r\n"]


def test_451_once_is_retried(server: FlakySMTP) -> None:
    server.handler.replies = ["451 4.3.0 try again later"]
    with SmtpTransport(_settings(server.port)) as t:
        assert t.send_with_retry(_raw("a@example.com"), "a@example.com", backoff=0.01) == 2
    assert server.recipients() == ["a@example.com"]


def test_dropped_connection_is_transient_and_reconnects(server: FlakySMTP) -> None:
    server.handler.drop = 1
    with SmtpTransport(_settings(server.port)) as t:
        with pytest.raises(TransientSendError, match="connection lost"):
            t.send(_raw("a@example.com"), "a@example.com")
        t.send(_raw("a@example.com"), "a@example.com")
        assert t.connections == 2
    assert server.recipients() == ["a@example.com"]


def test_transient_failures_give_up_after_the_attempts(server: FlakySMTP) -> None:
    server.handler.replies = ["451 busy"] * 3
    slept: list[float] = []
    transport = SmtpTransport(_settings(server.port), sleep=slept.append)
    with transport as t, pytest.raises(TransientSendError, match="451 busy"):
        t.send_with_retry(_raw("a@example.com"), "a@example.com", attempts=3, backoff=0.5)
    assert slept == [0.5, 1.0]


def test_550_for_one_recipient_is_permanent_and_the_next_goes_on(server: FlakySMTP) -> None:
    server.handler.reject = {"gone@example.com": "550 5.1.1 no such user"}
    with SmtpTransport(_settings(server.port)) as t:
        with pytest.raises(PermanentSendError, match="gone@example.com refused: 550"):
            t.send_with_retry(_raw("gone@example.com"), "gone@example.com")
        t.send(_raw("ok@example.com"), "ok@example.com")
        assert t.connections == 1
    assert server.recipients() == ["ok@example.com"]


def test_554_at_data_is_permanent(server: FlakySMTP) -> None:
    server.handler.replies = ["554 5.7.1 content rejected"]
    with SmtpTransport(_settings(server.port)) as t, pytest.raises(PermanentSendError):
        t.send(_raw("a@example.com"), "a@example.com")


def test_a_refused_command_at_data_stops_the_run_and_blames_no_recipient(
    server: FlakySMTP,
) -> None:
    server.handler.replies = ["500 Error: (FileNotFoundError) [Errno 2] No such file"]
    with SmtpTransport(_settings(server.port)) as t:
        with pytest.raises(SendError, match="refused a command: 500 Error") as raised:
            t.send(_raw("a@example.com"), "a@example.com")
        assert not isinstance(raised.value, PermanentSendError)
        t.send(_raw("b@example.com"), "b@example.com")  # the connection is still good
    assert server.recipients() == ["b@example.com"]


def test_501_with_an_address_code_at_rcpt_is_the_recipient_s(server: FlakySMTP) -> None:
    server.handler.reject = {"bad@example.com": "501 5.1.3 Bad recipient address syntax"}
    with SmtpTransport(_settings(server.port)) as t, pytest.raises(PermanentSendError) as raised:
        t.send(_raw("bad@example.com"), "bad@example.com")
    assert raised.value.status == "5.1.3"


def test_nothing_listening_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SmtpTransport(_settings(port)) as t, pytest.raises(TransientSendError, match="connect"):
        t.send(_raw("a@example.com"), "a@example.com")


def test_rate_spaces_messages(server: FlakySMTP) -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    settings = _settings(server.port, rate=4.0)
    with SmtpTransport(settings, sleep=sleep, clock=lambda: now[0]) as t:
        for i in range(3):
            t.send(_raw(f"r{i}@example.com"), f"r{i}@example.com")
    assert slept == [0.25, 0.25]


def test_starttls_and_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert = make_cert(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))  # trust the test certificate
    sink = FlakySMTP(cert=cert, login=("user", "secret"))
    try:
        settings = _settings(sink.port, security="starttls", username="user", password="secret")
        settings = settings.replace(smtp={"host": "localhost"})
        with SmtpTransport(settings) as t:
            t.send(_raw("a@example.com"), "a@example.com")
        assert sink.recipients() == ["a@example.com"]
        bad = settings.replace(smtp={"password": "wrong"})
        with SmtpTransport(bad) as t, pytest.raises(SendError, match="login .* refused"):
            t.send(_raw("a@example.com"), "a@example.com")
    finally:
        sink.close()


def test_implicit_tls_and_untrusted_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = make_cert(tmp_path)
    sink = FlakySMTP(cert=cert, implicit_tls=True)
    try:
        settings = _settings(sink.port, security="tls").replace(smtp={"host": "localhost"})
        with SmtpTransport(settings) as t, pytest.raises(SendError, match="TLS"):
            t.send(_raw("a@example.com"), "a@example.com")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
        with SmtpTransport(settings) as t:
            t.send(_raw("a@example.com"), "a@example.com")
        assert sink.recipients() == ["a@example.com"]
    finally:
        sink.close()


def test_password_file(tmp_path: Path, server: FlakySMTP) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    t = SmtpTransport(_settings(server.port, password_file=tmp_path / "pw"))
    assert t.password == "from-file"


def _signed_delivery(tmp_path: Path, server: FlakySMTP) -> tuple[bytes, str]:
    """One DKIM-signed message as the server received it, and the key's p= value."""
    key, public = make_dkim_key(tmp_path)
    settings = _settings(
        server.port, dkim_selector="s1", dkim_domain="example.org", dkim_key_file=key
    )
    with SmtpTransport(settings) as t:
        t.send(_raw("a@example.com"), "a@example.com")
    (raw,) = server.raw
    return raw, public


def test_dkim_signs_both_list_unsubscribe_headers(tmp_path: Path, server: FlakySMTP) -> None:
    raw, public = _signed_delivery(tmp_path, server)
    signature = message_from_bytes(raw)["DKIM-Signature"]
    tags = dict(
        part.strip().split("=", 1)
        for part in signature.replace("\r\n", "").split(";")
        if part.strip()
    )
    signed = {h.strip().lower() for h in tags["h"].split(":")}
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject", "to"} <= signed
    assert tags["d"] == "example.org" and tags["s"] == "s1"

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.org."
        return f"v=DKIM1; k=rsa; p={public}".encode()

    assert dkim.verify(raw, dnsfunc=dns)
    tampered = raw.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"
    )
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_half_configured_is_a_config_error(server: FlakySMTP) -> None:
    with pytest.raises(ConfigError, match="DKIM needs all"):
        SmtpTransport(_settings(server.port, dkim_selector="s1"))


def test_sending_off_without_host() -> None:
    with pytest.raises(ConfigError, match="smtp.host"):
        SmtpTransport(Settings())


def test_a_prepended_list_unsubscribe_or_from_breaks_the_signature(
    tmp_path: Path, server: FlakySMTP
) -> None:
    """Over-signing (issue 23): h= names each header a reader acts on once more than it is
    there, so a copy prepended on the way no longer verifies."""
    delivered, public = _signed_delivery(tmp_path, server)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return f"v=DKIM1; k=rsa; p={public}".encode()

    assert dkim.verify(delivered, dnsfunc=dns)
    for added in (
        b"List-Unsubscribe: <https://evil.example/u>\r\n",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        b"From: Bank <alerts@bank.example>\r\n",
        b"Subject: Your account is locked\r\n",
    ):
        assert not dkim.verify(added + delivered, dnsfunc=dns), added
