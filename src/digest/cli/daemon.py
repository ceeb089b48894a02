"""Commands: `digest run` (the daemon) and `digest status` (what it is doing)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from digest.cli import cli
from digest.cli.context import App, pass_app

if TYPE_CHECKING:
    from digest.daemon.signals import Signals

log = logging.getLogger(__name__)


@cli.command()
@pass_app
def run(app: App) -> None:
    """Run the daemon: poll the feeds, send each issue at newsletter.send_at, serve the web.

    Polls every feed every feeds.poll_interval (spread out, due feeds first) and sends the
    weekly issue at newsletter.send_at in newsletter.timezone (a weekday and time, or
    'cron: MIN HOUR DAY MONTH WEEKDAY'). A send missed while it was down runs once at start-up
    unless older than newsletter.send_grace. With no smtp.host it still polls and records each
    issue. With web.enabled it serves the web endpoint too. One daemon per database: a second
    one exits with status 1 naming the first. SIGTERM or SIGINT stops it within 10 s, at any
    moment from its start (exit 0). SIGUSR1 sends the issue now, as at a send time.
    Logs at info level unless --log-level says otherwise.
    """
    from digest.daemon.signals import Signals

    with Signals() as signals:  # the first instruction: a signal from here on is noted
        code, abandoned = _run(app, signals)
    app.close()
    if abandoned:
        # Work still runs in threads that Python would wait for: exit now (the next start
        # completes it), as promised within 10 s of SIGTERM.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        sys.exit(code)


def _run(app: App, signals: Signals) -> tuple[int, bool]:
    """Start up step by step, stopping after any step during which SIGTERM or SIGINT came;
    then the daemon: its exit code, and whether it abandoned running work."""
    from digest.daemon.service import Daemon
    from digest.daemon.signals import log_start_up_stop, log_stopped
    from digest.delivery.preflight import check_sending
    from digest.feedlist.opml import read_opml
    from digest.web import check_settings, serve

    def read_settings() -> None:
        check_sending(app.settings)  # settings that would make every message fail DMARC: refused
        if app.settings.web.enabled:
            check_settings(app.settings)  # a webhook that would trust too much: one line, no start

    app.log_as_service()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("reading the settings", read_settings),
        # A missing or broken feed list is fatal at start-up only.
        ("reading the feed list", lambda: read_opml(app.settings.feeds.opml)),
        ("opening the database", lambda: app.db),
    ]
    for doing, step in steps:
        log.debug("start-up: %s", doing)
        step()
        if (received := signals.stop_received()) is not None:
            log_start_up_stop(received, doing)
            log_stopped(abandoned=False)
            return 0, False
    daemon = Daemon(app.db, app.settings, serve=serve, freeze_gc=True)
    return daemon.run(signals), daemon.abandoned


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show the daemon, the next poll and send, the last issue, failing feeds, subscribers.

    Times are shown in newsletter.timezone (in UTC with --json).
    """
    from digest.daemon.status import collect_status, format_status
    from digest.storage import Database, utcnow

    db = app.read_db()
    with Database.read_only():  # no write lock: the report is read beside a running poll
        report = collect_status(db, app.settings, utcnow())
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for line in format_status(report, app.settings.newsletter.timezone):
        click.echo(line)
