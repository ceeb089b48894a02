"""Command: `digest preview` (render this week's issue, or any week's, without sending)."""

from __future__ import annotations

import http.server
import json
import webbrowser
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from digest.cli import cli
from digest.cli.context import App, pass_app
from digest.config import Settings
from digest.words import counted, show_span

if TYPE_CHECKING:
    from digest.issue.compose import Layout
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
    "end of that day in newsletter.timezone). Default: the next send time.",
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
    "--serve", is_flag=True, help="Serve the preview on localhost, rendered again on every reload."
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
    port: int,
    as_json: bool,
) -> None:
    """Render an issue without sending or recording anything.

    Shows the feed health note (feeds failing for a week) that subscribers never see. With
    --json, the summary lists the week's picks and every post's score with its parts (rarity,
    links, length, the curator's word) and the signals behind them, best first.
    """
    from digest.issue.plan import parse_as_of, plan_issue

    end = parse_as_of(as_of, app.settings) if as_of else None
    db = app.read_db()
    if serve:
        _serve(app, end, port)
        return
    plan = plan_issue(db, app.settings, end)
    if plan.empty:
        _say_empty(plan, as_json, app.settings.newsletter.timezone)
        return
    summary, body = _build(db, app.settings, plan, fmt, scores=as_json)
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
    if open_browser:
        webbrowser.open(path.resolve().as_uri())


def _summary_line(summary: dict[str, object]) -> str:
    kb = int(str(summary["html_bytes"])) / 1000
    return (
        f"issue #{summary['number']}: {counted(int(str(summary['posts'])), 'post')} from "
        f"{counted(int(str(summary['blogs'])), 'blog')}, "
        f"{kb:.1f} KB of HTML"
    )


def _build(
    db: Database, settings: Settings, plan: IssuePlan, fmt: str, *, scores: bool = False
) -> tuple[dict[str, object], str]:
    from digest.ingest.health import failing_note
    from digest.issue.plan import render_plan
    from digest.storage import utcnow

    health = failing_note(db, utcnow(), settings.newsletter.timezone)
    layout, rendered = render_plan(db, settings, plan, health=health)
    if fmt != "eml":
        rendered = rendered.personal(_preview_unsubscribe(settings), _preview_preferences(settings))
    summary: dict[str, object] = {
        "number": plan.number,
        "window_start": plan.window_start.isoformat(),
        "window_end": plan.window_end.isoformat(),
        "subject": rendered.subject,
        "posts": layout.post_count,
        "blogs": layout.blog_count,
        "items_shown": len(layout.items),
        "html_bytes": len(rendered.html.encode()),
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


def _say_empty(plan: IssuePlan, as_json: bool, zone: str) -> None:
    span = show_span(plan.window_start, plan.window_end, zone)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "number": plan.number,
                    "posts": 0,
                    "window_start": plan.window_start.isoformat(),
                    "window_end": plan.window_end.isoformat(),
                }
            )
        )
    else:
        click.echo(f"no new posts from {span}: issue #{plan.number} would not be sent")


def _serve(app: App, end: datetime | None, port: int) -> None:
    from digest.issue.plan import plan_issue

    db, settings = app.read_db(sync=False), app.settings

    def page() -> bytes:
        app.sync_feed_list()  # again on every reload: new posts and edited rules show up
        plan = plan_issue(db, settings, end)
        if plan.empty:
            return b"<p>No new posts in this window: nothing would be sent.</p>"
        return _build(db, settings, plan, "html")[1].encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the stdlib's name
            try:
                body, status = page(), 200
            except Exception as e:  # noqa: BLE001 - show template errors in the browser
                body, status = f"<pre>{type(e).__name__}: {e}</pre>".encode(), 500
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    click.echo(
        f"serving the preview on http://127.0.0.1:{server.server_port}/ "
        "(rendered again on every reload; Ctrl-C stops)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
