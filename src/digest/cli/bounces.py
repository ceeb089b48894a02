"""Commands: `digest bounces fetch` (read the bounce mailbox) and `digest bounces list`."""

from __future__ import annotations

import json

import click

from digest.cli import cli
from digest.cli.context import App, pass_app


@cli.group()
def bounces() -> None:
    """Bounces and complaints heard back from inboxes (the bounce mailbox, webhooks).

    A hard bounce marks the subscriber bounced at once; bounces.soft_limit soft ones within
    bounces.soft_window do too; a complaint (a spam report) marks them complained: never
    mailed again.
    """


@bounces.command("fetch")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def bounces_fetch(app: App, as_json: bool) -> None:
    """Read the new messages of bounces.imap_url, classify and apply each, and move the handled
    ones to bounces.done_folder (or delete them: bounces.delete). A message that is no bounce,
    complaint or auto-reply is left in place, counted, and not read again. A message that
    cannot be read at all (malformed, or built to break the reader) is moved to
    bounces.quarantine_folder and counted (`digest bounces list`, `digest status`), and the
    fetch goes on."""
    from digest.bounces.mailbox import fetch_bounces

    summary = fetch_bounces(app.db, app.settings)
    if as_json:
        click.echo(json.dumps(summary.as_json(), indent=2))
        return
    click.echo(summary.line())


@bounces.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--limit", default=100, show_default=True, help="How many, newest first.")
@pass_app
def bounces_list(app: App, as_json: bool, limit: int) -> None:
    """Every bounce and complaint stored: when, who, kind, issue, source, code, diagnostic;
    then the messages of the bounce mailbox set aside as unreadable (the JSON of those is in
    `digest status --json`, bounces_set_aside)."""
    from digest.bounces.events import list_events
    from digest.bounces.quarantine import read_quarantine

    events = list_events(app.read_db(sync=False), limit=limit)
    if as_json:
        click.echo(json.dumps([e.as_json() for e in events], indent=2))
        return
    if not events:
        click.echo("no bounces or complaints yet")
    for event in events:
        click.echo(event.line(app.settings.newsletter.timezone))
    aside = read_quarantine(app.read_db(sync=False))
    if aside.count:
        folder = app.settings.bounces.quarantine_folder
        click.echo(f"{aside.count} unreadable messages set aside (in the folder {folder}):")
        for entry in aside.recent:
            click.echo("  " + entry.line())
