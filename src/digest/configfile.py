"""Settings from a TOML file and DIGEST_* variables, and back out as TOML or JSON (secrets
masked): config.py declares them, this reads and shows them.

Precedence: defaults < config file (``--config``, ``$DIGEST_CONFIG``, ``./digest.toml``) <
environment (``DIGEST_<SECTION>_<KEY>``).
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from digest.config import SECTIONS, Settings, declared, setting_key
from digest.errors import ConfigError
from digest.settingvalues import format_duration

log = logging.getLogger(__name__)


def find_config_file(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get("DIGEST_CONFIG"):
        return Path(env["DIGEST_CONFIG"])
    default = Path("digest.toml")
    return default if default.exists() else None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text{_encoding_hint(data)}") from None
    import tomllib  # only with a config file: 2 ms of every command's start-up otherwise

    try:
        return tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    except RecursionError:  # tomllib reads nested arrays and tables recursively
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None


def _encoding_hint(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return " (it is UTF-16: save it as UTF-8)"
    return ""


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
            import difflib  # only for a misspelt name

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
            value = f.metadata["parse"](raw)
        except ValueError as e:
            shown = _shown(f, raw)
            raise ConfigError(f"{section}.{key}: bad value {shown!r} ({origin}): {e}") from None
        from_file = path is not None and env_name not in env
        values[f.name] = _beside(value, _folder(path)) if from_file and path else value
    return values


def _folder(config: Path) -> Path:
    """The config file's folder, as given when it is the working directory, else absolute
    (so that messages naming a path say where it is)."""
    return config.parent if str(config.parent) == "." else Path(os.path.abspath(config.parent))


def _beside(value: Any, folder: Path) -> Any:
    """A relative path written in a config file is relative to the file's folder, wherever
    digest runs from (`DIGEST_CONFIG=/srv/digest.toml digest status` reads /srv/digest.db);
    paths from variables and the defaults stay relative to the working directory."""
    if isinstance(value, Path) and not value.is_absolute():
        return folder / value
    if isinstance(value, str) and value.startswith(_SQLITE) and value != _SQLITE + ":memory:":
        file = Path(value.removeprefix(_SQLITE).split("?", 1)[0])
        if file.parts and not file.is_absolute() and not str(file).startswith("~"):
            return _SQLITE + str(folder / value.removeprefix(_SQLITE))
    return value


_SQLITE = "sqlite:///"


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


def as_toml(settings: Settings) -> str:
    """The effective settings as a TOML file that ``--config`` reads back: each setting with
    its help above it; unset ones, and ones shown masked (a secret, a database password),
    commented out, so that reading the file back never plants a mask as a value."""
    lines: list[str] = []
    for section, cls in SECTIONS.items():
        lines.append(f"[{section}]")
        values = getattr(settings, section)
        for f in dataclasses.fields(cls):
            raw = getattr(values, f.name)
            shown = _shown(f, raw)
            lines.append(f"# {f.metadata['doc']}")
            line = f"{setting_key(f)} = {_toml_value(_plain(shown))}"
            if raw is None or raw == "" or raw == ():
                line = f"# {setting_key(f)} ="
            elif shown != raw:
                line = f"# {line}  (set, but not shown)"
            lines.append(line)
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a TOML basic string


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
