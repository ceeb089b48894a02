"""SMTP transport: a reused connection, TLS, login, an optional rate, DKIM, errors sorted.

Every failure leaves here as a SendError subclass: TransientSendError (4xx, dropped or refused
connection: try again), PermanentSendError (5xx for this recipient: don't), or plain SendError
for what no retry fixes (login refused, our sender address refused, TLS misconfigured, a
command of ours refused with 500-504).
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from email.utils import parseaddr
from pathlib import Path
from types import TracebackType

from digest.config import Settings
from digest.delivery.bouncerules import code_in
from digest.delivery.dkimsign import DkimSigner
from digest.delivery.message import seven_bit
from digest.errors import ConfigError, PermanentSendError, SendError, TransientSendError

log = logging.getLogger(__name__)


def dkim_signer(settings: Settings) -> DkimSigner | None:
    """The signer smtp.dkim_* describe (None: signing is off); ConfigError when half set or
    the key can't be read."""
    smtp = settings.smtp
    given = [bool(smtp.dkim_selector), bool(smtp.dkim_domain), smtp.dkim_key_file is not None]
    if not any(given):
        return None
    if not all(given):
        raise ConfigError(
            "DKIM needs all of smtp.dkim_selector, smtp.dkim_domain and smtp.dkim_key_file"
        )
    assert smtp.dkim_key_file is not None
    try:
        key = Path(smtp.dkim_key_file).read_bytes()
    except OSError as e:
        raise ConfigError(f"smtp.dkim_key_file: cannot read {smtp.dkim_key_file}: {e}") from e
    return DkimSigner(smtp.dkim_domain, smtp.dkim_selector, key)


