"""What every command shares: settings, the database and logging, made on first use."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click

from digest.config import Settings
from digest.configfile import load_settings

if TYPE_CHECKING:  # SQLAlchemy costs a third of a second to import: only commands that need it
    from digest.storage import Database

P = ParamSpec("P")
R = TypeVar("R")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="seconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class UTCFormatter(logging.Formatter):
    """Log lines stamped in UTC (ISO 8601, ``Z``), whatever the machine's zone: logs and JSON
    keep UTC, people's commands the newsletter's zone."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime(datefmt or "%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(UTCFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; that's noise next to our per-round lines.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    # flufl.bounce names every detector it tries at INFO: ~20 lines per non-standard bounce.
    logging.getLogger("flufl.bounce").setLevel(max(logging.WARNING, root.level))


class App:
    """Lazily loaded settings and database for one CLI invocation."""

    def __init__(self, config_file: str | None, log_level: str, log_format: str) -> None:
        self.config_file = config_file
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None
        self._db: Database | None = None
        setup_logging(log_level, log_format)

    def log_as_service(self) -> None:
        """A service's log is its progress report: info level, unless --log-level was given."""
        root = click.get_current_context().find_root()
        if root.get_parameter_source("log_level") == click.core.ParameterSource.DEFAULT:
            setup_logging("info", self.log_format)
            logging.getLogger("alembic").setLevel(logging.WARNING)  # "running upgrade" chatter

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings

    @property
    def db(self) -> Database:
        """The database, created (and migrated) when it is not there yet."""
        if self._db is None:
            from digest.storage import Database

            self._db = Database(self.settings.database.url)
        return self._db

    def read_db(self, *, sync: bool = True) -> Database:
        """The database of a command that only reads: never created (NoDatabaseError when
        none is there) and, with ``sync``, following the feed list first (feeds.opml edits
        count at once). A feed list that cannot be read is a warning: the database shows as
        it is."""
        if self._db is None:
            from digest.storage import Database

            self._db = Database(self.settings.database.url, create=False)
        if sync:
            self.sync_feed_list()
        return self._db

    def sync_feed_list(self) -> None:
        """Make the database follow feeds.opml, if it does not already (a stat and a hash)."""
        from digest.errors import ConfigError
        from digest.feedlist.listsync import sync_feed_list
        from digest.storage import utcnow

        if not self.settings.feeds.opml.exists():
            return  # no feed list yet (before the first `opml build`): nothing to follow
        try:
            sync_feed_list(self.db, self.settings.feeds.opml, utcnow())
        except ConfigError as e:
            click.echo(f"warning: {e}; the feeds are shown as last synced", err=True)

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None


def pass_app(f: Callable[Concatenate[App, P], R]) -> Callable[P, R]:
    """Like click.pass_obj, typed for App."""

    @functools.wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return f(click.get_current_context().find_object(App), *args, **kwargs)  # type: ignore[arg-type]

    return wrapper
