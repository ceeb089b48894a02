"""Commands: `digest opml build|import|export`, the feeds file and the blog lists behind it."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from digest.cli import cli
from digest.cli.context import App, pass_app
from digest.errors import ConfigError, InputError
from digest.feedlist.bloglists import BlogEntry, build_sources, read_lists
from digest.feedlist.discover import discover_sites
from digest.feedlist.opml import merge_sources, parse_opml, read_opml, write_opml
from digest.feedlist.remote import fetch_list, is_url, screen
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
@click.option("--prune", is_flag=True, help="Drop feeds of the existing file that no list names.")
@click.option("--strict", is_flag=True, help="Exit 1 when a blog is left without a feed.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_app
def build_cmd(
    app: App,
    lists_dir: Path,
    output: Path | None,
    no_discover: bool,
    prune: bool,
    strict: bool,
    as_json: bool,
) -> None:
    """Build the OPML file from the blog lists.

    Pinned feeds are used as they are; the others are discovered from the blog's home page
    (alternate links, then /feed, /rss.xml, /atom.xml, ...). Blogs whose feed is not found are
    reported and left out. Feeds already in the file that no list names (e.g. imported ones) are
    kept unless --prune is given.
    """
    target = output or app.settings.feeds.opml
    entries = read_lists(lists_dir)
    if no_discover:
        sources, unresolved = build_sources(entries, lambda _site: None)
    else:
        sources, unresolved = _discover_all(app, entries)
    pinned = {url for entry in entries for url in entry.feeds}
    from_lists = len(sources)
    kept: list[FeedSource] = []
    if not prune and target.exists():
        sources, _added = merge_sources(sources, read_opml(target))
        kept = sources[from_lists:]
    failed = strict and bool(unresolved)
    if not failed:  # --strict: all or nothing, never a file with blogs missing
        _write_atomically(target, write_opml(sources))
    summary = {
        "file": str(target),
        "written": not failed,
        "feeds": len(sources),
        "blogs": len(entries),
        "pinned": sum(1 for s in sources[:from_lists] if s.url in pinned),
        "discovered": sum(1 for s in sources[:from_lists] if s.url not in pinned),
        "kept_from_file": [s.url for s in kept],
        "unresolved": unresolved,
    }
    _report_build(summary, as_json, no_discover)
    if failed:
        sys.exit(1)


@opml_group.command("import")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_app
def import_cmd(app: App, source: str, as_json: bool) -> None:
    """Add the feeds of an OPML file to feeds.opml.

    SOURCE is any feed reader's OPML: a file, `-` for stdin, or an http(s) URL (fetched under
    the network policy, feeds.allow_networks). Feeds already present stay as they are; feeds
    on addresses the policy refuses (127.0.0.1, localhost, 10.x...) are skipped with a line
    each; the feeds.opml file is created when missing.
    """
    feeds = app.settings.feeds
    if is_url(source):
        name, data = source, fetch_list(source, feeds)
    else:
        name, data = ("<stdin>" if source == "-" else source), _read_input(Path(source))
    read, notes = screen(parse_opml(data, origin=name), feeds)
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
    import it.
    """
    data = write_opml(read_opml(app.settings.feeds.opml))
    if str(output) == "-":
        with click.open_file("-", "wb") as stdout:
            stdout.write(data)
    else:
        _write_atomically(output, data)
        click.echo(f"wrote {output}", err=True)


def _discover_all(app: App, entries: list[BlogEntry]) -> tuple[list[FeedSource], list[str]]:
    found = discover_sites([e.site for e in entries if not e.feeds], app.settings.feeds)
    return build_sources(entries, found.get)


def _report_build(summary: dict[str, Any], as_json: bool, no_discover: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not summary["written"]:
        click.echo(
            f"--strict: {len(summary['unresolved'])} blog(s) without a feed; "
            f"{summary['file']} left as it was",
            err=True,
        )
    else:
        click.echo(
            f"wrote {summary['file']}: {summary['feeds']} feeds ({summary['pinned']} pinned and "
            f"{summary['discovered']} discovered from {summary['blogs']} blogs, "
            f"{len(summary['kept_from_file'])} kept from the file)"
        )
    for url in summary["kept_from_file"]:
        click.echo(f"kept (no list names it; --prune drops it): {url}", err=True)
    why = "not pinned, and discovery is off" if no_discover else "no feed found"
    for blog in summary["unresolved"]:
        click.echo(f"warning: {blog}: {why}", err=True)


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
