"""Command: `digest preview` (render this week's issue, or any week's, without sending; with
--serve, the curator's desk)."""

from __future__ import annotations

import json
import webbrowser
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli import cli
from digest.cli.context import App, pass_app
from digest.config import Settings
from digest.words import counted, show_span, show_time

if TYPE_CHECKING:
    from digest.issue.compose import Layout
    from digest.issue.newsletter import Newsletter
    from digest.issue.plan import IssuePlan
    from digest.storage import Database
    from digest.types import RenderedEmail

FORMATS = {"html": "html", "text": "txt", "eml": "eml"}


@cli.command()
@click.option(
    "--as-of",
    "as_of",
    metavar="DATETIME",
    help="Build the issue whose window ends then (ISO 8601; a date alone means the "
    "end of that day in newsletter.timezone). Default: the issue `digest send` would send "
    "now.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default="html",
    show_default=True,
    help="html, text, or eml (the whole MIME message).",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Write here ('-' for stdout). Default: preview-N.html in this folder.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the file in a browser.")
@click.option(
    "--serve",
    is_flag=True,
    help="The curator's desk: the preview on localhost with Pick, Skip, Note and an intro "
    "editor, rendered again after each change and on every reload.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address for --serve (only this machine by default).",
)
@click.option("--port", type=int, default=8089, show_default=True, help="Port for --serve.")
@click.option("--json", "as_json", is_flag=True, help="Print what was built as JSON.")
@pass_app
def preview(
    app: App,
    as_of: str | None,
    fmt: str,
    output: str | None,
    open_browser: bool,
    serve: bool,
    host: str,
    port: int,
    as_json: bool,
) -> None:
    """Render an issue without sending or recording anything.

    By default the issue `digest send` run now would mail: the same posts, order and subject
    (its window ends now; the daemon's scheduled send ends it at the send time). The summary
    says which end it used. Shows the feed health note (feeds failing for a week) that
    subscribers never see. With --json, the summary lists the week's picks and every post's
    score with its parts (rarity, links, length, the curator's word) and the signals behind
    them, best first. --serve opens the curator's desk on this machine: pick, skip, add notes
    and the intro, and see the issue change.
    """
    from digest.issue.newsletter import Newsletter, parse_as_of, previewed
    from digest.issue.plan import plan_issue
    from digest.storage import utcnow

    newsletter = Newsletter.of(app.settings)
    when = parse_as_of(as_of, newsletter.timezone) if as_of else None
    db = app.read_db()
    if serve:
        _serve(app, newsletter, when, host, port)
        return
    plan = plan_issue(db, newsletter, previewed(newsletter, when, utcnow()))
    if plan.empty:
        _say_empty(db, newsletter, plan, as_json)
        return
    summary, body = _build(db, app.settings, newsletter, plan, fmt, scores=as_json)
    if output == "-":
        click.echo(body, nl=False)
        return
    path = Path(output or f"preview-{summary['number']}.{FORMATS[fmt]}")
    try:
        path.write_text(body, encoding="utf-8")
    except OSError as e:
        raise click.ClickException(f"cannot write {path}: {e.strerror}") from None
    summary.update(path=str(path.resolve()), bytes=len(body.encode()))
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(str(path.resolve()))  # alone on stdout: what a script reads
        click.echo(_summary_line(summary), err=True)
        click.echo(f"its window {summary['ends']}", err=True)
    if open_browser:
        webbrowser.open(path.resolve().as_uri())


def _summary_line(summary: dict[str, object]) -> str:
    kb = int(str(summary["html_bytes"])) / 1000
    posts, blogs = int(str(summary["posts"])), int(str(summary["blogs"]))
    return (
        f"issue #{summary['number']}: {counted(posts, 'post')} from {counted(blogs, 'blog')}, "
        f"{kb:.1f} KB of HTML"
    )


def _build(
    db: Database,
    settings: Settings,
    newsletter: Newsletter,
    plan: IssuePlan,
    fmt: str,
    *,
    scores: bool = False,
) -> tuple[dict[str, object], str]:
    from digest.ingest.health import failing_note
    from digest.issue.newsletter import show
    from digest.issue.plan import render_plan
    from digest.storage import utcnow

    health = failing_note(db, utcnow(), settings.newsletter.timezone)
    layout, rendered = render_plan(db, newsletter, plan, health=health)
    if fmt != "eml":
        rendered = rendered.personal(_preview_unsubscribe(settings), _preview_preferences(settings))
    zone = newsletter.timezone
    if plan.ending is None:
        span = show_span(plan.window_start, plan.window_end, zone.key)
        ends = f"{span}: issue #{plan.number} as it was recorded"
    else:
        ends = f"starts {show(plan.window_start, zone)} and {plan.ending.describe(zone)}"
    summary: dict[str, object] = {
        "number": plan.number,
        "window_start": plan.window_start.isoformat(),
        "window_end": plan.window_end.isoformat(),
        "ends": ends,
        "end_kind": plan.ending.how if plan.ending else "recorded",
        "subject": rendered.subject,
        "posts": layout.post_count,
        "blogs": layout.blog_count,
        "items_shown": len(layout.items),
        "lines_shown": len(layout.lines),
        "unlisted": layout.unlisted,
        "html_bytes": len(rendered.html.encode()),
        "intro": plan.intro.source if plan.intro else None,
        "skipped": [post.title for post in plan.skipped],
    }
    if scores:  # 0.08 s more for a week of 6,000 posts (bench/busy_week.py): --json only
        summary.update(_scores(plan, layout))
    if fmt == "text":
        return summary, rendered.text
    if fmt == "eml":
        return summary, _eml(settings, rendered)
    return summary, rendered.html


def _scores(plan: IssuePlan, layout: Layout) -> dict[str, list[dict[str, object]]]:
    """Each post's score and its parts, best first, and the picks: why the issue leads with
    what it does (issue/picks.py)."""
    from digest.issue.picks import NO_SCORE, rank_key

    picked = {pick.item.post_id for pick in layout.picks}
    posts = sorted(plan.posts, key=lambda p: rank_key(p, plan.scores))
    scored = [
        {
            "id": post.id,
            "title": post.title,
            "link": post.link,
            "blog": post.feed_title,
            "section": post.section,
            "pick": post.id in picked,
            "note": plan.notes[post.id].source if post.id in plan.notes else None,
            **plan.scores.get(post.id, NO_SCORE).as_json(),
        }
        for post in posts
    ]
    return {"picks": [s for s in scored if s["pick"]], "scores": scored}


def _preview_unsubscribe(settings: Settings) -> str:
    from digest.delivery.message import unsubscribe_url

    return unsubscribe_url(settings, "preview")


def _preview_preferences(settings: Settings) -> str:
    from digest.delivery.message import preferences_url

    return preferences_url(settings, "preview")


def _eml(settings: Settings, rendered: RenderedEmail) -> str:
    from digest.delivery.message import as_bytes, build_message

    msg = build_message(
        rendered,
        settings,
        to="preview@example.invalid",
        unsubscribe_url=_preview_unsubscribe(settings),
        preferences_url=_preview_preferences(settings),
    )
    return as_bytes(msg).decode("utf-8", "replace")


def _say_empty(db: Database, newsletter: Newsletter, plan: IssuePlan, as_json: bool) -> None:
    """No post in the window: say so, and where the newest post no issue holds lies."""
    from digest.issue.newsletter import day_of
    from digest.issue.plan import newest_unsent

    zone = newsletter.timezone
    span = show_span(plan.window_start, plan.window_end, zone.key)
    newest = newest_unsent(db)
    if newest is None:
        hint = "no post is stored that an issue could hold yet (`digest poll` fetches the feeds)"
    elif newest <= plan.window_start:
        day = day_of(newest, zone)
        hint = (
            f"the newest stored post is from {show_time(newest, zone.key)}: "
            f"`digest preview --as-of {day}` shows the week that ends that day"
        )
    else:
        hint = f"the newest stored post is from {show_time(newest, zone.key)}, after this window"
    if as_json:
        click.echo(
            json.dumps(
                {
                    "number": plan.number,
                    "posts": 0,
                    "window_start": plan.window_start.isoformat(),
                    "window_end": plan.window_end.isoformat(),
                    "newest_unsent": newest.isoformat() if newest else None,
                    "hint": hint,
                }
            )
        )
    else:
        click.echo(f"no new posts from {span}: issue #{plan.number} would not be sent")
        click.echo(hint)


def _serve(app: App, newsletter: Newsletter, when: datetime | None, host: str, port: int) -> None:
    from digest.web.desk import Desk, serve_desk

    # The feed list is followed again on every page: new posts and edited rules show up.
    desk = Desk(app.read_db(sync=False), app.settings, newsletter, when, host)
    desk.refresh = app.sync_feed_list
    serve_desk(desk, host, port, say=click.echo)
