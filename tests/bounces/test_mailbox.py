"""`digest bounces fetch` against a real dovecot: plain IMAP, deleting, refusals."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.bounces.mailbox import fetch_bounces, parse_mailbox_url
from digest.config import Settings
from digest.delivery.subscribers import add_subscriber, list_subscribers
from digest.errors import ConfigError, MailboxError
from digest.storage import Database
from tests.bounce_helpers import bounce
from tests.conftest import run_cli
from tests.imap_helpers import PASSWORD, Dovecot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plain() -> Iterator[Dovecot]:
    server = Dovecot(tls=False)  # no TLS at all: no STARTTLS offered, the login in the clear
    yield server
    server.close()


def settings(url: str, **bounces: object) -> Settings:
    return Settings().replace(
        bounces={"imap_url": url, "password": PASSWORD, **bounces},
        newsletter={"secret_key": "k"},
    )


def test_plain_imap_and_deleting_handled_messages(plain: Dovecot, sqlite_url: str) -> None:
    db = Database(sqlite_url)
    add_subscriber(db, "ann@example.com")
    plain.append(bounce("qmail_hard"), bounce("gmail_vacation"), bounce("human_reply"))
    summary = fetch_bounces(db, settings(plain.url(tls=False), delete=True))
    assert (summary.messages, summary.hard, summary.ignored, summary.unrecognised) == (3, 1, 1, 1)
    assert [s.status for s in list_subscribers(db)] == ["bounced"]
    assert plain.count("INBOX") == 1 and plain.count("digest-done") == 0  # deleted, not moved
    again = fetch_bounces(db, settings(plain.url(tls=False), delete=True))
    assert again.messages == 0  # the unrecognised one is flagged, not read every 15 minutes


def test_refusals_are_one_line(plain: Dovecot, sqlite_url: str, workdir: Path) -> None:
    db = Database(sqlite_url)
    wrong = settings(plain.url(tls=False)).replace(bounces={"password": "wrong"})
    with pytest.raises(MailboxError, match="refused the login of bounces"):
        fetch_bounces(db, wrong)
    with pytest.raises(MailboxError, match="opening folder Nowhere failed"):
        fetch_bounces(db, settings(plain.url("Nowhere", tls=False)))
    with pytest.raises(MailboxError, match="cannot connect to the bounce mailbox"):
        fetch_bounces(db, settings(f"imaps://u@127.0.0.1:{plain.port + 1}/INBOX"))
    # imaps:// to a server without TLS: no login attempted in the clear.
    with pytest.raises(MailboxError):
        fetch_bounces(db, settings(f"imaps://bounces@127.0.0.1:{plain.port}/INBOX"))
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_BOUNCES_IMAP_URL": plain.url(tls=False)}
    result = run_cli(["bounces", "fetch"], env | {"DIGEST_BOUNCES_PASSWORD": "wrong"})
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "refused the login" in result.output
    result = run_cli(["bounces", "fetch"], {"DIGEST_DATABASE_URL": sqlite_url})
    assert result.exit_code == 1 and "bounces.imap_url is not set" in result.output


def test_mailbox_urls() -> None:
    url = parse_mailbox_url(settings("imaps://bounces%40example.org@mail.example.org/Bounces%20In"))
    assert (url.tls, url.host, url.port, url.user) == (
        True,
        "mail.example.org",
        993,
        "bounces@example.org",
    )
    assert url.folder == "Bounces In" and url.password == PASSWORD
    url = parse_mailbox_url(settings("imap://u@127.0.0.1:1143"))
    assert (url.tls, url.port, url.folder) == (False, 1143, "INBOX")
    with pytest.raises(ConfigError, match="bounces.imap_url is not set"):
        parse_mailbox_url(Settings())


def outward_address() -> str | None:
    """An address of this machine that is not loopback (a connection to it is "off this
    machine" as far as digest can tell), or None."""
    for probe in ("192.0.2.1", "198.51.100.1", "203.0.113.1", "10.255.255.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((probe, 9))
            except OSError:
                continue
            address = str(s.getsockname()[0])
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return None


class StrippingServer:
    """A man in the middle who removed STARTTLS: an IMAP greeting without it, then every
    command the client sends recorded (and refused)."""

    def __init__(self, host: str) -> None:
        self.listener = socket.create_server((host, 0))
        self.url = f"imap://bounces@{host}:{self.listener.getsockname()[1]}/INBOX"
        self.commands: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LOGIN] ready\r\n")
            f.flush()
            for line in f:
                tag, _, command = line.decode().strip().partition(" ")
                self.commands.append(command)
                if command.upper() == "CAPABILITY":
                    f.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN LOGIN\r\n")
                ok = command.upper() == "CAPABILITY"
                f.write(f"{tag} {'OK done' if ok else 'NO nothing here'}\r\n".encode())
                f.flush()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def test_imap_off_this_machine_without_starttls_never_sends_the_password(
    sqlite_url: str,
) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    server = StrippingServer(address)
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_BOUNCES_IMAP_URL": server.url}
    result = run_cli(["bounces", "fetch"], env | {"DIGEST_BOUNCES_PASSWORD": PASSWORD})
    server.close()
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "offers no STARTTLS" in result.output
    assert not any(PASSWORD in c or c.upper().startswith("LOGIN") for c in server.commands)


def test_a_private_ca_is_trusted_through_bounces_ca_file(sqlite_url: str) -> None:
    server = Dovecot()
    try:
        db = Database(sqlite_url)
        with pytest.raises(MailboxError, match="TLS with 127.0.0.1"):
            fetch_bounces(db, settings(server.url()))  # a CA nobody trusts
        for url in (server.url(), server.url(tls=False)):  # imaps://, and STARTTLS
            summary = fetch_bounces(db, settings(url, ca_file=server.cert))
            assert summary.messages == 0
        with pytest.raises(ConfigError, match="bounces.ca_file: cannot read"):
            fetch_bounces(db, settings(server.url(), ca_file=server.dir / "missing.pem"))
    finally:
        server.close()
