"""Weekly issues: plan one from the stored posts, record it (claiming its posts), render it.

Each function takes the newsletter as issue/newsletter.Newsletter (Settings are read into it
once, at the caller); where its window ends is newsletter.Ending, the same for a preview and a
send at one moment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.orm import Session, defer

from digest.config import Settings
from digest.errors import InputError
from digest.issue import newsletter
from digest.issue.compose import (
    Grouped,
    Layout,
    Ranking,
    Window,
    belongs,
    group,
    may_show,
    unique_articles,
    window_for,
    with_texts,
)
from digest.issue.curation import Words, spend, words_for
from digest.issue.inline import Inline, parse_inline
from digest.issue.newsletter import Ending, Newsletter, ending
from digest.issue.picks import Score, score_posts
from digest.issue.render import IssueMeta
from digest.issue.signals import load_signals
from digest.issue.stored import candidates, claimed_posts, texts_of
from digest.models import POSTED, Feed, Issue, Post
from digest.storage import Database, in_pieces, utcnow
from digest.types import (
    IssueStatus,
    RenderedEmail,
    StoredPost,
    Verdict,
)

Config = Settings | Newsletter  # what callers hand in: read once into a Newsletter


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
    skipped: tuple[StoredPost, ...] = ()  # the curator's skips: claimed, never shown
    intro: Inline | None = None  # the curator's intro
    notes: Mapping[int, Inline] = field(default_factory=dict)  # the curator's, by post id
    ending: Ending | None = None  # where its window ends, and why (None: a recorded issue)

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
    config: Config,
    as_of: datetime | Ending | None = None,
    *,
    now: datetime | None = None,
) -> IssuePlan:
    """The issue ending at ``as_of`` (an Ending, or a moment: the end of the week it closes);
    by default the one `digest send` would send at ``now``."""
    nl = Newsletter.of(config)
    end = _ending(nl, as_of, now)
    with db.session() as s:
        recorded = s.scalar(select(Issue).where(Issue.window_end == end.end))
        if recorded is not None:
            return _recorded_plan(s, recorded)
        window = window_for(end.end, s.scalars(select(Issue.window_end)), end.scheduled)
        number = 1 + (s.scalar(select(func.count()).where(Issue.window_end < end.end)) or 0)
        found = [p for p in candidates(s, window) if belongs(p, window)]
        plan = _planned(s, found, window, words_for(s, None), number)
    return replace(plan, ending=end)


def coming_window(db: Database, config: Config, now: datetime) -> Window:
    """The window of the coming scheduled issue: what `digest pick` and `digest skip` may
    name (a post of the days until the send time counts, though a send now would end now)."""
    nl = Newsletter.of(config)
    scheduled = nl.next_send(now)
    with db.session() as s:
        return window_for(scheduled, s.scalars(select(Issue.window_end)), scheduled)


def _ending(nl: Newsletter, as_of: datetime | Ending | None, now: datetime | None) -> Ending:
    if isinstance(as_of, Ending):
        return as_of
    if as_of is not None:
        return Ending(as_of, as_of, "as-of")
    return ending(nl, None, now or utcnow())


def _planned(
    s: Session,
    found: list[StoredPost],
    window: Window,
    words: Words,
    number: int,
    issue_id: int | None = None,
) -> IssuePlan:
    """The plan of ``found``: one post per article, the curator's skips set aside, scored."""
    kept, dups = unique_articles(found)
    skip = {url for url, verdict in words.verdicts.items() if verdict is Verdict.SKIP}
    skipped = [p for p in kept if p.canonical_url in skip]
    shown = [p for p in kept if p.canonical_url not in skip]
    scores = score_posts(shown, load_signals(s, shown, window, words.verdicts))
    notes = {
        p.id: parse_inline(words.notes[p.canonical_url])
        for p in shown
        if p.canonical_url in words.notes
    }
    return IssuePlan(
        number,
        window.start,
        window.end,
        _ordered(shown),
        tuple(p.id for p in dups),
        issue_id,
        scores,
        _ordered(skipped),
        parse_inline(words.intro) if words.intro else None,
        notes,
    )


