"""SMTP test servers beyond tests/servers.py: dropped connections, TLS, AUTH; keys and certs."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path
from typing import Any

from aiosmtpd import smtp as aiosmtp
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.servers import Gate, PortZeroController, SMTPSink, _Sink


class FlakySink(Gate, _Sink):
    """The sink, plus: drop the connection at the next DATA ``drop`` times; count EHLOs;
    ``hold_after(n)``: take ``n`` more messages, then hold every DATA (the sender waits for
    its reply) until ``release()``; ``held`` is set once one is held."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = 0
        self.ehlos = 0
        self.eight_bit = True  # advertise 8BITMIME

    async def handle_EHLO(  # noqa: N802
        self,
        server: aiosmtp.SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: Any,
    ) -> Any:
        self.ehlos += 1
        session.host_name = hostname
        if not self.eight_bit:
            return [r for r in responses if "8BITMIME" not in r]
        return responses

    async def handle_DATA(  # noqa: N802
        self, server: aiosmtp.SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.must_hold():
            await asyncio.to_thread(self.wait_turn)
        if self.drop:
            self.drop -= 1
            assert server.transport is not None
            server.transport.close()
            return "451 dropped"
        return await super().handle_DATA(server, session, envelope)


class FlakySMTP(SMTPSink):
    """SMTPSink with a FlakySink handler; optionally TLS (implicit or STARTTLS) and AUTH."""

    handler: FlakySink

    def __init__(
        self,
        *,
        cert: tuple[Path, Path] | None = None,
        implicit_tls: bool = False,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.handler = FlakySink()
        kwargs: dict[str, Any] = {}
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            kwargs["ssl_context" if implicit_tls else "tls_context"] = context
            if not implicit_tls:
                kwargs["require_starttls"] = True
        if login is not None:
            kwargs["authenticator"] = _Authenticator(*login)
            kwargs["auth_required"] = True
        self.controller = PortZeroController(
            self.handler, hostname="127.0.0.1", port=0, server_hostname="localhost", **kwargs
        )
        self.controller.start()
        self.port = self.controller.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def close(self) -> None:
        self.handler.release()  # a held DATA would keep the server's loop from stopping
        super().close()


class _Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def __call__(
        self, server: aiosmtp.SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.user,
            self.password,
        )
        return AuthResult(success=ok, handled=False)


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (openssl), and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def make_dkim_key(folder: Path) -> tuple[Path, str]:
    """An RSA private key (PEM) and the public key as the p= value of a DKIM DNS record."""
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    import base64

    return key, base64.b64encode(public).decode("ascii")
