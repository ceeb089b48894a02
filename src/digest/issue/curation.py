"""The curator's word on the coming issue: `digest pick URL [--note TEXT]` puts a post among
its picks, `digest skip URL` keeps a post out of it, `digest intro TEXT` opens it, `digest
picks` lists them. They stay pending until an issue is recorded, and belong to that issue from
then on (plan.record_issue): its web page and every later rendering keep them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from digest.errors import InputError
from digest.issue.compose import Window, belongs
from digest.issue.inline import MAX_CHARS
from digest.issue.newsletter import show
from digest.issue.stored import posts_at
from digest.models import Curation, Issue, Meta, Post
from digest.storage import Database, utcnow
from digest.types import Verdict

UTC_ZONE = ZoneInfo("UTC")
INTRO_KEY = "pending_intro"  # meta: the coming issue's intro, until an issue is recorded
MAX_NOTE = 1000  # characters of a note under a pick; an intro: inline.MAX_CHARS


@dataclass(frozen=True)
class Curated:
    """A pending verdict, with the title of the stored post it names and the curator's note."""

    url: str  # canonical, as posts.canonical_url
    verdict: Verdict
    created_at: datetime
    title: str | None
    note: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "verdict": self.verdict.value,
            "since": self.created_at.isoformat(),
            "title": self.title,
            "note": self.note,
        }


@dataclass(frozen=True)
class Words:
    """The curator's word on one issue, as planning reads it: verdicts and notes by canonical
    URL, and the intro (None: none)."""

    verdicts: dict[str, Verdict] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    intro: str | None = None


def words_for(s: Session, issue: Issue | None) -> Words:
    """An issue's words: its own once recorded, else the pending ones (the latest per URL)."""
    mine = Curation.issue_id.is_(None) if issue is None else Curation.issue_id == issue.id
    rows = s.execute(
        select(Curation.url, Curation.verdict, Curation.note).where(mine).order_by(Curation.id)
    )
    verdicts: dict[str, Verdict] = {}
    notes: dict[str, str] = {}
    for url, verdict, note in rows:
        verdicts[url] = verdict
        notes.pop(url, None)
        if note and verdict is Verdict.PICK:
            notes[url] = note
    if issue is not None:
        return Words(verdicts, notes, issue.intro)
    intro = s.get(Meta, INTRO_KEY)
    return Words(verdicts, notes, intro.value if intro else None)


def curate(
    db: Database,
    url: str,
    verdict: Verdict,
    now: datetime,
    *,
    coming: Window | None = None,
    zone: ZoneInfo = UTC_ZONE,
    note: str | None = None,
) -> Curated:
    """Record ``verdict`` on the post at ``url`` for the coming issue (replacing an earlier
    word on it; a pick again without a note keeps its note). With ``coming`` (the coming
    issue's window), InputError unless a stored post the issue can hold has that URL."""
    key = post_key(url)
    if note is not None and len(note) > MAX_NOTE:
        raise InputError(f"--note: at most {MAX_NOTE} characters (this one has {len(note)})")
    with db.session() as s:
        title = _title(s, key)
        if coming is not None:
            refusal = why_not_coming(s, key, coming, zone)
            if refusal:
                raise InputError(f"cannot {verdict.value} {key}: {refusal}")
        kept = _pending_note(s, key) if note is None and verdict is Verdict.PICK else note
        _forget(s, key)
        s.add(Curation(url=key, verdict=verdict, created_at=now, note=kept or None))
        return Curated(key, verdict, now, title, kept or None)


def why_not_coming(s: Session, key: str, coming: Window, zone: ZoneInfo = UTC_ZONE) -> str | None:
    """Why the coming issue (its window ``coming``) can't hold the post at ``key``; None if
    it can."""
    found = posts_at(s, key)
    if not found:
        return (
            "no stored post has this URL (`digest poll` stores new posts; `digest preview "
            "--json` lists the coming issue's)"
        )
    open_posts = [f for f in found if f.issue_id is None]
    if not open_posts:
        number = s.scalar(select(Issue.number).where(Issue.id == found[0].issue_id))
        return f"it went out in issue #{number} already"
    if not any(f.active for f in open_posts):
        return "its blog is no longer on the list (feeds.opml)"
    ruled_in = [f.post for f in open_posts if f.active and f.post is not None]
    if not ruled_in:
        return "a skip rule of its blog keeps it out of every issue"
    if not any(belongs(post, coming) for post in ruled_in):
        dated = ruled_in[0].date or ruled_in[0].first_seen
        return (
            f"it is dated {show(dated, zone)}, outside the coming issue's window "
            f"({show(coming.start, zone)} – {show(coming.end, zone)})"
        )
    return None


def forget(db: Database, url: str) -> bool:
    """Drop the pending word on ``url``; whether there was one."""
    with db.session() as s:
        return _forget(s, post_key(url)) > 0


def pending(db: Database) -> list[Curated]:
    """The verdicts the coming issue will follow, oldest first."""
    with db.session() as s:
        rows = s.scalars(select(Curation).where(Curation.issue_id.is_(None)).order_by(Curation.id))
        return [Curated(c.url, c.verdict, c.created_at, _title(s, c.url), c.note) for c in rows]


def set_intro(db: Database, text: str | None) -> None:
    """The coming issue's intro (inline Markdown); None or blank clears it. InputError for
    more than a short paragraph."""
    if text and len(" ".join(text.split())) > MAX_CHARS:
        raise InputError(f"intro: at most {MAX_CHARS} characters: a short paragraph")
    with db.session() as s:
        row = s.get(Meta, INTRO_KEY)
        if not text or not text.strip():
            if row is not None:
                s.delete(row)
        elif row is None:
            s.add(Meta(key=INTRO_KEY, value=text.strip(), updated_at=utcnow()))
        else:
            row.value, row.updated_at = text.strip(), utcnow()


def pending_intro(db: Database) -> str | None:
    return db.get_meta(INTRO_KEY)


def spend(s: Session, issue: Issue) -> None:
    """The pending words become ``issue``'s (in the session that records it): the next issue
    starts afresh."""
    intro = s.get(Meta, INTRO_KEY)
    if intro is not None:
        issue.intro = intro.value
        s.delete(intro)
    pending_rows: Sequence[Curation] = s.scalars(
        select(Curation).where(Curation.issue_id.is_(None))
    ).all()
    for row in pending_rows:
        row.issue_id = issue.id


def post_key(url: str) -> str:
    """The canonical URL a post at ``url`` is stored under; InputError if it is not one."""
    from digest.urls import canonical_url, normalize_link  # only `pick`/`skip` need it

    link = normalize_link(url)
    if link is None:
        raise InputError(f"{url!r} is not an http(s) URL of a post")
    return canonical_url(link, normalized=True)


def _pending_note(s: Session, key: str) -> str | None:
    return s.scalar(
        select(Curation.note)
        .where(Curation.issue_id.is_(None), Curation.url == key)
        .order_by(Curation.id.desc())
        .limit(1)
    )


def _forget(s: Session, key: str) -> int:
    done = s.execute(delete(Curation).where(Curation.issue_id.is_(None), Curation.url == key))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def _title(s: Session, key: str) -> str | None:
    return s.scalar(select(Post.title).where(Post.canonical_url == key).limit(1))