def _recorded_plan(s: Session, issue: Issue) -> IssuePlan:
    """The plan of a recorded issue: the posts it claimed, scored as when it was recorded
    (with its own curator's words)."""
    window = Window(issue.window_start, issue.window_end)
    words = words_for(s, issue)
    return _planned(s, claimed_posts(s, issue.id), window, words, issue.number, issue.id)


def record_issue(db: Database, config: Config, plan: IssuePlan) -> RecordedIssue | None:
    """Store the issue and claim its posts, at once; the same window again returns it.

    None for an empty plan: an empty week records and sends nothing. The stored HTML is the
    web version (the web's footer: subscribe, archive; no personal links).
    """
    recording = record(db, config, plan)
    return recording.issue if recording is not None else None


@dataclass(frozen=True)
class Recording:
    """An issue just recorded, with what its deliveries can render it from."""

    issue: RecordedIssue
    # The plan as recorded, when it claimed every post it holds: then it is the plan
    # render_recorded would load and score again (None: load it).
    plan: IssuePlan | None = None
    email: tuple[Layout, RenderedEmail] | None = None  # the plan's rendering, every section


def record(db: Database, config: Config, plan: IssuePlan) -> Recording | None:
    """record_issue, keeping the plan and its rendering for the deliveries that follow."""
    if plan.issue_id is not None:
        loaded = load_issue_by_id(db, plan.issue_id)
        return Recording(loaded) if loaded is not None else None
    if plan.empty:
        return None
    nl = Newsletter.of(config)
    with db.session() as s:
        existing = s.scalar(select(Issue).where(Issue.window_end == plan.window_end))
        if existing is not None:
            return Recording(_recorded(existing))
        number = 1 + (s.scalar(select(func.max(Issue.number))) or 0)
        numbered = replace(plan, number=number)

        # Texts read in this session: another would wait for its write lock (SQLite).
        def texts(ids: list[int]) -> dict[int, str]:
            return texts_of(s, ids)

        # The email and the web version group the posts once: the first send of 40,000 posts
        # 4.69 -> 4.43 s CPU (bench/recent_send.py, same run).
        grouped = _grouped(nl, numbered, None, texts)
        layout, email = nl.renderer.fit(grouped, _meta(nl, numbered), nl.budget)
        web = nl.renderer.fit(grouped, _meta(nl, numbered, web=True), nl.budget)[1]
        issue = Issue(
            number=number,
            window_start=plan.window_start,
            window_end=plan.window_end,
            created_at=utcnow(),
            subject=email.subject,
            html=web.html,
            text=email.text,
            post_count=len(plan.posts),
            status=IssueStatus.RECORDED,
            pick_titles=json.dumps([pick.item.title for pick in layout.picks]),
        )
        s.add(issue)
        s.flush()
        ids = [p.id for p in (*plan.posts, *plan.skipped)] + list(plan.duplicate_ids)
        claimed = 0
        for chunk in in_pieces(ids, 500):
            # Only unclaimed posts: a post goes into exactly one issue.
            result = s.execute(
                update(Post)
                .where(Post.id.in_(chunk), Post.issue_id.is_(None))
                .values(issue_id=issue.id)
            )
            claimed += cast("CursorResult[Any]", result).rowcount
        # The curator's words were for this issue: the next one starts afresh.
        spend(s, issue)
        recorded = _recorded(issue)
    if claimed != len(ids):  # an older week, some of its posts in later issues: load it
        return Recording(recorded)
    # Every post claimed, the curator's words now the issue's: render_recorded's plan is this
    # one. Loading and scoring it again cost the first send on a database of 40,000 recent
    # posts ~1.5 s of CPU and rendering it again ~0.8 s (bench/recent_send.py).
    return Recording(recorded, replace(numbered, issue_id=recorded.id), (layout, email))


def render_recording(
    db: Database, config: Config, recording: Recording, sections: frozenset[str] | None = None
) -> RenderedEmail | None:
    """render_recorded of a recording: from the plan it was recorded from, when it holds."""
    if recording.plan is None:
        return render_recorded(db, config, recording.issue.id, sections)
    if sections is None and recording.email is not None:
        layout, rendered = recording.email
    else:
        layout, rendered = render_plan(db, config, recording.plan, sections)
    return None if layout.empty else rendered


