"""The daemon's send state machine: which send is due now (on schedule, missed while down, or
interrupted), running it once, and the state in the database that makes restarts remember.

The decisions are schedule.decide_send's; this module loads and stores the state and acts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from digest.config import Settings
from digest.daemon.schedule import (
    SEND_STATE_KEY,
    SendAction,
    SendState,
    decide_send,
    first_state,
    handled,
    started,
)
from digest.delivery.send import send_issue
from digest.delivery.summary import SendSummary
from digest.errors import ConfigError, DigestError
from digest.feedlist.listsync import sync_feed_list
from digest.issue.sendtimes import SendSchedule
from digest.settingvalues import format_duration
from digest.storage import Database, utcnow
from digest.words import counted, utc_time

log = logging.getLogger(__name__)

SEND_RETRY_AFTER = timedelta(minutes=5)
# Sends run back to back in one check at most this many times (a resume, then a missed one).
MAX_SENDS_PER_CHECK = 4


class SendFn(Protocol):
    """What sends an issue: digest.delivery.send.send_issue, or a test's fake."""

    def __call__(
        self,
        db: Database,
        settings: Settings,
        *,
        as_of: datetime | None = ...,
        stop: threading.Event | None = ...,
    ) -> SendSummary: ...


def send_listed(
    db: Database,
    settings: Settings,
    *,
    as_of: datetime | None = None,
    stop: threading.Event | None = None,
) -> SendSummary:
    """The week's send with the rules of the feed list as it is now (synced first, as `digest
    send` does), not as the last poll left them."""
    sync_listed(db, settings, utcnow())
    return send_issue(db, settings, as_of=as_of, stop=stop)


def sync_listed(db: Database, settings: Settings, now: datetime) -> None:
    """The feeds table follows feeds.opml (feedlist/listsync.py); a file that cannot be read
    is a warning, and the feeds stay as last synced."""
    if not settings.feeds.opml.exists():
        return  # no feed list yet: nothing to follow
    try:
        sync_feed_list(db, settings.feeds.opml, now)
    except ConfigError as e:
        log.warning("%s; the feeds stay as last synced", e)


class Sends:
    """Runs the send that is due, once, and records it, so a restart neither repeats a send
    nor forgets one.

    ``report_error(job, message)`` logs a failure (through the daemon's repeat filter);
    ``retry(after)`` asks for another check that much later.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        send: SendFn,
        *,
        stop: threading.Event,
        clock: Callable[[], datetime],
        report_error: Callable[[str, str], None],
        retry: Callable[[timedelta], None],
    ) -> None:
        self.db = db
        self.settings = settings
        self.schedule = SendSchedule.from_settings(settings)
        self.send = send
        self.stop = stop
        self.clock = clock
        self.report_error = report_error
        self.retry = retry
        self.retry_after = SEND_RETRY_AFTER
        self.started_at = clock()  # sends due before this were missed while down
        self._checking = threading.Lock()

    def check(self) -> None:
        """Run the send that is due, if any: on schedule, missed while down, or interrupted."""
        # The scheduled job and a retry may meet; one check at a time, and it loops.
        if not self._checking.acquire(blocking=False):
            return
        try:
            self._run_due()
        finally:
            self._checking.release()

    def send_now(self) -> None:
        """Send the issue now, as if a send time fell now (SIGUSR1): first what check() runs
        (an interrupted send, a missed one), then the issue of the posts since the last one.
        It is recorded like a scheduled send: a restart neither repeats nor forgets it, and the
        next send at newsletter.send_at sends what came after."""
        with self._checking:  # after a check under way, not beside it
            if not self._run_due():
                return
            now = self.clock()
            log.info("send: sending now, as asked", extra={"fields": {"event": "send_now"}})
            self._send_one(SendAction("send", now), self.state(now))

    def _run_due(self) -> bool:
        """Run the sends due (or skip them): True when none is left to do."""
        for _ in range(MAX_SENDS_PER_CHECK):
            if self.stop.is_set():
                return False
            now = self.clock()
            state = self.state(now)
            latest = self.schedule.latest_until(now)
            action = decide_send(now, state, latest, self.settings.newsletter.send_grace)
            if action is None:
                return True
            if action.kind == "skip":
                self._skip(action, state)
            elif not self._send_one(action, state):
                return False
        return False

    def state(self, now: datetime) -> SendState:
        """The stored send state; a database the daemon never ran on starts with the next
        send time (nothing before now was missed)."""
        state = SendState.from_json(self.db.get_meta(SEND_STATE_KEY))
        if state is None:
            state = first_state(now, self.schedule.latest_until(now))
            self._save(state)
        return state

    def _skip(self, action: SendAction, state: SendState) -> None:
        self._save(handled(state, action.due))
        what = "the interrupted send" if action.resume else "the send"
        log.warning(
            "skipping %s due %s: more than newsletter.send_grace (%s) ago",
            what,
            utc_time(action.due),
            format_duration(self.settings.newsletter.send_grace),
            extra={"fields": {"event": "send_skipped", "due": action.due.isoformat()}},
        )

    def _send_one(self, action: SendAction, state: SendState) -> bool:
        """Send the issue due at ``action.due``; True when it is done."""
        if action.resume:
            log.info("send: resuming the interrupted send due %s", utc_time(action.due))
        elif action.due < self.started_at:
            due = utc_time(action.due)
            log.info("send: the send due %s was missed while down; sending now", due)
        self._save(started(state, action.due))
        try:
            summary = self.send(self.db, self.settings, as_of=action.due, stop=self.stop)
        except Exception as e:
            if not isinstance(e, DigestError):
                log.exception("send failed unexpectedly")
            self._retry(action.due, str(e) or type(e).__name__)
            return False
        if not summary.complete():
            if self.stop.is_set():
                log.info("send: stopped part-way; the next start completes it")
            else:
                self._retry(action.due, _not_done(summary))
            return False
        self._save(handled(state, action.due))
        self._log_send(action.due, summary)
        return True

    def _retry(self, due: datetime, error: str) -> None:
        when = format_duration(self.retry_after)
        self.report_error("send", f"the send due {utc_time(due)} failed: {error}; retry in {when}")
        if not self.stop.is_set():
            self.retry(self.retry_after)

    def _log_send(self, due: datetime, summary: SendSummary) -> None:
        fields = {"event": "send", "due": due.isoformat(), **summary.as_json()}
        line = summary.line()
        log.info("send due %s: %s", utc_time(due), line, extra={"fields": fields})

    def _save(self, state: SendState) -> None:
        self.db.set_meta(SEND_STATE_KEY, state.to_json())


def _not_done(summary: SendSummary) -> str:
    """Why a send is not done, for the retry's line: what is left, and the SMTP error."""
    why = summary.reason() or (summary.then.reason() if summary.then is not None else None)
    left = counted(summary.left(), "message")
    return f"{left} not sent yet" + (f": {why}" if why else "")
