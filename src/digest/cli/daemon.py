"""Commands: `digest run` (the daemon) and `digest status` (what it is doing)."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from digest.cli import cli
from digest.cli.context import App, pass_app


@cli.command()
@pass_app
def run(app: App) -> None:
    """Run the daemon: poll the feeds, send each issue at newsletter.send_at, serve the web.

    Polls every feed every feeds.poll_interval (spread out, due feeds first) and sends the
    weekly issue at newsletter.send_at in newsletter.timezone (a weekday and time, or
    'cron: MIN HOUR DAY MONTH WEEKDAY'). A send missed while it was down runs once at start-up
    unless older than newsletter.send_grace. With no smtp.host it still polls and records each
    issue. With web.enabled it serves the web endpoint too. One daemon per database: a second
    one exits with status 1 naming the first. SIGTERM or SIGINT stops it within 10 s.
    Logs at info level unless --log-level says otherwise.
    """
    from digest.daemon.service import Daemon
    from digest.delivery.preflight import check_sending
    from digest.feedlist.opml import read_opml
    from digest.web import check_settings, serve

    app.log_as_service()
    settings = app.settings
    read_opml(settings.feeds.opml)  # a missing or broken feed list is fatal at start-up only
    check_sending(settings)  # settings that would make every message fail DMARC: refused
    if settings.web.enabled:
        check_settings(settings)  # a webhook that would trust too much: one line, no start
    daemon = Daemon(app.db, settings, serve=serve)
    code = daemon.run()
    app.close()
    if daemon.abandoned:
        # Work still runs in threads that Python would wait for: exit now (the next start
        # completes it), as promised within 10 s of SIGTERM.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        sys.exit(code)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show the daemon, the next poll and send, the last issue, failing feeds, subscribers.

    Times are shown in newsletter.timezone (in UTC with --json).
    """
    from digest.daemon.status import collect_status, format_status
    from digest.storage import utcnow

    report = collect_status(app.read_db(), app.settings, utcnow())
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for line in format_status(report, app.settings.newsletter.timezone):
        click.echo(line)
