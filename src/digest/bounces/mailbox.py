"""`digest bounces fetch`: read the bounce mailbox over IMAP, classify and apply each message,
then move what was handled to bounces.done_folder (or delete it, bounces.delete).

``imaps://`` is TLS from the first byte; ``imap://`` turns to TLS with STARTTLS, and logs in
without it only on this machine (loopback): elsewhere a server that offers no STARTTLS may be a
man in the middle who removed it, so the password is not sent. bounces.ca_file names the CA
certificates of a private CA to trust.
A message that is no bounce (a reader's reply) is left where it is, flagged so the next fetch
does not read it again. A message that breaks the reader (bounces/quarantine.py) is moved to
bounces.quarantine_folder, counted, and the fetch goes on with the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import ipaddress
import logging
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesHeaderParser
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy.exc import InterfaceError, OperationalError

from digest.bounces.apply import Outcome, apply_report
from digest.bounces.classify import classify
from digest.bounces.quarantine import record_set_aside
from digest.config import Settings
from digest.delivery.tokens import signing_key
from digest.errors import ConfigError, MailboxError, StorageError
from digest.storage import Database, utcnow
from digest.types import BounceKind, BounceReport

log = logging.getLogger(__name__)

# The keyword on a message nobody could read: left in place, not read again.
UNREADABLE = "DigestUnrecognised"
# A bounce quotes our issue (~90 KB); its first 2 MB say all there is to say.
MAX_BYTES = 2 * 2**20
# Messages read per fetch; the rest wait for the next one (15 minutes later by default).
BATCH = 500
# What is read of a message set aside, for its From and Subject.
HEAD_BYTES = 16_384
TIMEOUT_S = 30.0


@dataclass
class FetchSummary:
    """What one `digest bounces fetch` read and did."""

    messages: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    ignored: int = 0  # auto-replies, delivery notices, other feedback reports
    unrecognised: int = 0  # left in place
    quarantined: int = 0  # could not be read: moved to bounces.quarantine_folder
    unmatched: int = 0  # a bounce about no subscriber of ours
    forged: int = 0  # a VERP tag that does not check out
    bounced: list[str] = field(default_factory=list)
    complained: list[str] = field(default_factory=list)

    def add(self, report: BounceReport, outcome: Outcome) -> None:
        self.messages += 1
        if report.kind is None:
            if report.ignored:
                self.ignored += 1
            else:
                self.unrecognised += 1
            return
        if outcome.forged:
            self.forged += 1
            return
        if not outcome.matched:
            self.unmatched += 1
        counter = {BounceKind.HARD: "hard", BounceKind.SOFT: "soft"}.get(report.kind, "complaints")
        setattr(self, counter, getattr(self, counter) + 1)
        self.bounced += outcome.bounced
        self.complained += outcome.complained

    def line(self) -> str:
        line = (
            f"{self.messages} messages: {self.hard} hard, {self.soft} soft, "
            f"{self.complaints} complaints, {self.ignored} ignored (auto-replies and notices), "
            f"{self.unrecognised} unrecognised (left in place)"
        )
        if self.unmatched:
            line += f", {self.unmatched} about no subscriber"
        if self.forged:
            line += f", {self.forged} forged (ignored)"
        if self.quarantined:
            line += f", {self.quarantined} unreadable (set aside)"
        if self.bounced:
            line += f"; now bounced: {', '.join(self.bounced)}"
        if self.complained:
            line += f"; now complained: {', '.join(self.complained)}"
        return line

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class MailboxUrl:
    tls: bool
    host: str
    port: int
    user: str
    password: str
    folder: str


def parse_mailbox_url(settings: Settings) -> MailboxUrl:
    """bounces.imap_url and the password (the URL's, else bounces.password[_file])."""
    url = settings.bounces.imap_url
    if not url:
        raise ConfigError("bounces.imap_url is not set: no bounce mailbox to read")
    parts = urlsplit(url)
    tls = parts.scheme == "imaps"
    try:
        port = parts.port or (993 if tls else 143)
    except ValueError as e:
        raise ConfigError(f"bounces.imap_url: {e}") from None
    password = unquote(parts.password or "") or settings.bounces_password()
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return MailboxUrl(
        tls, parts.hostname or "", port, unquote(parts.username or ""), password, folder
    )


def fetch_bounces(db: Database, settings: Settings, *, now: datetime | None = None) -> FetchSummary:
    """Read the new messages of the bounce mailbox, apply them, file away the handled ones."""
    where = parse_mailbox_url(settings)
    key = signing_key(db, settings)
    summary = FetchSummary()
    with _session(where, _tls_context(settings)) as imap:
        done = _Filing(imap, settings, settings.bounces.done_folder)
        aside = _Filing(imap, settings, settings.bounces.quarantine_folder, delete=False)
        for uid in _unread_uids(imap):
            raw = _message(imap, uid)
            if raw is None:
                continue
            try:
                report = classify(raw)
                identity = hashlib.sha256(raw).hexdigest()
                outcome = apply_report(
                    db, settings, key, report, source="imap", identity=identity, now=now
                )
            except Exception as e:  # one message must not stop the mailbox
                if not _poison(e):
                    raise  # the database is down: the next fetch reads this one again
                _set_aside(db, raw, e, now)
                summary.messages += 1
                summary.quarantined += 1
                aside.file(uid)
                continue
            summary.add(report, outcome)
            if report.kind is None and not report.ignored:
                _command(imap, "UID", "STORE", uid, "+FLAGS", f"({UNREADABLE})")
            else:
                done.file(uid)
        done.finish()
        aside.finish()
    fields = {"event": "bounces", **summary.as_json()}
    level = logging.INFO if summary.messages else logging.DEBUG  # every 15 minutes: quiet
    log.log(level, "bounces: %s", summary.line(), extra={"fields": fields})
    return summary


def _tls_context(settings: Settings) -> ssl.SSLContext:
    ca_file = settings.bounces.ca_file
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"bounces.ca_file: cannot read {ca_file}: {e}") from e


