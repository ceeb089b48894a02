"""Commands: `digest poll` (fetch every feed once) and `digest feeds` (their health)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from digest.cli import cli
from digest.cli.context import App, pass_app
from digest.types import FeedStatus
from digest.words import counted, show_time

if TYPE_CHECKING:
    from digest.ingest.health import FeedHealth
    from digest.ingest.idle import EarlyStart
    from digest.ingest.retry import Retried
    from digest.ingest.summary import PollProgress, PollSummary


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line, only the summary.")
@click.option(
    "--force",
    is_flag=True,
    help="Also fetch feeds backing off after errors (never a 410, never before a Retry-After).",
)
@pass_app
def poll(app: App, as_json: bool, quiet: bool, force: bool) -> None:
    """Fetch every active feed once, concurrently, store new posts and exit.

    The feed list is synced with the OPML file (feeds.opml) first. On a terminal a progress
    line shows the feeds done, the new posts and errors, and the sites still answering;
    without a terminal (or with --quiet or --json) only the summary is printed. Feeds that
    fail are recorded (see `digest feeds --errors`) and retried later with backoff; the
    summary says how many were skipped while backing off and until when (--force fetches
    them, except those whose server asked to wait: a 429 or Retry-After), and how many
    answered 410 (`digest feeds retry URL` brings one back). The exit status is 0 as long as
    the poll ran. A feed that meets a bug in storing is set aside the same way, the others are
    stored, and the poll ends with one line naming it and exit 1.
    """
    from digest.ingest.idle import EarlyStart, start_poll

    # Nothing to fetch: answered with sqlite3. Feeds to fetch and nothing unusual: the lock
    # taken and the first requests out while SQLAlchemy loads. Else the whole poll.
    start = start_poll(app.settings, datetime.now(UTC), force=force)
    summary = _early_poll(app, start, quiet or as_json) if isinstance(start, EarlyStart) else start
    if summary is None:
        summary = _poll(app, quiet or as_json, force)
    if as_json:
        click.echo(json.dumps({**summary.as_json(), **summary.held_json()}))
        return
    click.echo(summary.line(app.settings.newsletter.timezone))
    if summary.errors:
        click.echo("see `digest feeds --errors` for what failed")


def _early_poll(app: App, start: EarlyStart, quiet: bool) -> PollSummary | None:
    """The poll start_poll began (see ingest/early.py); None: the whole poll runs instead."""
    from digest.ingest.early import poll_early

    with ProgressLine(not quiet and sys.stderr.isatty()) as progress:
        return poll_early(app.settings, start, progress=progress.update)


def _poll(app: App, quiet: bool, force: bool) -> PollSummary:
    """The whole poll: the feed list followed, then every feed the policy lets it fetch."""
    from digest.feedlist.listsync import follow_feed_list
    from digest.ingest.poll import poll_feeds
    from digest.storage import utcnow

    # A stat when feeds.opml is as last synced: not read, parsed (lxml) or synced again.
    follow_feed_list(app.db, app.settings.feeds.opml, utcnow())
    show = not quiet and sys.stderr.isatty()
    with ProgressLine(show) as progress:
        return poll_feeds(app.db, app.settings, None, force=force, progress=progress.update)


class ProgressLine:
    """A poll's progress on the terminal (tqdm): feeds done of all, new posts, errors, and
    the hosts it still waits on. Log lines meanwhile print above it (tqdm's logging redirect)
    rather than through it. Shows nothing when ``show`` is false."""

    # The counts first: a narrow terminal cuts the end of the line, the list of hosts.
    FORMAT = "{n_fmt}/{total_fmt} feeds |{bar:12}| {elapsed}{postfix}"

    def __init__(self, show: bool) -> None:
        self.show = show
        self.bar: Any = None
        self._logging = contextlib.ExitStack()

    def __enter__(self) -> ProgressLine:
        if self.show:
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._logging.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
        self._logging.close()

    def update(self, p: PollProgress) -> None:
        if not self.show:
            return
        if self.bar is None:
            from tqdm import tqdm

            # A terminal that reports no size (a fresh pty, some CI consoles) shows nothing
            # with tqdm's own measure: 80 x 24 then.
            try:
                size = os.get_terminal_size(sys.stderr.fileno())
            except OSError:
                size = os.terminal_size((80, 24))
            self.bar = tqdm(
                total=p.total,
                file=sys.stderr,
                leave=False,
                bar_format=self.FORMAT,
                ncols=size.columns or 80,
                nrows=size.lines or 24,
            )
        self.bar.n = p.done
        self.bar.set_postfix_str(self.describe(p), refresh=False)
        self.bar.refresh()

    @staticmethod
    def describe(p: PollProgress) -> str:
        """``12 new, 3 errors; waiting on 2 hosts: example.org (2), other.net (1)``."""
        line = f"{p.new_posts:,} new, {counted(p.errors, 'error')}"
        if p.waiting_on:
            hosts = ", ".join(f"{site} ({n})" for site, n in p.waiting_on)
            line += f"; waiting on {counted(len(p.waiting_on), 'host')}: {hosts}"
        return line


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--errors", "errors_only", is_flag=True, help="Only feeds that are failing.")
@pass_app
def feeds(app: App, as_json: bool, errors_only: bool) -> None:
    """List every feed: section, health, last success, post count.

    Health is ok, not modified, error (with the message), gone, or backing off until a
    time; feeds failing for 7 days or more are flagged. Feeds are listed by section, then by
    title as people sort them. Times are in newsletter.timezone (UTC with --json). Each line
    fits the terminal: a health that needs more room than its column (an error, until when
    a feed backs off) gets lines of its own below the feed (--json has everything whole). A
    feed whose last body was broken but readable (bad XML, a wrong charset) gets a warning
    line for its owner to fix, and a feed with rules (`skip:`, `section:` in its list entry)
    a line with them. `digest feeds retry URL` resets a failing feed.
    """
    if click.get_current_context().invoked_subcommand is None:
        list_feed_health(app, as_json, errors_only)


def list_feed_health(app: App, as_json: bool, errors_only: bool) -> None:
    from digest.ingest.health import list_feeds

    zone = "UTC" if as_json else app.settings.newsletter.timezone
    rows = list_feeds(app.read_db(), zone=zone)
    if errors_only:
        rows = [r for r in rows if r.failing or r.failing_since is not None]
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no failing feeds" if errors_only else "no feeds yet: run `digest poll`")
        return
    for line in feeds_table(rows, zone, shutil.get_terminal_size((120, 24)).columns):
        click.echo(line)
    failing = sum(r.long_failing for r in rows)
    if failing:
        click.echo(f"{counted(failing, 'feed')} failing for 7 days or more", err=True)
    gone = sum(r.active and r.status == FeedStatus.GONE for r in rows)
    if gone:
        it = "it" if gone == 1 else "one"
        click.echo(
            f"{counted(gone, 'feed')} gone (HTTP 410): `digest feeds retry URL` polls {it} "
            "again once it is back",
            err=True,
        )


@feeds.command()
@click.argument("url", required=False)
@click.option(
    "--all-failing", is_flag=True, help="Every feed that is failing (error, backing off, gone)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the feeds reset as JSON.")
@pass_app
def retry(app: App, url: str | None, all_failing: bool, as_json: bool) -> None:
    """Reset a feed's health and backoff: the next poll fetches it.

    URL is the feed's address as feeds.opml names it (or where it moved to). A feed that
    answered 410 (gone) is never fetched again until this; one backing off after errors waits
    no longer. Its posts stay; its validators are dropped (the next request is a plain GET).
    """
    from digest.ingest.retry import retry_failing, retry_feed

    if (url is None) == (not all_failing):
        raise click.UsageError("give a feed's URL or --all-failing (one of them)")
    db = app.read_db()
    done = retry_failing(db) if all_failing else [retry_feed(db, url or "")]
    if as_json:
        click.echo(json.dumps([r.as_json() for r in done]))
    elif not done:
        click.echo("no failing feeds: nothing to reset")
    elif len(done) == 1:
        r = done[0]
        name = f"{r.title} <{r.url}>" if r.title else r.url
        click.echo(f"reset {name} (was {_was(r)}): the next poll fetches it")
    else:
        click.echo(f"reset {counted(len(done), 'failing feed')}: the next poll fetches them")


def _was(r: Retried) -> str:
    """What the feed was before its reset: "gone", "failing: HTTP 503 ...", "ok"."""
    if r.was == FeedStatus.GONE:
        return "gone"
    return f"failing: {r.error}" if r.error else health_word_of(r.was)


def health_word_of(status: FeedStatus) -> str:
    return {FeedStatus.BACKOFF: "backing off", FeedStatus.NOT_MODIFIED: "not modified"}.get(
        status, str(status)
    )


# The columns before the feed's name: section, posts, last success (labelled with its zone),
# the health in a word or two. What does not fit (an error's text, until when a feed backs off)
# goes on lines of its own, indented under the health: nothing is cut but an error's far end.
_WIDTHS = {"section": 7, "posts": 5, "success": 20, "health": 12}
_DETAIL_LINES = 3


def feeds_table(rows: list[FeedHealth], zone: str, columns: int) -> list[str]:
    """`digest feeds`' lines, none longer than ``columns``."""
    w = _WIDTHS
    indent = w["section"] + w["posts"] + w["success"] + 6
    lines = [
        f"{'SECTION':{w['section']}} {'POSTS':>{w['posts']}}  {'LAST SUCCESS':{w['success']}}  "
        f"{'HEALTH':{w['health']}}  FEED"
    ]
    for r in rows:
        word = health_word(r)
        name = f"{r.title} <{r.url}>" if r.title else r.url
        success = show_time(r.last_success_at, zone)
        line = (
            f"{r.section:{w['section']}} {r.posts:>{w['posts']}}  {success:{w['success']}}  "
            f"{word:{w['health']}}  {name}"
        )
        lines.append(_cut(line, columns))
        detail = r.health.removeprefix(word).lstrip(":; ") if r.active else r.health
        notes = [detail] if detail else []
        notes += [f"warning: {r.warning}"] * bool(r.warning)
        notes += [f"rules: {r.rules_line()}"] * bool(r.rules)
        for note in notes:
            lines += _wrapped(note, indent, columns)
    return lines


def health_word(row: FeedHealth) -> str:
    """The health in a word or two, for its column (row.health says the rest)."""
    if not row.active:
        return "inactive"
    words = {
        FeedStatus.OK: "ok",
        FeedStatus.NOT_MODIFIED: "not modified",
        FeedStatus.ERROR: "error",
        FeedStatus.BACKOFF: "backing off",
        FeedStatus.GONE: "gone",
        FeedStatus.NEW: "not polled",
    }
    word = words.get(row.status, str(row.status))
    return row.health if len(row.health) <= _WIDTHS["health"] else word


def _wrapped(text: str, indent: int, columns: int) -> list[str]:
    """``text`` on lines under the health column, at most _DETAIL_LINES, the last cut."""
    width = max(20, columns - indent)
    pad = " " * (columns - width)
    lines = textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)
    if len(lines) > _DETAIL_LINES:
        lines = [*lines[: _DETAIL_LINES - 1], _cut(" ".join(lines[_DETAIL_LINES - 1 :]), width)]
    return [pad + line for line in lines]


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns with an ellipsis (the whole text is in --json)."""
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"
