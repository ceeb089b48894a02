"""Settings: each declared once with its default, parser and help (configfile.py loads them
from TOML and the environment, and shows them)."""

from __future__ import annotations

import dataclasses
import logging
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from digest import HOME_PAGE, __version__
from digest.errors import ConfigError
from digest.settingvalues import (
    Network,
    Parser,
    hide_password,
    parse_bool,
    parse_choice,
    parse_database_url,
    parse_duration,
    parse_float_or_none,
    parse_imap_url,
    parse_int,
    parse_mailbox,
    parse_networks,
    parse_optional_address,
    parse_optional_mailbox,
    parse_optional_path,
    parse_path,
    parse_send_at,
    parse_size,
    parse_str,
    parse_timezone,
    parse_url,
)

T = TypeVar("T")


def setting(
    default: T,
    parse: Parser[T],
    doc: str,
    *,
    secret: bool = False,
    key: str = "",
    shown: Callable[[T], object] | None = None,
) -> T:
    """Declare one setting: its default, how to parse it and what it means. A ``secret`` one is
    shown as ******** (`digest config`, error messages); ``shown`` masks part of a value.

    Typed: mypy checks that the default and what the parser returns are of the field's type
    (a ``timeout: timedelta = setting(30, parse_duration, ...)`` is an error)."""
    meta = {"parse": parse, "doc": doc, "secret": secret, "key": key, "shown": shown}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


log = logging.getLogger(__name__)
# Unconfirmed sign-ups are deleted after a week: no confirmation link may outlive them.
UNCONFIRMED_KEPT = timedelta(days=7)


def parse_auto_bool(value: Any) -> bool | None:
    """true/false, or "auto" (and empty) for the default that depends on other settings."""
    if isinstance(value, str) and value.strip().lower() in ("", "auto"):
        return None
    return parse_bool(value)


def parse_confirm_ttl(value: Any) -> timedelta:
    ttl = parse_duration(value)
    if ttl > UNCONFIRMED_KEPT:
        raise ValueError("must be at most 7d (unconfirmed sign-ups are deleted after a week)")
    return ttl


DEFAULT_SUBJECT = "{name} #{number}: {lead}"
SUBJECT_FIELDS = ("name", "number", "lead", "posts", "blogs")


