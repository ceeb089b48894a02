"""Commands: `digest subscribers ...`, `digest send` and `digest serve`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from digest.cli import cli
from digest.cli.context import App, pass_app
from digest.errors import InputError
from digest.types import SubscriberStatus
from digest.words import show_time

if TYPE_CHECKING:
    from digest.delivery.dryrun import Recipient
    from digest.delivery.subscribers import SubscriberInfo


@cli.group()
def subscribers() -> None:
    """Add, remove, list and import subscribers.

    Addresses are validated and normalised (lower case); anything that could inject a mail
    header (a line break, several addresses) is refused. Sections: ml, systems, other, or all.
    """


@subscribers.command("add")
@click.argument("email")
@click.option("--name", help="Display name (in the To: header).")
@click.option("--sections", help="Comma-separated sections to receive: ml,systems (default all).")
@click.option("--force", is_flag=True, help="Subscribe again someone who reported us as spam.")
@click.option(
    "--confirm",
    is_flag=True,
    help="Mail EMAIL a link to confirm instead; they stay pending until they press it.",
)
@pass_app
def subscribers_add(
    app: App, email: str, name: str | None, sections: str | None, force: bool, confirm: bool
) -> None:
    """Subscribe EMAIL (again, if they had left: you typed it, you vouch for them), or with
    --confirm send them the confirmation email that sign-ups on the web get. Someone who
    reported the newsletter as spam (complained) is refused without --force."""
    if confirm:
        _add_with_confirmation(app, email, name, sections, force)
        return
    from digest.delivery.subscribers import add_subscriber

    info, outcome = add_subscriber(app.db, email, name=name, sections=sections, force=force)
    chosen = ",".join(info.sections) if info.sections else "all sections"
    click.echo(f"{outcome}: {info.email} ({chosen})")


def _add_with_confirmation(
    app: App, email: str, name: str | None, sections: str | None, force: bool
) -> None:
    from digest.delivery.confirmmail import send_confirmation, valid_for
    from digest.delivery.consent import sign_up, undo_mail
    from digest.delivery.subscribers import (
        info_by_email,
        parse_address,
        parse_name,
        parse_sections,
    )
    from digest.delivery.tokens import signing_key
    from digest.errors import ConfigError
    from digest.storage import utcnow
    from digest.types import ConsentSource, EventKind, SubscriberStatus

    if not app.settings.sending_enabled:
        raise ConfigError("--confirm mails a link, and smtp.host is empty: sending is off")
    address, display = parse_address(email)
    chosen = parse_sections(sections)
    existing = info_by_email(app.db, address)
    if existing is not None and existing.status == SubscriberStatus.ACTIVE:
        click.echo(f"already active: {address} (nothing sent)")
        return
    if existing is not None and existing.status == SubscriberStatus.COMPLAINED and not force:
        raise InputError(f"{address} reported the newsletter as spam: nothing sent (--force)")
    key = signing_key(app.db, app.settings)
    now = utcnow()
    signup = sign_up(
        app.db,
        address,
        name=parse_name(name or display),
        sections=chosen,
        now=now,
        source=ConsentSource.CLI,
    )
    if signup.mail != EventKind.CONFIRM_SENT or signup.event_id is None:
        raise InputError(f"{address} got 3 confirmation emails in the last day: try tomorrow")
    info = info_by_email(app.db, address)
    assert info is not None
    try:
        send_confirmation(app.settings, key, info, signup.mail, now)
    except BaseException:
        undo_mail(app.db, signup.event_id)
        raise
    ttl = valid_for(app.settings.web.confirm_ttl)
    click.echo(f"pending: {address} (confirmation email sent; its link works for {ttl})")


@subscribers.command("export")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def subscribers_export(app: App, email: str, as_json: bool) -> None:
    """Print everything stored about EMAIL: the subscriber, their consent record (how and when
    they came, when and from which address they confirmed), every change with its time, and
    every delivery."""
    from digest.delivery.consent import export

    data = export(app.read_db(sync=False), email)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if isinstance(value, list):
            click.echo(f"{key}:")
            for item in value:
                click.echo("  " + "  ".join(str(v) for v in item.values() if v is not None))
        elif isinstance(value, dict):
            click.echo(f"{key}: " + ", ".join(f"{k} {v}" for k, v in value.items()))
        else:
            click.echo(f"{key}: {value}")


@subscribers.command("forget")
@click.argument("email")
@pass_app
def subscribers_forget(app: App, email: str) -> None:
    """Erase EMAIL and everything stored about it (its history and delivery log), keeping only
    a keyed hash of the address: a later import leaves it out, and only its owner's own
    confirmation (the sign-up form, or `add --confirm`) brings it back."""
    from digest.delivery.consent import forget
    from digest.storage import utcnow

    if forget(app.db, email, utcnow()):
        click.echo(f"forgotten: {email.strip().lower()} (only a hash of the address is kept)")
    else:
        click.echo(
            f"no subscriber {email.strip().lower()}; its hash is kept all the same, so an "
            "import won't add it"
        )


@subscribers.command("remove")
@click.argument("email")
@pass_app
def subscribers_remove(app: App, email: str) -> None:
    """Delete EMAIL and its delivery history (to stop mail but keep the record, let them
    unsubscribe instead)."""
    from digest.delivery.subscribers import remove_subscriber

    info = remove_subscriber(app.db, email)
    click.echo(f"removed: {info.email}")


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option(
    "--status",
    type=click.Choice([str(s) for s in SubscriberStatus]),
    help="Only subscribers in this status.",
)
@pass_app
def subscribers_list(app: App, as_json: bool, status: str | None) -> None:
    """List subscribers: email, name, status (with when they left), sections."""
    from digest.delivery.subscribers import list_subscribers

    rows = list_subscribers(app.read_db(sync=False), SubscriberStatus(status) if status else None)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no subscribers yet: `digest subscribers add EMAIL`")
        return
    zone = app.settings.newsletter.timezone
    table = [("EMAIL", "STATUS", "SECTIONS", "NAME")] + [
        (r.email, _state(r, zone), ",".join(r.sections) if r.sections else "all", r.name or "")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for email, state, sections, name in table:
        line = f"{email:{widths[0]}}  {state:{widths[1]}}  {sections:{widths[2]}}  {name}"
        click.echo(line.rstrip())


def _state(subscriber: SubscriberInfo, zone: str) -> str:
    """The status, with when they left ("unsubscribed 2026-11-30 10:00 CET")."""
    if subscriber.unsubscribed_at is None:
        return str(subscriber.status)
    return f"{subscriber.status} {show_time(subscriber.unsubscribed_at, zone)}"


@subscribers.command("show")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def subscribers_show(app: App, address: str, as_json: bool) -> None:
    """One subscriber: status, sections, and every bounce and complaint heard about them."""
    from digest.bounces.events import list_events
    from digest.delivery.subscribers import find_subscriber

    db = app.read_db(sync=False)
    info = find_subscriber(db, address)
    events = list_events(db, email=info.email, limit=1000)
    if as_json:
        data = {**info.as_json(), "events": [e.as_json() for e in events]}
        click.echo(json.dumps(data, indent=2))
        return
    sections = ",".join(info.sections) if info.sections else "all"
    click.echo(f"{info.email}  {info.status}  sections: {sections}  {info.name or ''}".rstrip())
    zone = app.settings.newsletter.timezone
    click.echo(f"subscribed {show_time(info.created_at, zone)}")
    if info.unsubscribed_at is not None:
        click.echo(f"left {show_time(info.unsubscribed_at, zone)}")
    click.echo(f"bounces and complaints: {len(events) or 'none'}")
    for event in events:
        click.echo("  " + event.line(zone))


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--sections", help="Sections for rows that don't name their own (default all).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def subscribers_import(app: App, file: Path, sections: str | None, as_json: bool) -> None:
    """Import a CSV with a header row (an email column; name and sections optional), or a
    file of one address per line (`-` reads stdin). Existing subscribers are skipped whatever
    their status, so an old list never re-subscribes people who left."""
    from digest.delivery.importing import import_subscribers
    from digest.delivery.subscribers import parse_sections

    parse_sections(sections)  # a bad --sections is said as such, not as the file's fault
    try:
        if str(file) == "-":
            summary = import_subscribers(app.db, sys.stdin.buffer, sections=sections)
        else:
            with _open(file) as stream:
                summary = import_subscribers(app.db, stream, sections=sections)
    except InputError as e:
        raise InputError(f"{file}: {e}") from None
    if as_json:
        click.echo(json.dumps(summary.as_json(), indent=2))
        return
    for number, _raw, why in summary.invalid:
        click.echo(f"line {number}: {why}", err=True)
    if summary.unshown:
        click.echo(f"... and {summary.unshown} more invalid lines", err=True)
    click.echo(summary.line())


@cli.command()
@click.option("--as-of", "as_of", metavar="DATETIME", help="Send the issue whose week ends then.")
@click.option("--dry-run", is_flag=True, help="Print who would get what; send nothing.")
@click.option("--to", "to", metavar="EMAIL", help="Send a test copy to EMAIL; record nothing.")
@click.option(
    "--wait", is_flag=True, help="If another send is running, wait for it instead of refusing."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def send(
    app: App, as_of: str | None, dry_run: bool, to: str | None, wait: bool, as_json: bool
) -> None:
    """Build this week's issue, record it and deliver it to every active subscriber.

    Safe to run again: each issue reaches each subscriber once (a delivery log per issue and
    subscriber); after a crash it sends only what was not sent (the messages in flight at the
    crash, one per connection of smtp.connections, may arrive twice). With no smtp.host it
    records the issue and sends nothing. One send at a time per database: while another runs
    (the daemon's or another `digest send`), this one refuses naming it, or waits (--wait).
    Exit status 1 when deliveries are left for a later run.
    """
    from digest.delivery.preflight import check_sending
    from digest.delivery.send import send_issue
    from digest.issue.plan import parse_as_of

    when = parse_as_of(as_of, app.settings) if as_of else None
    app.sync_feed_list()  # the rules of feeds.opml as it is now, not as of the last poll
    if not dry_run:
        check_sending(app.settings)
    out = _JsonRecipients() if as_json else None
    each = out.add if out is not None else _print_recipient
    summary = send_issue(
        app.db, app.settings, as_of=when, dry_run=dry_run, to=to, wait=wait, each_recipient=each
    )
    if out is not None:
        out.close(summary.as_json())
    else:
        click.echo(summary.line(app.settings.newsletter.timezone))
    if summary.left():
        raise click.exceptions.Exit(1)


def _print_recipient(r: Recipient) -> None:
    sections = ",".join(r.sections) if isinstance(r.sections, list) else "all"
    what = r.subject if r.gets else f"nothing ({r.why_not})"
    click.echo(f"{r.email}  [{sections}]  {what}")


class _JsonRecipients:
    """`digest send --json`: the summary as one JSON object, a dry run's recipients first in
    it, each written as it comes (a million readers are not held to be printed at the end)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, r: Recipient) -> None:
        opening = '{\n  "recipients": [\n    ' if self.count == 0 else ",\n    "
        click.echo(opening + json.dumps(r.as_json()), nl=False)
        self.count += 1

    def close(self, summary: dict[str, Any]) -> None:
        if self.count == 0:
            none: dict[str, list[object]] = {"recipients": []}
            recipients = none if summary.get("mode") == "dry-run" else {}
            click.echo(json.dumps({**recipients, **summary}, indent=2))
            return
        rest = json.dumps(summary, indent=2)
        click.echo("\n  ],\n" + rest.removeprefix("{\n"))


