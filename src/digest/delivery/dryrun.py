"""A dry run of `digest send`: who would get what, sending and recording nothing."""

from __future__ import annotations

from sqlalchemy import select

from digest.delivery.deliverylog import choice_of
from digest.delivery.sender import RenderFor
from digest.delivery.summary import SendSummary
from digest.models import Delivery, Subscriber
from digest.storage import Database
from digest.types import DeliveryStatus, SubscriberStatus

# Deliveries a later run will not make again.
DONE = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)


def dry_run_summary(
    db: Database, render_for: RenderFor, issue_id: int | None, summary: SendSummary
) -> SendSummary:
    """Who would get what, sending and recording nothing."""
    summary.mode = "dry-run"
    with db.session() as s:
        subscribers = s.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.sections)
            .where(Subscriber.status == SubscriberStatus.ACTIVE)
            .order_by(Subscriber.email)
        ).all()
        done: set[int] = set()
        if issue_id is not None:
            done = set(
                s.scalars(
                    select(Delivery.subscriber_id).where(
                        Delivery.issue_id == issue_id, Delivery.status.in_(DONE)
                    )
                )
            )
    seen: set[frozenset[str] | None] = set()
    for subscriber_id, email, sections in subscribers:
        choice = choice_of(sections)
        rendered = render_for(choice)
        if choice not in seen:
            seen.add(choice)
            summary.renders += 1
        if summary.subject is None and rendered is not None:
            summary.subject = rendered.subject
        gets = rendered is not None and subscriber_id not in done
        why = "already done" if subscriber_id in done else ("" if gets else "sections empty")
        summary.recipients.append(
            {
                "email": email,
                "sections": sorted(choice) if choice else "all",
                "gets": gets,
                "subject": rendered.subject if gets and rendered else None,
                "why_not": why or None,
            }
        )
    return summary
