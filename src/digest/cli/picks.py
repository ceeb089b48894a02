"""Commands: `digest pick URL [--note TEXT]`, `digest skip URL`, `digest intro TEXT` and
`digest picks` (the curator's word on the coming issue)."""

from __future__ import annotations

import json
import sys

import click

from digest.cli import cli
from digest.cli.context import App, pass_app
from digest.types import Verdict

_UNDO = click.option("--undo", is_flag=True, help="Take back the word on this URL.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@cli.command("pick")
@click.argument("url")
@click.option(
    "--note",
    metavar="TEXT",
    help="A line under the pick, in both parts of the mail and on the web page (Markdown: "
    "[links](https://…), *emphasis*). Given empty, the note is taken back.",
)
@_UNDO
@_JSON
@pass_app
def pick_cmd(app: App, url: str, note: str | None, undo: bool, as_json: bool) -> None:
    """Put the post at URL among the coming issue's picks, whatever its score.

    Refused, in one line, when no stored post has that URL, or the coming issue can't hold it
    (it went out already, it is dated outside the coming issue's window, its blog left the
    list).
    """
    _curate(app, url, Verdict.PICK, undo, as_json, note)


@cli.command("skip")
@click.argument("url")
@_UNDO
@_JSON
@pass_app
def skip_cmd(app: App, url: str, undo: bool, as_json: bool) -> None:
    """Keep the post at URL out of the coming issue (it never goes out in a later one either).

    Refused like `digest pick` when the coming issue couldn't hold it anyway.
    """
    _curate(app, url, Verdict.SKIP, undo, as_json, None)


@cli.command("intro")
@click.argument("text", required=False)
@click.option("--clear", is_flag=True, help="Take the intro back.")
@_JSON
@pass_app
def intro_cmd(app: App, text: str | None, clear: bool, as_json: bool) -> None:
    """Open the coming issue with TEXT, a short paragraph under its title ('-' reads it from
    stdin). Markdown: [links](https://…) and *emphasis*; everything else is shown as typed.

    Without TEXT, prints the intro. It is kept with the issue when it is recorded (`digest
    send`, or the daemon's send) and shown on its web page.
    """
    from digest.errors import InputError
    from digest.issue.curation import pending_intro, set_intro
    from digest.issue.inline import parse_inline

    if clear and text is not None:
        raise InputError("intro: give TEXT or --clear, not both")
    if text == "-":
        text = sys.stdin.read()
    if clear:
        set_intro(app.db, None)
    elif text is not None:
        if not text.strip():
            raise InputError("intro: the text is empty (--clear takes the intro back)")
        set_intro(app.db, text)
    current = pending_intro(app.db)
    if as_json:
        click.echo(json.dumps({"intro": current}))
    elif current is None:
        click.echo("no intro for the coming issue" + (" (cleared)" if clear else ""))
    else:
        click.echo(("intro for the coming issue: " if text else "") + parse_inline(current).text)


@cli.command("picks")
@_JSON
@pass_app
def picks_cmd(app: App, as_json: bool) -> None:
    """List the curator's word on the coming issue: its intro, picks with their notes, skips.

    They hold until the issue is recorded (`digest send`, or the daemon's send); `digest
    preview --json` shows each post's score with them applied.
    """
    from digest.issue.curation import pending, pending_intro

    db = app.read_db()
    rows = pending(db)
    intro = pending_intro(db)
    if as_json:
        data = {"intro": intro, "verdicts": [r.as_json() for r in rows]}
        click.echo(json.dumps(data, indent=2))
        return
    if intro is None and not rows:
        click.echo("no intro, picks or skips for the coming issue")
        return
    click.echo(f"intro: {intro}" if intro is not None else "intro: none (`digest intro TEXT`)")
    for row in rows:
        click.echo(f"{row.verdict.value:4}  {row.title or '(no stored post)'}  <{row.url}>")
        if row.note:
            click.echo(f"      note: {row.note}")


def _curate(
    app: App, url: str, verdict: Verdict, undo: bool, as_json: bool, note: str | None
) -> None:
    from digest.issue.curation import curate, forget, post_key
    from digest.issue.newsletter import Newsletter
    from digest.issue.plan import coming_window
    from digest.storage import utcnow

    if undo:
        found = forget(app.db, url)
        summary: dict[str, object] = {"url": post_key(url), "undone": found}
        line = f"{'taken back' if found else 'nothing to take back'}: {post_key(url)}"
    else:
        newsletter = Newsletter.of(app.settings)
        now = utcnow()
        coming = coming_window(app.db, newsletter, now)
        done = curate(app.db, url, verdict, now, coming=coming, zone=newsletter.timezone, note=note)
        summary = done.as_json()
        line = f"{verdict.value} for the coming issue: {done.title or done.url}"
        if done.note:
            line += f" (note: {done.note})"
    click.echo(json.dumps(summary) if as_json else line)