class SmtpTransport:
    """One SMTP connection, opened on first use and kept across messages.

    ``send`` makes one attempt; ``send_with_retry`` adds backoff for transient failures.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.smtp.host:
            raise ConfigError("smtp.host is not set: sending is off")
        self.settings = settings
        # Bounces go to the bounce address when there is one (each message may tag it: VERP).
        self.sender = (
            settings.newsletter.bounce_address or parseaddr(settings.newsletter.from_addr)[1]
        )
        if "@" not in self.sender:
            raise ConfigError(f"newsletter.from has no address: {settings.newsletter.from_addr!r}")
        self.dkim = dkim_signer(settings)
        self.password = settings.smtp_password()
        self.interval = 1.0 / settings.smtp.rate if settings.smtp.rate else 0.0
        self.sleep = sleep
        self.clock = clock
        self.connections = 0  # opened so far: tests check reuse
        self._smtp: smtplib.SMTP | None = None
        self._next_at = 0.0

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def send(self, raw: bytes, recipient: str, sender: str | None = None) -> None:
        """Hand one message for one recipient to the server, or raise a SendError; ``sender``
        is its envelope sender (MAIL FROM; default: the From address)."""
        sender = sender or self.sender
        self._pace()
        smtp = self._connection()
        smtp.ehlo_or_helo_if_needed()
        if not smtp.has_extn("8bitmime"):
            raw = seven_bit(raw)
        if self.dkim is not None:
            raw = self.dkim.sign(raw)
        try:
            _transaction(smtp, sender, recipient, raw)
        except smtplib.SMTPRecipientsRefused as e:
            code, reply = next(iter(e.recipients.values()), (0, b""))
            raise _by_code(code, _text(reply), f"{recipient} refused: ") from e
        except smtplib.SMTPSenderRefused as e:
            if e.smtp_code >= 500:
                raise SendError(
                    f"the server refuses the sender {sender}: {e.smtp_code} {_text(e.smtp_error)}"
                ) from e
            raise TransientSendError(f"sender deferred: {e.smtp_code} {_text(e.smtp_error)}") from e
        except smtplib.SMTPResponseException as e:  # DATA refused, 421 and the like
            if e.smtp_code == 421:  # the server is closing the connection
                self._drop()
            raise _by_code(e.smtp_code, _text(e.smtp_error)) from e
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            self._drop()
            raise TransientSendError(f"connection lost: {e or type(e).__name__}") from e
        except Exception:  # smtplib choked on this message mid-transaction: start afresh
            self._drop()
            raise

    def send_with_retry(
        self,
        raw: bytes,
        recipient: str,
        *,
        attempts: int = 4,
        backoff: float = 1.0,
        stop: threading.Event | None = None,
        sender: str | None = None,
    ) -> int:
        """send(), retrying transient failures after 1, 2, 4 ... x backoff seconds.

        Returns the attempts used; the last TransientSendError propagates when all fail.
        """
        for attempt in range(1, attempts + 1):
            try:
                self.send(raw, recipient, sender)
                return attempt
            except TransientSendError as e:
                if attempt == attempts or (stop is not None and stop.is_set()):
                    raise
                delay = min(backoff * 2 ** (attempt - 1), 60.0)
                log.info("%s: %s; retrying in %.1fs", recipient, e, delay)
                if stop is not None:
                    stop.wait(delay)
                else:
                    self.sleep(delay)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            self._smtp.close()
        self._smtp = None

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._connect()
            self.connections += 1
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        smtp = self.settings.smtp
        timeout = smtp.timeout.total_seconds()
        where = f"{smtp.host}:{smtp.port}"
        try:
            if smtp.security == "tls":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    smtp.host, smtp.port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                conn = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
            if smtp.security == "starttls":
                conn.ehlo()
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if smtp.username:
                conn.login(smtp.username, self.password)
        except smtplib.SMTPAuthenticationError as e:
            raise SendError(f"SMTP login to {where} as {smtp.username} refused: {e}") from e
        except smtplib.SMTPNotSupportedError as e:
            raise SendError(f"{where} does not offer what smtp.security needs: {e}") from e
        except ssl.SSLCertVerificationError as e:
            raise SendError(f"TLS with {where}: {e.verify_message}") from e
        except smtplib.SMTPResponseException as e:
            message = f"{where} said {e.smtp_code} {_text(e.smtp_error)}"
            # Nothing to do with any recipient: a 5xx here stops the run, a 4xx is retried.
            raise (SendError if e.smtp_code >= 500 else TransientSendError)(message) from e
        except (smtplib.SMTPException, OSError) as e:
            raise TransientSendError(f"cannot connect to {where}: {e or type(e).__name__}") from e
        return conn

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def _pace(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if now < self._next_at:
            self.sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self.interval


def _transaction(smtp: smtplib.SMTP, sender: str, recipient: str, raw: bytes) -> None:
    """MAIL, RCPT, DATA for one recipient, raising smtplib's exceptions as sendmail() does.

    sendmail() dot-stuffs with a regular expression over the whole message (~1 ms for an
    issue); bytes.replace does the same in C, as every line of ours ends in CRLF.
    """
    smtp.ehlo_or_helo_if_needed()
    options = [f"SIZE={len(raw)}"] if smtp.has_extn("size") else []
    if smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    code, reply = smtp.mail(sender, options)
    if code != 250:
        _reset(smtp)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = smtp.rcpt(recipient)
    if code not in (250, 251):
        _reset(smtp)
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    smtp.putcmd("data")
    code, reply = smtp.getreply()
    if code != 354:
        _reset(smtp)
        raise smtplib.SMTPDataError(code, reply)
    stuffed = raw.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    smtp.send(stuffed + b".\r\n")
    code, reply = smtp.getreply()
    if code != 250:
        _reset(smtp)
        raise smtplib.SMTPDataError(code, reply)


def _reset(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        smtp.rset()


# 500-504: the server did not take a command of ours (syntax, bad sequence, not implemented:
# RFC 5321 4.2.2), which says nothing of the recipient unless the enhanced code is about an
# address (Postfix's "501 5.1.3 Bad recipient address syntax"). A relay that answered every
# DATA with "500 Error: (FileNotFoundError) ..." had the whole list marked bounced.
_COMMAND_REFUSED = range(500, 505)


def _by_code(code: int, reply: str, about: str = "") -> SendError:
    """The error of an SMTP reply (``about``: whom it refused, before the reply's words)."""
    message = f"{about}{code} {reply}"
    if code < 500:
        return TransientSendError(message)
    status = code_in(f"{code} {reply}") or "5.0.0"
    if code in _COMMAND_REFUSED and not status.startswith("5.1."):
        return SendError(f"the SMTP server refused a command: {message}")
    return PermanentSendError(message, status)


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())
