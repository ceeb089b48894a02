"""The web process's outbox: sign-ups and their emails go through a bounded queue to one
worker thread, so a page never waits for the database's look-up of an address or for SMTP.

- Sign-ups are recorded here, not in the request: the page then does the same work whoever the
  address belongs to (answering a complained address sooner told who had complained).
- One job that fails (a hostile name, a database error, a template's bug) is logged, counted
  and set aside; the worker goes on with the next. A worker that dies anyway is started again
  with the next job (or the next /healthz); `stats()` says so.
- Past QUEUE_SIZE the job is turned away (logged, counted): a flood never holds the sender.
- On close, queued jobs get until a deadline to go; the rest are kept in the database and
  queued again when the next web process starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from digest.config import Settings
from digest.delivery.confirmmail import confirmation_email, confirmation_sender, welcome_email
from digest.delivery.consent import sign_up, undo_mail
from digest.delivery.mail import SmtpTransport
from digest.delivery.subscribers import subscriber_by_id
from digest.errors import DigestError
from digest.issue.plan import latest_issue
from digest.issue.sendtimes import when_issues_come
from digest.storage import Database, utcnow
from digest.types import ConsentSource, EventKind

log = logging.getLogger(__name__)

# Jobs waiting at once. A local SMTP server takes an email in ~5 ms, so 100 is half a second
# of work; a stuck server (smtp.timeout, 30 s) turns the rest away rather than queue them.
QUEUE_SIZE = 100
# An idle connection is closed after this long: servers drop idle clients anyway.
IDLE_S = 10.0
# On close, queued jobs get this long to go (the daemon's stop has 10 s in all).
CLOSE_S = 3.0
# Where jobs left at close wait for the next start (the meta table).
KEPT_KEY = "web.outbox"
MailKind = Literal["confirm_sent", "reminder_sent", "welcome"]
WELCOME: MailKind = "welcome"


@dataclass(frozen=True)
class SignUpJob:
    """A sign-up from the form (or a new link asked for): record it, mail what it asks for."""

    address: str
    name: str | None
    sections: str | None
    ip: str | None
    at: str  # ISO 8601, the request's time
    source: str = ConsentSource.WEB

    def describe(self) -> str:
        return "a sign-up"  # no address in the log


@dataclass(frozen=True)
class MailJob:
    """One email to one subscriber: a confirmation, a reminder, or the welcome."""

    subscriber_id: int
    kind: MailKind

    def describe(self) -> str:
        return f"the {self.kind.removesuffix('_sent')} email to subscriber {self.subscriber_id}"


Job = SignUpJob | MailJob


class Outbox:
    """One worker thread running queued jobs, started on first use (and again if it died)."""

    def __init__(
        self, db: Database, settings: Settings, key: str, *, size: int = QUEUE_SIZE
    ) -> None:
        self.db = db
        self.settings = settings
        self.key = key
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=size)
        self.sent = 0  # emails handed to the SMTP server
        self.failed = 0  # jobs that raised (logged)
        self.dropped = 0  # jobs turned away: the queue was full
        self.restarts = 0
        self.death: str | None = None  # why the last worker stopped, if it did
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._deadline = float("inf")
        self._current: Job | None = None  # the job the worker is doing

    @property
    def can_send(self) -> bool:
        return self.settings.sending_enabled

    def offer(self, job: Job) -> bool:
        """Queue a job; False when it can't be done (an email with sending off, a full queue)."""
        if isinstance(job, MailJob) and not self.can_send:
            return False
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            log.warning("outbox full (%d waiting): %s dropped", self.jobs.maxsize, job.describe())
            return False
        self._ensure_worker()
        return True

    def resume(self) -> int:
        """Queue again the jobs a previous process kept at close; how many."""
        kept = _decode(self.db.get_meta(KEPT_KEY))
        if not kept:
            return 0
        self.db.set_meta(KEPT_KEY, "[]")
        taken = sum(self.offer(job) for job in kept)
        log.info("outbox: %d job(s) kept at the last stop queued again", taken)
        return taken

    def stats(self) -> dict[str, Any]:
        """For /healthz and /metrics; a worker that died is started again first."""
        if self._thread is not None:
            self._ensure_worker()
        thread = self._thread
        worker = "idle" if thread is None else "running" if thread.is_alive() else "stopped"
        return {
            "worker": worker,
            "queued": self.jobs.unfinished_tasks,  # the one being done included
            "sent": self.sent,
            "failed": self.failed,
            "dropped": self.dropped,
            "restarts": self.restarts,
            "last_death": self.death,
        }

    def wait_idle(self, timeout: float) -> bool:
        """Until every queued job is done (tests, and close); False at the timeout."""
        with self.jobs.all_tasks_done:
            return self.jobs.all_tasks_done.wait_for(
                lambda: not self.jobs.unfinished_tasks, timeout
            )

    def close(self, timeout: float = CLOSE_S) -> int:
        """Stop the worker once the queue is empty or ``timeout`` is over; the jobs not done by
        then are kept for the next start. How many were kept."""
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            # Wakes an idle worker; a busy one looks at _stopping after each job.
            with contextlib.suppress(queue.Full):
                self.jobs.put_nowait(None)
            thread.join(timeout + 0.5)
        # A job still running (SMTP stuck past the deadline) ends with the process: kept too.
        busy = self._current if thread is not None and thread.is_alive() else None
        left = [busy] if busy is not None else []
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            self.jobs.task_done()
            if job is not None:
                left.append(job)
        if left:
            kept = _decode(self.db.get_meta(KEPT_KEY)) + left
            self.db.set_meta(KEPT_KEY, json.dumps([_encode(job) for job in kept]))
            log.warning("outbox: %d job(s) not done at the stop: kept for next time", len(left))
        return len(left)

    # --- the worker ------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        with self._lock:
            thread = self._thread
            if (thread is not None and thread.is_alive()) or self._stopping.is_set():
                return
            if thread is not None:
                self.restarts += 1
                log.error("the outbox's worker had stopped (%s): started again", self.death)
            self._thread = threading.Thread(target=self._main, name="digest-outbox", daemon=True)
            self._thread.start()

    def _main(self) -> None:
        try:
            self._work()
        except BaseException as e:  # noqa: BLE001 - whatever ends it, say why and restart
            self.death = f"{type(e).__name__}: {e}"
            log.error("the outbox's worker stopped: %s", self.death)

    def _work(self) -> None:
        transport: SmtpTransport | None = None
        try:
            while not (self._stopping.is_set() and self._done_for_now()):
                try:
                    job = self.jobs.get(timeout=0.2 if self._stopping.is_set() else IDLE_S)
                except queue.Empty:
                    if transport is not None:
                        transport.close()
                        transport = None
                    continue
                self._current = job
                try:
                    if job is not None:
                        transport = self._run(job, transport)
                finally:
                    self._current = None
                    self.jobs.task_done()
        finally:
            if transport is not None:
                transport.close()

    def _done_for_now(self) -> bool:
        return self.jobs.empty() or time.monotonic() >= self._deadline

    def _run(self, job: Job, transport: SmtpTransport | None) -> SmtpTransport | None:
        """Do one job; one that fails is logged and counted, and the next one goes on (on a
        fresh SMTP connection: after a failure, the old one's state is unknown)."""
        try:
            if isinstance(job, SignUpJob):
                return self._sign_up(job, transport)
            return self._mail(job, transport)
        except Exception as e:  # one job's failure never ends the worker
            self.failed += 1
            unexpected = not isinstance(e, DigestError)
            log.error("outbox: %s failed: %s", job.describe(), e, exc_info=unexpected)
            if transport is not None:
                transport.close()
            return None

    def _sign_up(self, job: SignUpJob, transport: SmtpTransport | None) -> SmtpTransport | None:
        signup = sign_up(
            self.db,
            job.address,
            name=job.name,
            sections=job.sections,
            now=datetime.fromisoformat(job.at),
            ip=job.ip,
            source=ConsentSource(job.source),
        )
        if signup.mail is None:
            return transport
        if not self.can_send:
            if signup.event_id is not None:
                undo_mail(self.db, signup.event_id)  # nothing goes, nothing counts
            return transport
        confirming = signup.mail == EventKind.CONFIRM_SENT
        kind: MailKind = "confirm_sent" if confirming else "reminder_sent"
        return self._mail(MailJob(signup.subscriber_id, kind), transport)

    def _mail(self, job: MailJob, transport: SmtpTransport | None) -> SmtpTransport | None:
        subscriber = subscriber_by_id(self.db, job.subscriber_id)
        if subscriber is None:
            return transport  # forgotten or pruned meanwhile
        now = utcnow()
        if job.kind == WELCOME:
            newsletter = self.settings.newsletter
            when = when_issues_come(newsletter.send_at, newsletter.timezone, now).first
            latest = latest_issue(self.db)
            raw = welcome_email(self.settings, self.key, subscriber, latest, when, now)
        else:
            kind = EventKind(job.kind)
            raw = confirmation_email(self.settings, self.key, subscriber, kind, now)
        transport = transport or SmtpTransport(self.settings)
        sender = confirmation_sender(self.settings, self.key, subscriber)
        transport.send_with_retry(raw, subscriber.email, attempts=3, sender=sender)
        self.sent += 1
        log.info("outbox: %s sent", job.describe())
        return transport


def _encode(job: Job) -> dict[str, Any]:
    return {"type": type(job).__name__, **asdict(job)}


def _decode(text: str | None) -> list[Job]:
    """The jobs kept at a stop; what can't be read is logged and left out."""
    jobs: list[Job] = []
    try:
        items = json.loads(text or "[]")
    except ValueError:
        items = []
    for item in items if isinstance(items, list) else []:
        try:
            kind = item.pop("type")
            jobs.append(SignUpJob(**item) if kind == "SignUpJob" else MailJob(**item))
        except (AttributeError, KeyError, TypeError) as e:
            log.warning("outbox: a kept job could not be read (%s): left out", e)
    return jobs