def render_plan(
    db: Database,
    config: Config,
    plan: IssuePlan,
    sections: frozenset[str] | None = None,
    *,
    health: Sequence[str] = (),
    web: bool = False,
    desk: bool = False,
) -> tuple[Layout, RenderedEmail]:
    """The plan rendered within the size budget; a preview passes the feed health note
    (ingest.health.failing_note), which subscribers' copies never carry; ``web``: the web
    version; ``desk``: marked for the curator's desk (each post's element names it)."""
    nl = Newsletter.of(config)
    meta = _meta(nl, plan, health=tuple(health), web=web, desk=desk)
    return _fit(nl, plan, meta, sections, lambda ids: _texts(db, ids))


Texts = Callable[[list[int]], Mapping[int, str]]  # posts' texts by id (stored.texts_of)


def _texts(db: Database, ids: list[int]) -> dict[int, str]:
    with db.session() as s:
        return texts_of(s, ids)


def _fit(
    nl: Newsletter,
    plan: IssuePlan,
    meta: IssueMeta,
    sections: frozenset[str] | None,
    texts: Texts,
) -> tuple[Layout, RenderedEmail]:
    return nl.renderer.fit(_grouped(nl, plan, sections, texts), meta, nl.budget, sections)


def _grouped(
    nl: Newsletter, plan: IssuePlan, sections: frozenset[str] | None, texts: Texts
) -> Grouped:
    """The plan's posts grouped for rendering (compose.group), with the texts an item may
    show (planned posts come without theirs: stored._PLAN_TEXT)."""
    ranking = Ranking(plan.scores, nl.picks, nl.max_per_blog, plan.notes)
    grouped = group(plan.posts, sections, ranking)
    untexted = [p.id for p in may_show(grouped) if not p.text]
    return with_texts(grouped, texts(untexted)) if untexted else grouped


def render_recorded(
    db: Database, config: Config, issue_id: int, sections: frozenset[str] | None = None
) -> RenderedEmail | None:
    """A recorded issue for one choice of sections; None when those sections are empty."""
    with db.session() as s:
        issue = s.get(Issue, issue_id)
        if issue is None:
            raise InputError(f"no issue with id {issue_id}")
        plan = _recorded_plan(s, issue)
    layout, rendered = render_plan(db, config, plan, sections)
    return None if layout.empty else rendered


def latest_issue(db: Database) -> RecordedIssue | None:
    """The newest recorded issue (the one the sign-up pages and the welcome email link)."""
    newest = select(Issue).options(defer(Issue.html), defer(Issue.text))  # ~90 KB each
    with db.session() as s:
        issue = s.scalar(newest.order_by(Issue.number.desc()).limit(1))
        return _recorded(issue) if issue else None


def load_issue_by_id(db: Database, issue_id: int) -> RecordedIssue | None:
    with db.session() as s:
        issue = s.get(Issue, issue_id)
        return _recorded(issue) if issue else None


def parse_as_of(text: str, config: Config) -> datetime:
    """--as-of in UTC: ISO 8601, a date alone the end of that day, a naive time local."""
    return newsletter.parse_as_of(text, Newsletter.of(config).timezone)


def last_issue_end(db: Database) -> datetime | None:
    with db.session() as s:
        return s.scalar(select(func.max(Issue.window_end)))


def newest_unsent(db: Database) -> datetime | None:
    """The date of the newest stored post no issue holds yet (of a feed still listed; not an
    undated one of a new feed's backlog, which no issue takes): where an empty week's preview
    points (`--as-of` that day)."""
    with db.session() as s:
        return s.scalar(
            select(func.max(POSTED))
            .join(Feed, Feed.id == Post.feed_id)
            .where(Feed.active, Post.issue_id.is_(None))
            .where(or_(Post.date.is_not(None), Post.from_first_poll.is_(False)))
        )


# ---- helpers ----------------------------------------------------------------------------


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


def _meta(
    nl: Newsletter,
    plan: IssuePlan,
    health: tuple[str, ...] = (),
    *,
    web: bool = False,
    desk: bool = False,
) -> IssueMeta:
    return IssueMeta(
        nl.title,
        plan.number,
        plan.window,
        nl.base_url,
        nl.timezone,
        health=health,
        intro=plan.intro,
        subject_template=nl.subject,
        signup=nl.signup,
        postal_address=nl.postal_address,
        web=web,
        desk=desk,
    )