@contextlib.contextmanager
def _session(where: MailboxUrl, context: ssl.SSLContext) -> Iterator[imaplib.IMAP4]:
    name = f"{where.host}:{where.port}"
    try:
        if where.tls:
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                where.host, where.port, ssl_context=context, timeout=TIMEOUT_S
            )
        else:
            imap = imaplib.IMAP4(where.host, where.port, timeout=TIMEOUT_S)
            if "STARTTLS" in imap.capabilities:
                imap.starttls(context)
            elif not _loopback(imap):
                imap.shutdown()
                raise MailboxError(
                    f"{name} offers no STARTTLS: the password is not sent in the clear off "
                    "this machine (someone in between may have removed it); use imaps:// or "
                    "a server that offers STARTTLS"
                )
        imap.login(where.user, where.password)
    except ssl.SSLCertVerificationError as e:
        raise MailboxError(f"TLS with {name}: {e.verify_message}") from e
    except imaplib.IMAP4.error as e:
        raise MailboxError(f"{name} refused the login of {where.user}: {_text(e)}") from e
    except OSError as e:  # refused, unreachable, timed out
        raise MailboxError(f"cannot connect to the bounce mailbox {name}: {e}") from e
    try:
        _ok(*imap.select(_quoted(where.folder)), f"opening folder {where.folder}")
        yield imap
    except imaplib.IMAP4.error as e:
        raise MailboxError(f"{name}: {_text(e)}") from e
    except OSError as e:
        raise MailboxError(f"{name}: connection lost: {e}") from e
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.logout()


def _poison(error: Exception) -> bool:
    """Whether an error is about the message (set it aside) rather than the database being
    unreachable (stop: the next fetch reads the message again)."""
    if isinstance(error, StorageError):
        return not isinstance(error.__cause__, OperationalError | InterfaceError)
    return not isinstance(error, OperationalError | InterfaceError | MailboxError)


def _set_aside(db: Database, raw: bytes, error: Exception, now: datetime | None) -> None:
    head = BytesHeaderParser().parsebytes(raw[:HEAD_BYTES])
    sender, subject = _one_line(head.get("from", "")), _one_line(head.get("subject", ""))
    reason = _one_line(f"{type(error).__name__}: {error}")
    log.warning(
        "bounces: a message from %s (%r) could not be read and was set aside: %s",
        sender,
        subject,
        reason,
        extra={"fields": {"event": "bounce_set_aside", "from": sender, "reason": reason}},
    )
    record_set_aside(db, now or utcnow(), sender, subject, reason)


def _loopback(imap: imaplib.IMAP4) -> bool:
    """Whether the connection goes to this machine (where nobody can sit in between)."""
    try:
        return ipaddress.ip_address(imap.sock.getpeername()[0]).is_loopback
    except (OSError, ValueError):
        return False


class _Filing:
    """Moves (or deletes) messages to a folder; expunges once at the end."""

    def __init__(
        self, imap: imaplib.IMAP4, settings: Settings, folder: str, *, delete: bool | None = None
    ) -> None:
        self.imap = imap
        self.delete = settings.bounces.delete if delete is None else delete
        self.folder = folder
        self.created = False
        self.expunge = False

    def file(self, uid: str) -> None:
        if self.delete:
            _command(self.imap, "UID", "STORE", uid, "+FLAGS", r"(\Deleted)")
            self.expunge = True
            return
        if not self.created:
            self.imap.create(_quoted(self.folder))  # "already exists" is fine
            self.created = True
        if "MOVE" in self.imap.capabilities:
            _command(self.imap, "UID", "MOVE", uid, _quoted(self.folder))
            return
        _command(self.imap, "UID", "COPY", uid, _quoted(self.folder))
        _command(self.imap, "UID", "STORE", uid, "+FLAGS", r"(\Deleted)")
        self.expunge = True

    def finish(self) -> None:
        if self.expunge:
            _ok(*self.imap.expunge(), "EXPUNGE")


def _unread_uids(imap: imaplib.IMAP4) -> list[str]:
    data = _command(imap, "UID", "SEARCH", "UNDELETED", "UNKEYWORD", UNREADABLE)
    uids = b" ".join(d for d in data if isinstance(d, bytes)).split()
    return [u.decode("ascii") for u in uids[:BATCH]]


def _message(imap: imaplib.IMAP4, uid: str) -> bytes | None:
    data = _command(imap, "UID", "FETCH", uid, f"(BODY.PEEK[]<0.{MAX_BYTES}>)")
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None  # gone meanwhile (another fetch moved it)


def _command(imap: imaplib.IMAP4, *args: str) -> list[Any]:
    """One UID command (UID SEARCH, FETCH, STORE, COPY, MOVE); anything but OK raises."""
    kind, data = imap.uid(*args[1:])
    _ok(kind, data, " ".join(args[:3]))
    return list(data or [])


def _ok(kind: str, data: Any, what: str) -> None:
    if kind != "OK":
        raise imaplib.IMAP4.error(f"{what} failed: {_text(data)}")


def _quoted(name: str) -> str:
    return '"' + re.sub(r'(["\\])', r"\\\1", name) + '"'


def _one_line(value: object) -> str:
    return " ".join(str(value).split())[:300]


def _text(value: Any) -> str:
    if isinstance(value, imaplib.IMAP4.error) and value.args:
        value = value.args[0]  # imaplib's messages are the server's bytes
    if isinstance(value, list):
        value = b" ".join(v for v in value if isinstance(v, bytes))
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())
