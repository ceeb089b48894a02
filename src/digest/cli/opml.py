"""Commands: `digest opml build|import|export`, the feeds file and the blog lists behind it."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from digest.cli import cli
from digest.cli.context import App, pass_app
from digest.errors import ConfigError, InputError
from digest.feedlist.bloglists import BlogEntry, build_sources, follow_lists, read_lists
from digest.feedlist.discover import Discovered, discover_sites
from digest.feedlist.opml import merge_sources, parse_opml, read_opml, write_opml
from digest.feedlist.remote import ImportedRules, fetch_list, is_url, screen
from digest.types import FeedSource
from digest.words import counted


@cli.group("opml")
def opml_group() -> None:
    """The OPML file of feeds (the `feeds.opml` setting): build, import, export."""


@opml_group.command("build")
@click.option(
    "--lists",
    "lists_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("lists"),
    show_default=True,
    help="Folder of *.md blog lists.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="OPML file to write (default: the feeds.opml setting).",
)
@click.option("--no-discover", is_flag=True, help="Use pinned feeds only; no network.")
@click.option(
    "--keep-unlisted",
    is_flag=True,
    help="Keep the file's feeds that no list names (added by hand or by `opml import`).",
)
@click.option("--prune", is_flag=True, hidden=True)  # what build does now; older scripts pass it
@click.option("--strict", is_flag=True, help="Exit 1 when a blog is left without a feed.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_app
def build_cmd(
    app: App,
    lists_dir: Path,
    output: Path | None,
    no_discover: bool,
    keep_unlisted: bool,
    prune: bool,
    strict: bool,
    as_json: bool,
) -> None:
    """Build the OPML file from the blog lists: the lists are the source of truth.

    Pinned feeds are used as they are; the others are discovered from the blog's home page
    (alternate links, then /feed, /rss.xml, /atom.xml, ...). A blog whose feed is not found
    keeps the feed the file already has for it, else it is reported and left out. A feed of
    the file that no list names any more is removed from it, with a line saying so (its posts
    stay in the database; the feed becomes inactive); --keep-unlisted keeps such feeds
    instead (ones added by hand or by `digest opml import`).
    """
    target = output or app.settings.feeds.opml
    entries = read_lists(lists_dir)
    found = Discovered({}, {}) if no_discover else _discover_all(app, entries)
    built, unresolved = build_sources(entries, found.feeds.get)
    unfound = [e.site for e in entries if not e.feeds and not found.feeds.get(e.site)]
    existing = read_opml(target) if target.exists() else []
    result = follow_lists(built, unfound, existing, keep_unlisted=keep_unlisted and not prune)
    kept_sites = {s.site_url for s in result.kept}
    failed = strict and bool(unresolved)
    if not failed:  # --strict: all or nothing, never a file with blogs missing
        _write_atomically(target, write_opml(result.sources))
    pinned = {url for entry in entries for url in entry.feeds}
    summary: dict[str, Any] = {
        "file": str(target),
        "written": not failed,
        "feeds": len(result.sources),
        "blogs": len(entries),
        "pinned": sum(1 for s in built if s.url in pinned),
        "discovered": sum(1 for s in built if s.url not in pinned),
        "kept_from_file": [s.url for s in result.kept],
        "kept_unlisted": [s.url for s in result.unlisted] if result.keep_unlisted else [],
        "removed": [s.url for s in result.removed],
        "unresolved": unresolved,
    }
    _report_build(summary, as_json, no_discover)
    for source in result.removed:
        click.echo(
            f"removed (no list names it; its posts stay in the database): {_named(source)}",
            err=True,
        )
    for source in result.kept:
        click.echo(f"kept from the file (its blog is listed): {_named(source)}", err=True)
    for url in summary["kept_unlisted"]:
        click.echo(f"kept (no list names it; --keep-unlisted): {url}", err=True)
    for entry in entries:
        if entry.site in unfound and entry.site not in kept_sites:
            why = "not pinned, and discovery is off" if no_discover else found.why_not(entry.site)
            click.echo(f"warning: {entry.name} ({entry.site}): {why}", err=True)
    if failed:
        sys.exit(1)


@opml_group.command("import")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.option(
    "--keep-rules",
    is_flag=True,
    help="Keep the file's feed rules (skip, section, sectionIf) instead of dropping them.",
)
@pass_app
def import_cmd(app: App, source: str, as_json: bool, keep_rules: bool) -> None:
    """Add the feeds of an OPML file to feeds.opml.

    SOURCE is any feed reader's OPML: a file, `-` for stdin, or an http(s) URL (fetched under
    the network policy, feeds.allow_networks). Feeds already present stay as they are; feeds
    on addresses the policy refuses (127.0.0.1, localhost, 10.x...) are skipped with a line
    each; the feeds.opml file is created when missing. The file's rules (`skip`, `section`,
    `sectionIf`: regular expressions run on every post) are dropped, with a line showing
    each feed's: read them, then import again with --keep-rules to keep them (a rule that is
    too long or not an RE2 expression is dropped even then).
    """
    feeds = app.settings.feeds
    if is_url(source):
        name, data = source, fetch_list(source, feeds)
    else:
        name, data = ("<stdin>" if source == "-" else source), _read_input(Path(source))
    rules = ImportedRules(keep=keep_rules)
    read, notes = screen(parse_opml(data, origin=name, read_rules=rules), feeds)
    notes = rules.notes + notes
    target = feeds.opml
    existing = read_opml(target) if target.exists() else []
    merged, added = merge_sources(existing, read)
    if added or not target.exists():
        _write_atomically(target, write_opml(merged))
    skipped = sum(1 for note in notes if note.startswith("skipped "))
    summary = {
        "file": str(target),
        "read": len(read) + skipped,
        "added": added,
        "already_present": len(read) - added,
        "skipped": skipped,
        "rules_dropped": rules.dropped,
        "feeds": len(merged),
    }
    for note in notes:
        click.echo(note, err=True)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"{name}: {counted(added, 'feed')} added, {summary['already_present']} already "
            "present"
            + (f", {skipped} skipped" if skipped else "")
            + (f", the rules of {counted(rules.dropped, 'feed')} dropped" if rules.dropped else "")
            + f"; {target} lists {counted(len(merged), 'feed')}"
        )


@opml_group.command("export")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=Path("-"),
    help="File to write; `-` (the default) is stdout.",
)
@pass_app
def export_cmd(app: App, output: Path) -> None:
    """Write the feeds of feeds.opml as OPML 2.0.

    The output is normalised (one folder outline per category level) and any feed reader can
    import it. A feed that moved for good (it answered 301 or 308 to a poll) is written at its
    new URL, with a line saying so.
    """
    moved = _moved(app)
    sources = [replace(s, url=moved.get(s.url, s.url)) for s in read_opml(app.settings.feeds.opml)]
    for old, new in moved.items():
        click.echo(f"moved permanently: {old} -> {new} (exported at its new URL)", err=True)
    data = write_opml(sources)
    if str(output) == "-":
        with click.open_file("-", "wb") as stdout:
            stdout.write(data)
    else:
        _write_atomically(output, data)
        click.echo(f"wrote {output}", err=True)


def _discover_all(app: App, entries: list[BlogEntry]) -> Discovered:
    return discover_sites([e.site for e in entries if not e.feeds], app.settings.feeds)


def _moved(app: App) -> dict[str, str]:
    """Feeds that moved (301, 308) as the database knows them; none without a database."""
    from digest.errors import NoDatabaseError
    from digest.ingest.feedsync import moved_feeds

    try:
        return moved_feeds(app.read_db(sync=False))
    except NoDatabaseError:
        return {}


def _named(source: FeedSource) -> str:
    return f"{source.url} ({source.title})" if source.title else source.url


def _report_build(summary: dict[str, Any], as_json: bool, no_discover: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    if not summary["written"]:
        missing = len(summary["unresolved"])
        click.echo(
            f"--strict: {counted(missing, 'blog')} without a feed; "
            f"{summary['file']} left as it was",
            err=True,
        )
        return
    kept = len(summary["kept_from_file"]) + len(summary["kept_unlisted"])
    removed = len(summary["removed"])
    click.echo(
        f"wrote {summary['file']}: {counted(summary['feeds'], 'feed')} ({summary['pinned']} "
        f"pinned and {summary['discovered']} discovered from {counted(summary['blogs'], 'blog')}"
        f", {kept} kept from the file, {removed} removed)"
    )


def _read_input(file: Path) -> bytes:
    if str(file) == "-":
        with click.open_file("-", "rb") as stdin:
            data: bytes = stdin.read()
            return data
    try:
        return file.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{file}: no such file") from None
    except OSError as e:
        raise InputError(f"cannot read {file}: {e.strerror}") from e


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace path in one step, so a reader (the poller) never sees half a file."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from e
