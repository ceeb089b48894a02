"""A dry run of `digest send`: who would get what, sending and recording nothing.

Each active subscriber is handed to the caller as it is read (the CLI prints a line, or a JSON
item), a page of them at a time: the run keeps only counts, so its memory does not grow with
the list (holding every recipient as a dict was ~1 KB a reader, a gigabyte at a million).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from sqlalchemy import Row, exists, select

from digest.delivery.deliverylog import choice_of
from digest.delivery.sender import RenderFor
from digest.delivery.summary import DryRunTally, SendSummary
from digest.models import Delivery, Subscriber
from digest.storage import Database
from digest.types import DeliveryStatus, SubscriberStatus

# Deliveries a later run will not make again.
DONE = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
# Subscribers read per transaction, in the order of their addresses (keyset, on the unique
# index of emails): each page is a short read, whatever the list's size.
PAGE = 2000


class Recipient(NamedTuple):
    """One active subscriber in a dry run: the sections they chose and what they would get."""

    email: str
    sections: list[str] | str  # sorted section keys, or "all"
    gets: bool
    subject: str | None
    why_not: str | None  # "already done", "sections empty"

    def as_json(self) -> dict[str, Any]:
        return self._asdict()


RecipientFn = Callable[[Recipient], None]


def dry_run_summary(
    db: Database,
    render_for: RenderFor,
    issue_id: int | None,
    summary: SendSummary,
    each: RecipientFn | None = None,
) -> SendSummary:
    """Who would get what, sending and recording nothing: each recipient handed to ``each``
    in the order of their addresses, their counts in ``summary.dry_run``."""
    summary.mode = "dry-run"
    tally = summary.dry_run = DryRunTally()
    seen: set[frozenset[str] | None] = set()
    for subscriber in _active(db, issue_id):
        choice = choice_of(subscriber.sections)
        rendered = render_for(choice)
        if choice not in seen:
            seen.add(choice)
            summary.renders += 1
        if summary.subject is None and rendered is not None:
            summary.subject = rendered.subject
        gets = rendered is not None and not subscriber.done
        why = "already done" if subscriber.done else ("" if gets else "sections empty")
        recipient = Recipient(
            email=subscriber.email,
            sections=sorted(choice) if choice else "all",
            gets=gets,
            subject=rendered.subject if gets and rendered else None,
            why_not=why or None,
        )
        tally.add(_choice_key(recipient), recipient.subject if gets else None)
        if each is not None:
            each(recipient)
    return summary


def _choice_key(recipient: Recipient) -> str:
    sections = recipient.sections
    return ",".join(sections) if isinstance(sections, list) else "all"


def _active(db: Database, issue_id: int | None) -> Iterator[Row[str, str | None, bool]]:
    """The active subscribers by address, a page per transaction, each with ``done``: whether
    the issue's delivery to them is made already."""
    done = exists().where(
        Delivery.issue_id == issue_id,
        Delivery.subscriber_id == Subscriber.id,
        Delivery.status.in_(DONE),
    )
    columns = (Subscriber.email, Subscriber.sections, done.label("done"))
    after = ""
    while True:
        with db.read_only(), db.session() as s:
            page = s.execute(
                select(*columns)
                .where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.email > after)
                .order_by(Subscriber.email)
                .limit(PAGE)
            ).all()
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].email
