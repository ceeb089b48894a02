"""The pipelined sender: claim, hand over and settle delivery rows in order, one message in
flight per SMTP connection, while the next one is prepared and claimed."""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import make_msgid

from digest.config import Settings
from digest.delivery.deliverylog import DeliveryLog, DeliveryRow
from digest.delivery.mail import SmtpTransport
from digest.delivery.message import (
    PreparedEmail,
    address_header,
    preferences_url,
    sender_domain,
    unsubscribe_url,
)
from digest.delivery.summary import SendSummary
from digest.delivery.tokens import PREFERENCES, make_token, signing_key
from digest.delivery.verp import envelope_sender, feedback_id
from digest.errors import InputError, PermanentSendError, SendError, TransientSendError
from digest.storage import Database
from digest.types import DeliveryStatus, RenderedEmail, SubscriberStatus

log = logging.getLogger(__name__)

RenderFor = Callable[[frozenset[str] | None], RenderedEmail | None]
# Messages that each failed every retry, in a row, after which the server is taken to be down.
GIVE_UP_AFTER = 3


def deliver_rows(
    db: Database,
    settings: Settings,
    rows: Iterable[DeliveryRow],
    render_for: RenderFor,
    transports: list[SmtpTransport],
    summary: SendSummary,
    stop: threading.Event | None,
    attempts: int,
    backoff: float,
    issue: tuple[int, int] | None = None,
) -> None:
    """Claim, hand over and settle rows in order, with one message in flight per connection.
    ``issue`` (id, number) tags the envelope senders and the Feedback-ID.

    This thread does every database write and rendering; the connections' threads only talk
    SMTP, so the server works on one message while the next is prepared and claimed.
    """
    prepare = _Preparer(db, settings, render_for, issue)
    idle: queue.SimpleQueue[SmtpTransport] = queue.SimpleQueue()
    for transport in transports:
        idle.put(transport)

    def hand_over(raw: bytes, recipient: str, sender: str) -> None:
        transport = idle.get()
        try:
            transport.send_with_retry(
                raw, recipient, attempts=attempts, backoff=backoff, stop=stop, sender=sender
            )
        finally:
            idle.put(transport)

    in_flight: deque[tuple[DeliveryRow, Future[None]]] = deque()
    streak = _FailingStreak()
    error: SendError | None = None
    issue_id = issue[0] if issue else None
    with DeliveryLog(db, settings, issue_id) as dlog, ThreadPoolExecutor(len(transports)) as pool:
        try:
            for row in rows:
                if stop is not None and stop.is_set():
                    summary.stopped = True
                    break
                message = prepare(row, dlog, summary)
                if message is None or not dlog.claim(row, message[1]):
                    continue
                raw, _id, sender = message
                in_flight.append((row, pool.submit(hand_over, raw, row.email, sender)))
                if len(in_flight) >= len(transports):
                    _settle(*in_flight.popleft(), dlog, summary, streak)
                if summary.aborted:
                    break
        finally:
            # Whatever happens, the messages handed over are waited for and logged.
            while in_flight:
                try:
                    _settle(*in_flight.popleft(), dlog, summary, streak)
                except SendError as e:
                    error = error or e
    summary.bounced.extend(dlog.bounced)  # complete once the log is closed
    if error is not None:
        raise error


class _Preparer:
    """A subscriber's message bytes, Message-ID and envelope sender; each section choice
    rendered once."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        render_for: RenderFor,
        issue: tuple[int, int] | None,
    ) -> None:
        self.settings = settings
        self.render_for = render_for
        self.key = signing_key(db, settings)
        self.domain = sender_domain(settings)
        self.issue_id = issue[0] if issue else None
        self.feedback_id = feedback_id(settings, issue[1] if issue else None)
        self.prepared: dict[frozenset[str] | None, PreparedEmail | None] = {}

    def __call__(
        self, row: DeliveryRow, dlog: DeliveryLog, summary: SendSummary
    ) -> tuple[bytes, str, str] | None:
        if row.status != SubscriberStatus.ACTIVE:
            dlog.finish(row, DeliveryStatus.SKIPPED, f"subscriber is {row.status}")
            summary.skipped += 1
            return None
        if row.sections not in self.prepared:
            rendered = self.render_for(row.sections)
            self.prepared[row.sections] = (
                PreparedEmail(rendered, self.settings, feedback_id=self.feedback_id)
                if rendered
                else None
            )
            summary.renders += 1
        email = self.prepared[row.sections]
        if email is None:
            dlog.finish(row, DeliveryStatus.SKIPPED, "nothing in the chosen sections this week")
            summary.skipped += 1
            return None
        message_id = make_msgid(domain=self.domain)
        token = make_token(self.key, row.subscriber_id, row.email)
        own = make_token(self.key, row.subscriber_id, row.email, PREFERENCES)
        try:
            raw = email.render(
                to=address_header(row.email, row.name),
                unsubscribe_url=unsubscribe_url(self.settings, token),
                preferences_url=preferences_url(self.settings, own),
                message_id=message_id,
            )
        except Exception as e:  # noqa: BLE001 - a stored address or name no header can hold
            _set_aside(row, e, dlog, summary)
            return None
        sender = envelope_sender(
            self.settings, self.key, row.subscriber_id, row.email, self.issue_id
        )
        return raw, message_id, sender


def _set_aside(row: DeliveryRow, error: Exception, dlog: DeliveryLog, summary: SendSummary) -> None:
    """One subscriber's message can't be made or handed over: failed for this issue (not
    tried again, not sent twice), said, and the send goes on with the others."""
    reason = error if isinstance(error, InputError) else f"{type(error).__name__}: {error}"
    why = f"could not send to {row.email}: {reason}"
    log.warning("send: %s", why, extra={"fields": {"event": "send_failed", "email": row.email}})
    dlog.finish(row, DeliveryStatus.FAILED, why[:1000])
    summary.failed += 1
    summary.failures.append(why[:300])


@dataclass
class _FailingStreak:
    """Messages that failed every retry in a row: after GIVE_UP_AFTER the server is down."""

    count: int = 0


def _settle(
    row: DeliveryRow,
    done: Future[None],
    dlog: DeliveryLog,
    summary: SendSummary,
    streak: _FailingStreak,
) -> None:
    try:
        done.result()
    except PermanentSendError as e:
        log.warning("send: %s", e)
        dlog.refused(row, e)
        summary.failures.append(str(e)[:300])
        summary.failed += 1
        streak.count = 0
    except TransientSendError as e:
        dlog.finish(row, DeliveryStatus.PENDING, str(e))
        summary.last_error = str(e)
        streak.count += 1
        if streak.count >= GIVE_UP_AFTER:
            summary.aborted = f"the SMTP server keeps failing ({e})"
    except SendError:
        dlog.finish(row, DeliveryStatus.PENDING, "the run stopped on an SMTP error")
        raise
    except Exception as e:  # noqa: BLE001 - this message broke the SMTP client (smtplib)
        _set_aside(row, e, dlog, summary)
        streak.count = 0
    else:
        dlog.finish(row, DeliveryStatus.SENT, None)
        summary.sent += 1
        streak.count = 0
