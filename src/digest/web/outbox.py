"""The web process's outbox: confirmation emails go through a bounded queue to one worker
thread and delivery's SMTP transport, so a page never waits for SMTP and a flood of sign-ups
never holds the sender (past QUEUE_SIZE the sign-up is answered and nothing is sent)."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from digest.config import Settings
from digest.delivery.confirmmail import confirmation_email, confirmation_sender
from digest.delivery.mail import SmtpTransport
from digest.delivery.subscribers import info_of
from digest.errors import DigestError
from digest.models import Subscriber
from digest.storage import Database, utcnow
from digest.types import EventKind

log = logging.getLogger(__name__)

# Emails waiting at once. A local SMTP server takes one in ~5 ms, so 100 is half a second
# of work; a stuck server (smtp.timeout, 30 s) turns the rest away rather than queue them.
QUEUE_SIZE = 100
# An idle connection is closed after this long: servers drop idle clients anyway.
IDLE_S = 10.0


@dataclass(frozen=True)
class MailJob:
    subscriber_id: int
    kind: EventKind  # CONFIRM_SENT or REMINDER_SENT


class Outbox:
    """One worker thread sending queued confirmation emails, started on first use."""

    def __init__(
        self, db: Database, settings: Settings, key: str, *, size: int = QUEUE_SIZE
    ) -> None:
        self.db = db
        self.settings = settings
        self.key = key
        self.jobs: queue.Queue[MailJob | None] = queue.Queue(maxsize=size)
        self.sent = 0  # emails handed to the SMTP server, for tests and the log
        self.failed = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def can_send(self) -> bool:
        return self.settings.sending_enabled

    def offer(self, job: MailJob) -> bool:
        """Queue an email; False when sending is off or the queue is full (nothing queued)."""
        if not self.can_send:
            return False
        self._start()
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            log.warning(
                "outbox full (%d emails waiting): a confirmation email dropped", self.jobs.maxsize
            )
            return False
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker after the email it is sending (queued ones are dropped)."""
        thread = self._thread
        if thread is None:
            return
        while True:
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                break
        self.jobs.put(None)
        thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="digest-outbox", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        transport: SmtpTransport | None = None
        try:
            while True:
                try:
                    job = self.jobs.get(timeout=IDLE_S)
                except queue.Empty:
                    if transport is not None:
                        transport.close()
                        transport = None
                    continue
                if job is None:
                    return
                transport = transport or SmtpTransport(self.settings)
                self._send(transport, job)
        finally:
            if transport is not None:
                transport.close()

    def _send(self, transport: SmtpTransport, job: MailJob) -> None:
        with self.db.session() as s:
            row = s.get(Subscriber, job.subscriber_id)
            subscriber = info_of(row) if row is not None else None
        if subscriber is None:
            return  # forgotten or pruned meanwhile
        try:
            raw = confirmation_email(self.settings, self.key, subscriber, job.kind, utcnow())
            sender = confirmation_sender(self.settings, self.key, subscriber)
            transport.send_with_retry(raw, subscriber.email, attempts=3, sender=sender)
        except DigestError as e:
            self.failed += 1
            log.warning("confirmation email to subscriber %d not sent: %s", subscriber.id, e)
            return
        self.sent += 1
        log.info("confirmation email sent to subscriber %d", subscriber.id)
