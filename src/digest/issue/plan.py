"""Weekly issues: plan one from the stored posts, record it (claiming its posts), render it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, defer

from digest.config import Settings
from digest.errors import InputError
from digest.issue.compose import (
    Layout,
    Ranking,
    Window,
    belongs,
    unique_articles,
    window_for,
)
from digest.issue.picks import Score, score_posts
from digest.issue.render import IssueMeta, Renderer
from digest.issue.signals import load_signals
from digest.issue.stored import candidates, claimed_posts
from digest.models import Curation, Issue, Post
from digest.storage import Database, utcnow
from digest.types import (
    PREFERENCES_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
    IssueStatus,
    RenderedEmail,
    StoredPost,
)


@dataclass(frozen=True)
class IssuePlan:
    """The issue whose window ends at ``window_end``, as the database holds it now."""

    number: int
    window_start: datetime
    window_end: datetime
    posts: tuple[StoredPost, ...]  # one per article, what the issue shows
    duplicate_ids: tuple[int, ...] = ()  # the same articles from other feeds: claimed, not shown
    issue_id: int | None = None  # set when this window is already recorded
    scores: Mapping[int, Score] = field(default_factory=dict)  # by post id (issue/picks.py)

    @property
    def window(self) -> Window:
        return Window(self.window_start, self.window_end)

    @property
    def empty(self) -> bool:
        return not self.posts


@dataclass(frozen=True)
class RecordedIssue:
    id: int
    number: int
    window_start: datetime
    window_end: datetime
    subject: str
    post_count: int
    created_at: datetime
    pick_titles: tuple[str, ...] = ()


def plan_issue(
    db: Database,
    settings: Settings,
    as_of: datetime | None = None,
    *,
    now: datetime | None = None,
) -> IssuePlan:
    """The issue ending at ``as_of`` (default: the next send time after ``now``)."""
    end = as_of or default_as_of(settings, now or utcnow())
    with db.session() as s:
        recorded = s.scalar(select(Issue).where(Issue.window_end == end))
        if recorded is not None:
            return _recorded_plan(s, recorded)
        window = window_for(end, s.scalars(select(Issue.window_end)))
        number = 1 + (s.scalar(select(func.count()).where(Issue.window_end < end)) or 0)
        kept, dups = unique_articles(p for p in candidates(s, window) if belongs(p, window))
        scores = score_posts(kept, load_signals(s, kept, window, None))
    dup_ids = tuple(p.id for p in dups)
    return IssuePlan(number, window.start, window.end, _ordered(kept), dup_ids, None, scores)


def _recorded_plan(s: Session, issue: Issue) -> IssuePlan:
    """The plan of a recorded issue: the posts it claimed, scored as when it was recorded
    (with its own curator's verdicts)."""
    kept, dups = unique_articles(claimed_posts(s, issue.id))
    window = Window(issue.window_start, issue.window_end)
    scores = score_posts(kept, load_signals(s, kept, window, issue.id))
    dup_ids = tuple(p.id for p in dups)
    return IssuePlan(
        issue.number,
        issue.window_start,
        issue.window_end,
        _ordered(kept),
        dup_ids,
        issue.id,
        scores,
    )


def record_issue(db: Database, settings: Settings, plan: IssuePlan) -> RecordedIssue | None:
    """Store the issue and claim its posts, at once; the same window again returns it.

    None for an empty plan: an empty week records and sends nothing.
    """
    if plan.issue_id is not None:
        return load_issue_by_id(db, plan.issue_id)
    if plan.empty:
        return None
    with db.session() as s:
        existing = s.scalar(select(Issue).where(Issue.window_end == plan.window_end))
        if existing is not None:
            return _recorded(existing)
        number = 1 + (s.scalar(select(func.max(Issue.number))) or 0)
        numbered = replace(plan, number=number)
        meta, budget = _meta(settings, numbered), budget_bytes(settings)
        layout, rendered = _renderer(settings).fit(
            plan.posts, meta, budget, None, _ranking(settings, plan)
        )
        issue = Issue(
            number=number,
            window_start=plan.window_start,
            window_end=plan.window_end,
            created_at=utcnow(),
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            post_count=len(plan.posts),
            status=IssueStatus.RECORDED,
            pick_titles=json.dumps([pick.item.title for pick in layout.picks]),
        )
        s.add(issue)
        s.flush()
        ids = [p.id for p in plan.posts] + list(plan.duplicate_ids)
        for chunk in _chunks(ids, 500):
            # Only unclaimed posts: a post goes into exactly one issue.
            s.execute(
                update(Post)
                .where(Post.id.in_(chunk), Post.issue_id.is_(None))
                .values(issue_id=issue.id)
            )
        # The curator's verdicts were for this issue: the next one starts afresh.
        s.execute(update(Curation).where(Curation.issue_id.is_(None)).values(issue_id=issue.id))
        return _recorded(issue)


def render_plan(
    db: Database,
    settings: Settings,
    plan: IssuePlan,
    sections: frozenset[str] | None = None,
    *,
    health: Sequence[str] = (),
) -> tuple[Layout, RenderedEmail]:
    """The plan rendered within the size budget; a preview passes the feed health note
    (ingest.health.failing_note), which subscribers' copies never carry."""
    meta = _meta(settings, plan, health=tuple(health))
    ranking = _ranking(settings, plan)
    return _renderer(settings).fit(plan.posts, meta, budget_bytes(settings), sections, ranking)


def render_recorded(
    db: Database, settings: Settings, issue_id: int, sections: frozenset[str] | None = None
) -> RenderedEmail | None:
    """A recorded issue for one choice of sections; None when those sections are empty."""
    with db.session() as s:
        issue = s.get(Issue, issue_id)
        if issue is None:
            raise InputError(f"no issue with id {issue_id}")
        plan = _recorded_plan(s, issue)
    layout, rendered = render_plan(db, settings, plan, sections)
    return None if layout.empty else rendered


def list_issues(db: Database) -> list[RecordedIssue]:
    with db.session() as s:
        return [_recorded(i) for i in s.scalars(select(Issue).order_by(Issue.number.desc()))]


def latest_issue(db: Database) -> RecordedIssue | None:
    """The newest recorded issue (the one the sign-up pages and the welcome email link)."""
    newest = select(Issue).options(defer(Issue.html), defer(Issue.text))  # ~90 KB each
    with db.session() as s:
        issue = s.scalar(newest.order_by(Issue.number.desc()).limit(1))
        return _recorded(issue) if issue else None


def load_issue(db: Database, number: int) -> RecordedIssue | None:
    with db.session() as s:
        issue = s.scalar(select(Issue).where(Issue.number == number))
        return _recorded(issue) if issue else None


def load_issue_by_id(db: Database, issue_id: int) -> RecordedIssue | None:
    with db.session() as s:
        issue = s.get(Issue, issue_id)
        return _recorded(issue) if issue else None


def web_version(db: Database, settings: Settings, number: int) -> str | None:
    """The HTML of a recorded issue for the web archive (no personal links: they lead to the
    archive)."""
    with db.session() as s:
        html = s.scalar(select(Issue.html).where(Issue.number == number))
    if html is None:
        return None
    archive = f"{settings.newsletter.base_url}/"
    return html.replace(UNSUBSCRIBE_PLACEHOLDER, archive).replace(PREFERENCES_PLACEHOLDER, archive)


def last_issue_end(db: Database) -> datetime | None:
    with db.session() as s:
        return s.scalar(select(func.max(Issue.window_end)))


# ---- dates ------------------------------------------------------------------------------

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_as_of(text: str, settings: Settings) -> datetime:
    """ISO 8601 in UTC; a date alone is the end of that day, a naive time is local."""
    tz = ZoneInfo(settings.newsletter.timezone)
    value = text.strip()
    try:
        if _DATE_ONLY.fullmatch(value):
            day = date.fromisoformat(value)
            local = datetime.combine(day, time(23, 59, 59), tzinfo=tz)
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            local = parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    except ValueError:
        raise InputError(
            f"--as-of: {text!r} is not an ISO 8601 date or time (e.g. 2026-01-10 or "
            "2026-01-10T08:00+01:00)"
        ) from None
    return local.astimezone(UTC)


def default_as_of(settings: Settings, now: datetime) -> datetime:
    """This week's issue ends at the next send time."""
    from digest.issue.sendtimes import next_send_time

    return next_send_time(settings, now)


def budget_bytes(settings: Settings) -> int:
    # Room for the subscriber's own unsubscribe and preferences links (each up to 190 bytes,
    # in the HTML once or twice), which replace the placeholders.
    return settings.newsletter.max_kb * 1000 - 900


# ---- queries ----------------------------------------------------------------------------


def _ordered(posts: Sequence[StoredPost]) -> tuple[StoredPost, ...]:
    return tuple(sorted(posts, key=lambda p: p.id))


def _recorded(issue: Issue) -> RecordedIssue:
    return RecordedIssue(
        issue.id,
        issue.number,
        issue.window_start,
        issue.window_end,
        issue.subject,
        issue.post_count,
        issue.created_at,
        tuple(json.loads(issue.pick_titles or "[]")),
    )


def _meta(settings: Settings, plan: IssuePlan, health: tuple[str, ...] = ()) -> IssueMeta:
    nl = settings.newsletter
    return IssueMeta(
        nl.title, plan.number, plan.window, nl.base_url, ZoneInfo(nl.timezone), health=health
    )


def _ranking(settings: Settings, plan: IssuePlan) -> Ranking:
    nl = settings.newsletter
    return Ranking(plan.scores, nl.picks, nl.max_per_blog)


def _renderer(settings: Settings) -> Renderer:
    return Renderer(settings.newsletter.templates, ZoneInfo(settings.newsletter.timezone))


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
