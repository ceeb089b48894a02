"""Commands: `digest pick URL`, `digest skip URL` and `digest picks` (the curator's word on
the coming issue's picks)."""

from __future__ import annotations

import json

import click

from digest.cli import cli
from digest.cli.context import App, pass_app
from digest.types import Verdict

_UNDO = click.option("--undo", is_flag=True, help="Take back the word on this URL.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@cli.command("pick")
@click.argument("url")
@_UNDO
@_JSON
@pass_app
def pick_cmd(app: App, url: str, undo: bool, as_json: bool) -> None:
    """Put the post at URL among the coming issue's picks, whatever its score."""
    _curate(app, url, Verdict.PICK, undo, as_json)


@cli.command("skip")
@click.argument("url")
@_UNDO
@_JSON
@pass_app
def skip_cmd(app: App, url: str, undo: bool, as_json: bool) -> None:
    """Keep the post at URL out of the coming issue's picks (and last of its blog)."""
    _curate(app, url, Verdict.SKIP, undo, as_json)


@cli.command("picks")
@_JSON
@pass_app
def picks_cmd(app: App, as_json: bool) -> None:
    """List the picks and skips the coming issue will follow.

    They hold until the issue is recorded (`digest send`, or the daemon's send); `digest
    preview --json` shows each post's score with them applied.
    """
    from digest.issue.curation import pending

    rows = pending(app.read_db())
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no picks or skips for the coming issue")
    for row in rows:
        click.echo(f"{row.verdict.value:4}  {row.title or '(no stored post yet)'}  <{row.url}>")


def _curate(app: App, url: str, verdict: Verdict, undo: bool, as_json: bool) -> None:
    from digest.issue.curation import curate, forget, post_key
    from digest.storage import utcnow

    if undo:
        found = forget(app.db, url)
        summary: dict[str, object] = {"url": post_key(url), "undone": found}
        line = f"{'taken back' if found else 'nothing to take back'}: {post_key(url)}"
    else:
        done = curate(app.db, url, verdict, utcnow())
        summary = done.as_json()
        line = f"{verdict.value} for the coming issue: {done.title or done.url}"
        if done.title is None:
            line += " (no stored post has this URL yet: it counts once one does)"
    click.echo(json.dumps(summary) if as_json else line)
