"""Commands: `digest backup` and `digest restore` (a SQLite database; PostgreSQL has pg_dump),
`digest migrate --to URL` (the whole database into another, e.g. SQLite to PostgreSQL), and
`digest prune` (what is kept only for a while: old delivery logs, unconfirmed sign-ups)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from digest.cli import cli
from digest.cli.context import App, pass_app


@cli.command()
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the copy (replaced if it exists, once the copy is complete).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@pass_app
def backup(app: App, output: Path, as_json: bool) -> None:
    """Copy the SQLite database to FILE, consistently, while the daemon runs.

    Uses SQLite's online backup API: a poll or a send may go on meanwhile; the copy is one
    moment's database, checked, readable by its owner only, and held by no process. On
    PostgreSQL use pg_dump (the README shows the command). Prints the copy's size and what it
    holds.
    """
    from digest.backup import backup as make_backup

    copy = make_backup(app.settings.database.url, output)
    if as_json:
        click.echo(json.dumps(copy.as_json()))
    else:
        click.echo(f"backed up to {copy.line()}")


@cli.command()
@click.argument("backup_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace a database that holds data.")
@click.option("--json", "as_json", is_flag=True, help="Print what was restored as JSON.")
@pass_app
def restore(app: App, backup_file: Path, force: bool, as_json: bool) -> None:
    """Make the database (database.url, a SQLite file) a copy of the backup FILE.

    Refused while a daemon, a send or a poll holds the database (stop the daemon first),
    and over a database that holds data unless --force. A backup from an older digest is
    brought up to this version's schema. On PostgreSQL use pg_restore.
    """
    from digest.backup import restore as restore_backup
    from digest.storage import utcnow

    copy = restore_backup(app.settings.database.url, backup_file, force=force, now=utcnow())
    if as_json:
        click.echo(json.dumps({**copy.as_json(), "from": str(backup_file)}))
    else:
        click.echo(f"restored {backup_file} into {copy.line()}")


@cli.command()
@click.option(
    "--to",
    "to_url",
    required=True,
    metavar="URL",
    help="The database to copy into: postgresql://USER@HOST/DB or sqlite:///PATH; empty.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was copied as JSON.")
@pass_app
def migrate(app: App, to_url: str, as_json: bool) -> None:
    """Copy the whole database (database.url) into another, in one transaction.

    Feeds, posts, issues and their numbering, subscribers with their history, the delivery
    log, curations, bounces and the signing key (old unsubscribe links keep working) all go,
    ids kept. The target is created and brought to this version's schema if need be, and
    must hold nothing. Refused while a daemon, a send or a poll holds the database: stop the
    daemon first, then point database.url at the new database and start it again.
    """
    from digest.errors import InputError
    from digest.settingvalues import parse_database_url
    from digest.storage import utcnow
    from digest.transfer import migrate as copy_database

    try:
        target = parse_database_url(to_url)
    except ValueError as e:
        raise InputError(f"--to: {e}") from None
    transfer = copy_database(app.read_db(sync=False), target, utcnow())
    if as_json:
        click.echo(json.dumps(transfer.as_json()))
        return
    click.echo(transfer.line())
    click.echo(
        "next: stop digest, point database.url (DIGEST_DATABASE_URL) at the new database, start "
        "it again",
        err=True,
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
@pass_app
def prune(app: App, as_json: bool) -> None:
    """Delete what is kept only for a while, as the daemon does every hour.

    Each sent issue's per-message delivery log, once delivery.keep_log (180 days) has passed
    since the issue was made: its counts (sent, failed, bounces, complaints) stay, for /metrics,
    `digest status` and the bounce rates; its rows go, in small transactions. And the sign-ups
    left unconfirmed for a week. Safe while the daemon runs.
    """
    from digest.delivery.consent import prune_unconfirmed
    from digest.delivery.retention import fold_old_logs
    from digest.storage import utcnow

    now = utcnow()
    folded = fold_old_logs(app.db, now, app.settings.delivery.keep_log)
    signups = prune_unconfirmed(app.db, now)
    if as_json:
        click.echo(json.dumps({**folded.as_json(), "unconfirmed_signups_deleted": signups}))
    else:
        click.echo(folded.line())
        click.echo(f"sign-ups left unconfirmed for a week: {signups} deleted")
