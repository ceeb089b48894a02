"""The curator's word on the coming issue: `digest pick URL` and `digest skip URL` override a
post's score (issue/picks.py), `digest picks` lists them. They stay pending until an issue is
recorded, and belong to that issue from then on (plan.record_issue)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from digest.errors import InputError
from digest.models import Curation, Post
from digest.storage import Database
from digest.types import Verdict
from digest.urls import canonical_url, normalize_link


@dataclass(frozen=True)
class Curated:
    """A pending verdict, with the title of the stored post it names (None: none stored yet)."""

    url: str  # canonical, as posts.canonical_url
    verdict: Verdict
    created_at: datetime
    title: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "verdict": self.verdict.value,
            "since": self.created_at.isoformat(),
            "title": self.title,
        }


def curate(db: Database, url: str, verdict: Verdict, now: datetime) -> Curated:
    """Record ``verdict`` on the post at ``url`` for the coming issue (replacing an earlier
    word on it)."""
    key = post_key(url)
    with db.session() as s:
        _forget(s, key)
        s.add(Curation(url=key, verdict=verdict, created_at=now))
        return Curated(key, verdict, now, _title(s, key))


def forget(db: Database, url: str) -> bool:
    """Drop the pending word on ``url``; whether there was one."""
    with db.session() as s:
        return _forget(s, post_key(url)) > 0


def pending(db: Database) -> list[Curated]:
    """The verdicts the coming issue will follow, oldest first."""
    with db.session() as s:
        rows = s.scalars(select(Curation).where(Curation.issue_id.is_(None)).order_by(Curation.id))
        return [Curated(c.url, c.verdict, c.created_at, _title(s, c.url)) for c in rows]


def post_key(url: str) -> str:
    """The canonical URL a post at ``url`` is stored under; InputError if it is not one."""
    link = normalize_link(url)
    if link is None:
        raise InputError(f"{url!r} is not an http(s) URL of a post")
    return canonical_url(link, normalized=True)


def _forget(s: Session, key: str) -> int:
    done = s.execute(delete(Curation).where(Curation.issue_id.is_(None), Curation.url == key))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def _title(s: Session, key: str) -> str | None:
    return s.scalar(select(Post.title).where(Post.canonical_url == key).limit(1))
