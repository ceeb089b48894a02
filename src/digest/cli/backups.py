"""Commands: `digest backup` and `digest restore` (a SQLite database; PostgreSQL has pg_dump)."""

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
