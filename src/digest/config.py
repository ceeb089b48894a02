"""Settings: each declared once with its default, parser and help; loaded from TOML and env.

Precedence: defaults < config file (``--config``, ``$DIGEST_CONFIG``, ``./digest.toml``) <
environment (``DIGEST_<SECTION>_<KEY>``).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from digest import HOME_PAGE, __version__
from digest.errors import ConfigError
from digest.settingvalues import (
    Network,
    Parser,
    format_duration,
    hide_password,
    parse_bool,
    parse_choice,
    parse_database_url,
    parse_duration,
    parse_float_or_none,
    parse_int,
    parse_mailbox,
    parse_networks,
    parse_optional_mailbox,
    parse_optional_path,
    parse_path,
    parse_send_at,
    parse_size,
    parse_str,
    parse_timezone,
    parse_url,
)


def setting(
    default: Any,
    parse: Parser,
    doc: str,
    *,
    secret: bool = False,
    key: str = "",
    shown: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare one setting: its default, how to parse it and what it means. A ``secret`` one is
    shown as ******** (`digest config`, error messages); ``shown`` masks part of a value."""
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


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting(
        "sqlite:///digest.db",
        parse_database_url,
        "SQLAlchemy URL (SQLite or PostgreSQL)",
        shown=hide_password,
    )


@dataclass(frozen=True)
class FeedsSettings:
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
    title: str = setting("Weekend Reading", parse_str, "the newsletter's name")
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


@dataclass(frozen=True)
class SmtpSettings:
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
class WebSettings:
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


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    feeds: FeedsSettings = field(default_factory=FeedsSettings)
    newsletter: NewsletterSettings = field(default_factory=NewsletterSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
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

    def secret_key(self) -> str:
        """newsletter.secret_key, else what newsletter.secret_key_file holds, else "" (then
        the key generated and stored in the database signs the links)."""
        path = self.newsletter.secret_key_file
        if self.newsletter.secret_key or path is None:
            return self.newsletter.secret_key
        try:
            key = path.read_text().strip()
        except OSError as e:
            raise ConfigError(
                f"newsletter.secret_key_file: cannot read {path}: {e.strerror}"
            ) from e
        if not key:
            raise ConfigError(f"newsletter.secret_key_file: {path} is empty")
        return key

    def smtp_password(self) -> str:
        path = self.smtp.password_file
        if path is None:
            return self.smtp.password
        try:
            return path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"smtp.password_file: cannot read {path}: {e.strerror}") from e

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some values changed, e.g. ``replace(feeds={"timeout": ...})``."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changed)


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
    "web": WebSettings,
}


def _key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key") or f.name)


def declared() -> list[SettingInfo]:
    """Every setting, in declaration order."""
    return [
        SettingInfo(section, f.name, _key(f), f.metadata["doc"], f.metadata["secret"])
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
    ]


def find_config_file(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get("DIGEST_CONFIG"):
        return Path(env["DIGEST_CONFIG"])
    default = Path("digest.toml")
    return default if default.exists() else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e


def load_settings(
    config_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build Settings from defaults, the config file and the environment."""
    env = os.environ if env is None else env
    path = find_config_file(config_file, env)
    data = read_toml(path) if path else {}
    unknown_sections = set(data) - set(SECTIONS)
    if unknown_sections:
        raise ConfigError(
            f"unknown section [{sorted(unknown_sections)[0]}] in {path}; "
            f"known: {', '.join(SECTIONS)}"
        )
    warn_unknown_variables(env)
    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        given = data.get(section, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{section}] in {path} must be a table")
        sections[section] = cls(**_parse_section(section, cls, given, env, path))
    return Settings(**sections)


def warn_unknown_variables(env: Mapping[str, str]) -> None:
    """A warning for each DIGEST_* variable that names no setting (a misspelt TOML key is an
    error; a misspelt variable would otherwise change nothing, silently)."""
    known = {info.env for info in declared()} | {"DIGEST_CONFIG"}
    for name in sorted(env):
        if name.startswith("DIGEST_") and name not in known and not name.startswith(_TEST):
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else "; `digest config --keys` lists them"
            log.warning("environment variable %s names no setting%s", name, hint)


# DIGEST_TEST_* is the test suite's own (DIGEST_TEST_DATABASE_URL), never a setting.
_TEST = "DIGEST_TEST_"


def _parse_section(
    section: str, cls: type, given: dict[str, Any], env: Mapping[str, str], path: Path | None
) -> dict[str, Any]:
    fields = {(f.metadata.get("key") or f.name): f for f in dataclasses.fields(cls)}
    unknown = set(given) - set(fields)
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(
            f"unknown setting {section}.{name} in {path}; known: "
            + ", ".join(f"{section}.{k}" for k in fields)
        )
    values: dict[str, Any] = {}
    for key, f in fields.items():
        env_name = f"DIGEST_{section}_{key}".upper()
        if env_name in env:
            raw, origin = env[env_name], f"environment variable {env_name}"
        elif key in given:
            raw, origin = given[key], f"{section}.{key} in {path}"
        else:
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as e:
            shown = _shown(f, raw)
            raise ConfigError(f"{section}.{key}: bad value {shown!r} ({origin}): {e}") from None
    return values


def effective(settings: Settings, *, show_secrets: bool = False) -> dict[str, dict[str, Any]]:
    """Settings as plain data, secrets masked, for `digest config`."""
    out: dict[str, dict[str, Any]] = {}
    for section, cls in SECTIONS.items():
        values = getattr(settings, section)
        out[section] = {}
        for f in dataclasses.fields(cls):
            value = getattr(values, f.name)
            if not show_secrets:
                value = _shown(f, value)
            out[section][f.metadata.get("key") or f.name] = _plain(value)
    return out


def _shown(f: dataclasses.Field[Any], value: Any) -> Any:
    """A value as messages may show it: secrets masked, a database password hidden."""
    if f.metadata["secret"] and value:
        return "********"
    shown = f.metadata.get("shown")
    return shown(value) if shown and isinstance(value, str) else value


def _plain(value: Any) -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if isinstance(value, Path):
        return str(value)
    return value