def parse_subject(value: Any) -> str:
    """A subject template: text with {name}, {number}, {lead}, {posts} and {blogs}."""
    text = " ".join(parse_str(value).split())
    if not text:
        raise ValueError("must not be empty")
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as e:
        raise ValueError(f"{e} (write {{{{ or }}}} for a brace)") from None
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in SUBJECT_FIELDS or spec or conversion:
            shown = (
                "{"
                + name
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            names = ", ".join("{" + f + "}" for f in SUBJECT_FIELDS)
            raise ValueError(f"unknown placeholder {shown}: use {names}")
    return text


@dataclass(frozen=True)
class DatabaseSettings:
    """[database]: where digest keeps everything."""

    url: str = setting(
        "sqlite:///digest.db",
        parse_database_url,
        "SQLAlchemy URL (SQLite or PostgreSQL)",
        shown=hide_password,
    )


@dataclass(frozen=True)
class FeedsSettings:
    """[feeds]: the feed list and how it is polled."""

    opml: Path = setting(Path("feeds.opml"), parse_path, "the OPML file that lists the feeds")
    poll_interval: timedelta = setting(
        timedelta(hours=1), parse_duration, "how often each feed is polled"
    )
    concurrency: int = setting(32, parse_int(1, 1000), "requests in flight at once")
    per_host: int = setting(
        2, parse_int(1, 100), "requests in flight at once per host (*.github.io counts as one)"
    )
    timeout: timedelta = setting(
        timedelta(seconds=20), parse_duration, "timeout of one request, end to end"
    )
    max_bytes: int = setting(
        15 * 2**20, parse_size, "largest feed body read; bigger ones are an error"
    )
    user_agent: str = setting(
        f"digest/{__version__} (+{HOME_PAGE})", parse_str, "User-Agent sent with every request"
    )
    workers: int = setting(0, parse_int(0, 64), "parser processes (0: one per core)")
    fetch_pages: bool = setting(
        True, parse_bool, "fetch a new teaser-only post's page once, for its reading time"
    )
    allow_networks: tuple[Network, ...] = setting(
        (),
        parse_networks,
        "private ranges feeds may reach, comma-separated CIDRs (default: public addresses only)",
    )


@dataclass(frozen=True)
class NewsletterSettings:
    """[newsletter]: the issue, its sender and when it goes out."""

    title: str = setting("Weekend Reading", parse_str, "the newsletter's name")
    description: str = setting(
        "A weekly email with the week's posts from Machine Learning and Systems blogs.",
        parse_str,
        "one or two sentences on what readers get (the sign-up page, the archive, emails)",
    )
    timezone: str = setting("UTC", parse_timezone, "IANA zone of send_at and of dates shown")
    send_at: str = setting(
        "saturday 08:00", parse_send_at, "weekday and time, or 'cron: MIN HOUR DAY MONTH WDAY'"
    )
    send_grace: timedelta = setting(
        timedelta(days=1), parse_duration, "a send missed by more than this is skipped"
    )
    base_url: str = setting(
        "http://127.0.0.1:8080", parse_url, "public URL of the web endpoint (links in mails)"
    )
    from_addr: str = setting(
        "Weekend Reading <digest@localhost>", parse_mailbox, "From: address", key="from"
    )
    reply_to: str = setting("", parse_optional_mailbox, "Reply-To: address (optional)")
    secret_key: str = setting(
        "", parse_str, "signs unsubscribe tokens; generated and stored when unset", secret=True
    )
    secret_key_file: Path | None = setting(
        None, parse_optional_path, "file holding the secret key (instead of secret_key)"
    )
    templates: Path = setting(Path("templates"), parse_path, "folder of Jinja2 templates")
    max_kb: int = setting(90, parse_int(20, 1000), "size budget of the HTML part, in KB")
    picks: int = setting(
        4, parse_int(0, 10), "posts in the week's picks at the top of an issue (0: none)"
    )
    max_per_blog: int = setting(
        3,
        parse_int(1, 50),
        "a blog with more posts in a week shows its best this many and 'and N more'",
    )
    bounce_address: str = setting(
        "", parse_optional_address, "envelope sender (Return-Path) of every mail (default: from)"
    )
    verp: bool = setting(True, parse_bool, "tag bounce_address per subscriber: bounces+TAG@...")
    # The issue's own words (issues 21, 24).
    subject: str = setting(
        DEFAULT_SUBJECT,
        parse_subject,
        "subject template: {name}, {number}, {lead} (the first pick's title), {posts}, {blogs}",
    )
    postal_address: str = setting(
        "", parse_str, "postal address in every issue's footer (CAN-SPAM asks senders for one)"
    )


@dataclass(frozen=True)
class SmtpSettings:
    """[smtp]: the mail server that sends each issue."""

    host: str = setting("", parse_str, "SMTP server; empty turns sending off")
    port: int = setting(25, parse_int(1, 65535), "SMTP port")
    security: str = setting("none", parse_choice("none", "starttls", "tls"), "none|starttls|tls")
    username: str = setting("", parse_str, "SMTP user (optional)")
    password: str = setting("", parse_str, "SMTP password", secret=True)
    password_file: Path | None = setting(None, parse_optional_path, "file holding the password")
    rate: float | None = setting(None, parse_float_or_none, "messages per second (optional)")
    connections: int = setting(
        2, parse_int(1, 16), "SMTP connections at once; also the most duplicates a crash can cause"
    )
    timeout: timedelta = setting(timedelta(seconds=30), parse_duration, "SMTP socket timeout")
    dkim_selector: str = setting("", parse_str, "DKIM selector (signing is off when unset)")
    dkim_domain: str = setting("", parse_str, "DKIM d= domain")
    dkim_key_file: Path | None = setting(None, parse_optional_path, "DKIM private key (PEM)")


@dataclass(frozen=True)
class DeliverySettings:
    """[delivery]: how long the per-message delivery log is kept."""

    keep_log: timedelta = setting(
        timedelta(days=180),
        parse_duration,
        "how long an issue's per-message delivery log is kept; then folded into its counts",
    )


@dataclass(frozen=True)
class BouncesSettings:
    """[bounces]: the bounce mailbox and when an address is dropped."""

    imap_url: str = setting(
        "",
        parse_imap_url,
        "bounce mailbox, imaps://USER@HOST/INBOX (empty: none)",
        shown=hide_password,
    )
    password: str = setting("", parse_str, "password of that mailbox", secret=True)
    password_file: Path | None = setting(None, parse_optional_path, "file holding that password")
    done_folder: str = setting("digest-done", parse_str, "folder handled messages go to")
    quarantine_folder: str = setting(
        "digest-quarantine", parse_str, "folder unreadable messages are set aside in"
    )
    ca_file: Path | None = setting(
        None, parse_optional_path, "CA certificates (PEM) to trust for the mailbox's TLS"
    )
    delete: bool = setting(False, parse_bool, "delete handled messages instead of moving them")
    interval: timedelta = setting(timedelta(minutes=15), parse_duration, "how often it is read")
    soft_limit: int = setting(5, parse_int(1, 1000), "soft bounces in soft_window that bounce")
    soft_window: timedelta = setting(
        timedelta(days=30), parse_duration, "soft bounces count this long"
    )


@dataclass(frozen=True)
class WebhooksSettings:
    """[webhooks]: bounce and complaint reports from the mail provider."""

    ses: bool = setting(False, parse_bool, "Amazon SES events through SNS at /webhooks/ses")
    ses_topic_arn: str = setting("", parse_str, "the one SNS topic accepted (needed with ses)")
    postmark: bool = setting(False, parse_bool, "Postmark bounce webhooks at /webhooks/postmark")
    postmark_user: str = setting("postmark", parse_str, "basic auth user Postmark sends")
    postmark_password: str = setting(
        "", parse_str, "its basic auth password (at least 16 characters)", secret=True
    )


@dataclass(frozen=True)
class WebSettings:
    """[web]: the sign-up pages, the archive, health and metrics."""

    enabled: bool = setting(True, parse_bool, "serve the web endpoint inside `digest run`")
    host: str = setting("127.0.0.1", parse_str, "address the web endpoint listens on")
    port: int = setting(8080, parse_int(0, 65535), "port of the web endpoint")
    signup: bool | None = setting(
        None,
        parse_auto_bool,
        "readers' sign-up form at /subscribe (default: on when newsletter.base_url is https)",
    )
    confirm_ttl: timedelta = setting(
        timedelta(hours=48), parse_confirm_ttl, "how long a confirmation link works (at most 7d)"
    )
    signup_rate: int = setting(
        10, parse_int(1, 10_000), "sign-ups per client address per hour; more are dropped"
    )
    welcome: bool = setting(
        True, parse_bool, "mail a short welcome with the latest issue's link once confirmed"
    )
    # Each entry carries a whole issue (up to 90 KB): 20 keep the feed under 2 MB.
    feed_issues: int = setting(
        20, parse_int(1, 100), "issues /feed.xml carries, the newest finished ones"
    )


@dataclass(frozen=True)
class Settings:
    """Every section's settings (configfile.load_settings builds them)."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    feeds: FeedsSettings = field(default_factory=FeedsSettings)
    newsletter: NewsletterSettings = field(default_factory=NewsletterSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    bounces: BouncesSettings = field(default_factory=BouncesSettings)
    webhooks: WebhooksSettings = field(default_factory=WebhooksSettings)
    web: WebSettings = field(default_factory=WebSettings)

    @property
    def sending_enabled(self) -> bool:
        return bool(self.smtp.host)

    @property
    def signup_enabled(self) -> bool:
        """web.signup, else on exactly when newsletter.base_url is https (a form that takes
        addresses over plain http, or on a test address, is off unless asked for)."""
        if self.web.signup is not None:
            return self.web.signup
        return self.newsletter.base_url.lower().startswith("https://")

    def smtp_password(self) -> str:
        return _password(self.smtp.password, self.smtp.password_file, "smtp.password_file")

    def bounces_password(self) -> str:
        path = self.bounces.password_file
        return _password(self.bounces.password, path, "bounces.password_file")

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some values changed, e.g. ``replace(feeds={"timeout": ...})``."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changed)


def _password(given: str, path: Path | None, name: str) -> str:
    if path is None:
        return given
    try:
        return path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {path}: {e.strerror}") from e


@dataclass(frozen=True)
class SettingInfo:
    """One declared setting, for `digest config` and docs."""

    section: str
    name: str
    key: str
    doc: str
    secret: bool

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"DIGEST_{self.section}_{self.key}".upper()


SECTIONS: dict[str, type] = {
    "database": DatabaseSettings,
    "feeds": FeedsSettings,
    "newsletter": NewsletterSettings,
    "smtp": SmtpSettings,
    "delivery": DeliverySettings,
    "bounces": BouncesSettings,
    "webhooks": WebhooksSettings,
    "web": WebSettings,
}


def setting_key(f: dataclasses.Field[Any]) -> str:
    """The key a setting has in files and variables (newsletter.from is the field from_addr)."""
    return str(f.metadata.get("key") or f.name)


def declared() -> list[SettingInfo]:
    """Every setting, in declaration order."""
    return [
        SettingInfo(section, f.name, setting_key(f), f.metadata["doc"], f.metadata["secret"])
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
    ]