@cli.command()
@click.option("--host", help="Listen address (default: web.host).")
@click.option("--port", type=int, help="Port (default: web.port).")
@pass_app
def serve(app: App, host: str | None, port: int | None) -> None:
    """Serve the web endpoint: the archive, its feed, sign-up, preferences, unsubscribe.

    POST /unsubscribe/TOKEN unsubscribes at once (RFC 8058); GET shows a page with a button,
    since link scanners follow GETs. /issues/N is the web version of issue N, / the archive,
    /feed.xml its Atom feed. With web.signup: /subscribe (double opt-in through
    /confirm/TOKEN); /preferences/TOKEN always. For monitoring: /healthz (JSON; 503 when the
    database is unreachable or the daemon's heartbeat is stale) and /metrics (Prometheus).
    Logs a line per request at info level (tokens cut out) unless --log-level says otherwise.
    SIGTERM or SIGINT stops it: requests in flight finish, queued emails go (or wait for the
    next start), and it exits 0.
    """
    from digest.web.server import serve_until_signalled

    app.log_as_service()  # a line per request: the access log
    settings = app.settings
    if host is not None or port is not None:
        settings = settings.replace(
            web={
                "host": host or settings.web.host,
                "port": settings.web.port if port is None else port,
            }
        )
    click.echo(
        f"serving on http://{settings.web.host}:{settings.web.port} (Ctrl-C stops)", err=True
    )
    serve_until_signalled(app.db, settings)


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
