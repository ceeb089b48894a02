"""Setting values from text: durations, sizes, numbers, choices, URLs, time zones, paths.

Each parser takes what TOML or an environment variable gave and returns the value, or raises
ValueError saying what it expected; config.py declares which setting uses which.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

T = TypeVar("T")
# A setting's parser: what TOML or a variable gave, to the setting's value (or ValueError).
Parser = Callable[[Any], T]
# Longer than anything a setting means (a poll interval, a grace, a timeout): ten years.
MAX_DURATION = timedelta(days=3650)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``10s``, ``30m``, ``1h30m``, ``2d`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s, 30m, 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        if not text or _DURATION.sub("", text):
            raise ValueError("expected a duration such as 10s, 30m, 1h")
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    if seconds <= 0:
        raise ValueError("must be more than zero")
    if not seconds <= MAX_DURATION.total_seconds():  # (also catches an infinite 1e999s)
        raise ValueError(f"must be at most {format_duration(MAX_DURATION)}")
    return timedelta(seconds=seconds)


def parse_int(low: int, high: int | None = None) -> Parser[int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        try:
            number = int(str(value).strip().replace("_", ""))
        except ValueError:
            raise ValueError("expected a whole number") from None
        if number < low or (high is not None and number > high):
            limit = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {limit}")
        return number

    return parse


def parse_size(value: Any) -> int:
    """``5MB``, ``512KB``, ``1048576``."""
    text = str(value).strip().upper().replace(" ", "")
    match = re.fullmatch(r"(\d+)(B|KB|KIB|MB|MIB|GB|GIB)?", text)
    if not match:
        raise ValueError("expected a size such as 10MB, 512KB or a number of bytes")
    unit = match.group(2) or "B"
    factor = {"B": 1, "KB": 1000, "KIB": 1024, "MB": 10**6, "MIB": 2**20, "GB": 10**9}
    factor["GIB"] = 2**30
    size = int(match.group(1)) * factor[unit]
    if size < 1024:
        raise ValueError("must be at least 1KB")
    return size


def parse_float_or_none(value: Any) -> float | None:
    if value in (None, "", 0, "0"):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a number") from None
    if number <= 0:
        raise ValueError("must be more than zero")
    return number


def parse_str(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError("expected a string")
    text = str(value)
    if "\r" in text or "\n" in text:
        raise ValueError("must be a single line")
    return text


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def parse_choice(*choices: str) -> Parser[str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return text

    return parse


def parse_timezone(value: Any) -> str:
    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as Europe/Berlin or UTC") from None
    return name


def parse_url(value: Any) -> str:
    text = parse_str(value).strip().rstrip("/")
    if not re.match(r"https?://[^/\s]+", text):
        raise ValueError("expected an http:// or https:// URL")
    return text


def parse_database_url(value: Any) -> str:
    """``sqlite:///PATH``, or ``postgresql://`` / ``postgres://`` (what hosting providers hand
    out) for PostgreSQL through psycopg 3, the driver digest installs."""
    text = parse_str(value).strip()
    match = re.match(r"(sqlite|postgresql|postgres)(\+\w+)?://", text)
    if not match:
        raise ValueError("expected sqlite:///PATH or postgresql://USER@HOST/DB")
    if match.group(1) != "sqlite" and match.group(2) in (None, "+psycopg2", "+psycopg"):
        text = "postgresql+psycopg://" + text[match.end() :]
    return text


def parse_send_at(value: Any) -> str:
    """``saturday 08:00`` or ``cron: 0 8 * * sat``; checked again by the scheduler."""
    text = parse_str(value).strip().lower()
    if text.startswith("cron:"):
        if len(text[5:].split()) != 5:
            raise ValueError("a cron expression has five fields: cron: MIN HOUR DAY MONTH WEEKDAY")
        return "cron: " + " ".join(text[5:].split())
    days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    match = re.fullmatch(r"([a-z]+)\s+(\d{1,2}):(\d{2})", text)
    if not match or not any(d.startswith(match.group(1)[:3]) for d in days):
        raise ValueError("expected a weekday and time such as 'saturday 08:00', or 'cron: ...'")
    if int(match.group(2)) > 23 or int(match.group(3)) > 59:
        raise ValueError("the time must be between 00:00 and 23:59")
    day = next(d for d in days if d.startswith(match.group(1)[:3]))
    return f"{day} {int(match.group(2)):02d}:{match.group(3)}"


def parse_optional_path(value: Any) -> Path | None:
    text = parse_str(value).strip()
    return Path(text).expanduser() if text else None


def parse_path(value: Any) -> Path:
    text = parse_str(value).strip()
    if not text:
        raise ValueError("expected a path")
    return Path(text).expanduser()


def parse_networks(value: Any) -> tuple[Network, ...]:
    """``10.0.0.0/8, 127.0.0.1, fd00::/8`` (or a TOML list of them) as networks."""
    parts = value if isinstance(value, list) else parse_str(value).replace(";", ",").split(",")
    networks = []
    for part in map(str, parts):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not an address or a CIDR range") from None
    return tuple(networks)


def parse_mailbox(value: Any) -> str:
    """Exactly one address, with or without a display name: ``Name <a@b.example>``; nothing
    else beside it (an empty ``<>``, a stray comma, text after the ``>``)."""
    text = parse_str(value).strip()
    import email.policy  # only for newsletter.from and friends: 28 ms of every start-up

    header = email.policy.default.header_factory("From", text)
    found = [a.addr_spec for a in header.addresses]
    if len(found) > 1:
        raise ValueError(f"expected exactly one address, not {len(found)}")
    if not found or "@" not in found[0] or not found[0].split("@")[0]:
        raise ValueError("expected an address such as 'Name <name@example.org>'")
    if header.defects or text.endswith(","):
        why = str(header.defects[0]) if header.defects else "a comma after it"
        raise ValueError(f"expected one address such as 'Name <name@example.org>' ({why})")
    return text


def parse_optional_mailbox(value: Any) -> str:
    """parse_mailbox, or empty."""
    return parse_mailbox(value) if parse_str(value).strip() else ""


def parse_optional_address(value: Any) -> str:
    """A bare address (``bounces@news.example.org``: no display name), lower case, or empty."""
    text = parse_str(value).strip()
    if not text:
        return ""
    if not re.fullmatch(r"[A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+", text):
        raise ValueError("expected a bare address such as bounces@news.example.org")
    return text.lower()


def parse_imap_url(value: Any) -> str:
    """``imaps://user@host[:port]/FOLDER`` (TLS) or ``imap://...`` (STARTTLS when offered), or
    empty; a user with an @ is written %40."""
    text = parse_str(value).strip()
    if not text:
        return ""
    if not re.fullmatch(r"imaps?://[^@/\s]+@[^@/\s]+(/[^\s]*)?", text):
        raise ValueError("expected imaps://USER@HOST/FOLDER (a user's @ written %40)")
    return text


def hide_password(url: str) -> str:
    """A URL with its passwords shown as ***, for messages and `digest config`: the user
    part's (``postgresql://digest:s3cret@db/digest`` -> ``postgresql://digest:***@db/digest``)
    and a ``password=`` query parameter (``...?password=s3cret`` -> ``...?password=***``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, mark, query = rest.partition("?")
    if mark:
        query = _PASSWORD_PARAM.sub(r"\1***", query)
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    return f"{scheme}://{netloc}{slash}{path}{mark}{query}"


def url_passwords(url: str) -> list[str]:
    """The passwords written in a URL (its user part's, its ``password=`` parameters'), for
    scrubbing them out of messages that quote it in other words (a driver's error)."""
    _scheme, _sep, rest = url.partition("://")
    rest, _mark, query = rest.partition("?")
    userinfo, at, _host = rest.partition("/")[0].rpartition("@")
    found = [userinfo.split(":", 1)[1]] if at and ":" in userinfo else []
    found += [m.group(2) for m in _PASSWORD_PARAM.finditer(query)]
    decoded = [unquote(p) for p in found]
    return [p for p in dict.fromkeys(found + decoded) if p]


# A password given as a query parameter (psycopg reads libpq's `password=` there too).
_PASSWORD_PARAM = re.compile(r"((?:^|&)password=)([^&]*)", re.I)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
