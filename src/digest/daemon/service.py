"""The long-running service behind `digest run`: polls the feeds, sends each issue, serves the web.

Everything it must remember across restarts is in the database: each feed's next poll
(``feeds.due_at``), the send state (``meta``, see schedule.SendState) and the lock that keeps
one daemon per database. The decisions are in schedule.py; sends.py runs the sends; this
module runs the jobs and the web thread, and stops them.
"""

from __future__ import annotations

import gc
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from digest.bounces.mailbox import FetchSummary, fetch_bounces
from digest.config import Settings
from digest.daemon import startup
from digest.daemon.polling import RoundPoller
from digest.daemon.schedule import (
    RUNNING_SETTINGS_KEY,
    RunningSettings,
    poll_tick,
    start_spread,
)
from digest.daemon.sends import SendFn, Sends, send_listed, sync_listed
from digest.daemon.signals import SEND_NOW_SIGNAL, Signals, log_start_up_stop, log_stopped
from digest.daemon.status import never_polled
from digest.delivery.consent import prune_unconfirmed
from digest.delivery.retention import fold_old_logs
from digest.errors import DigestError, LockedError
from digest.ingest.feedstore import bring_forward, spread_overdue_polls
from digest.ingest.health import list_feeds
from digest.ingest.summary import PollSummary
from digest.locks import HEARTBEAT_EVERY, DaemonLock
from digest.storage import Database, utcnow
from digest.words import counted

log = logging.getLogger(__name__)

# SIGTERM to exit must take under 10 s: running work gets this long, then it is abandoned.
STOP_DEADLINE_S = 7.0
WEB_STOP_S = 1.5
REPEAT_ERROR_AFTER = timedelta(minutes=10)
HEALTH_REPORT_EVERY = timedelta(days=1)
PRUNE_EVERY = timedelta(hours=1)  # how often to look for sign-ups a week unconfirmed
PruneFn = Callable[[Database, datetime], int]


class PollFn(Protocol):
    def __call__(
        self,
        db: Database,
        settings: Settings,
        *,
        due_only: bool = ...,
        stop: threading.Event | None = ...,
    ) -> PollSummary: ...


BouncesFn = Callable[[Database, Settings], FetchSummary]


class ServeFn(Protocol):
    def __call__(
        self, db: Database, settings: Settings, *, stop: threading.Event | None = ...
    ) -> None: ...


class Daemon:
    """One `digest run`: the lock, the scheduler and its jobs, the web thread, and shutdown.

    ``poll``, ``send`` and ``prune`` default to a RoundPoller, sends.send_listed and
    digest.delivery.consent.prune_unconfirmed; ``serve`` (the web endpoint, an edge above
    the daemon) is given by the CLI, and without it web.enabled serves nothing. Tests pass
    fakes. ``freeze_gc`` (the CLI's, a process of its own): after the first poll round, what
    is alive then is frozen out of the garbage collector's walks (see _freeze_once).
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        poll: PollFn | None = None,
        send: SendFn = send_listed,
        serve: ServeFn | None = None,
        bounces: BouncesFn = fetch_bounces,
        prune: PruneFn = prune_unconfirmed,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        freeze_gc: bool = False,
    ) -> None:
        self.db = db
        self.settings = settings
        self.stop = stop or threading.Event()
        self.clock = clock
        self.rng = rng or random.Random()
        self.lock = DaemonLock(db)
        self.sends = Sends(
            db,
            settings,
            send,
            stop=self.stop,
            clock=clock,
            report_error=self._log_error,
            retry=self._retry_sends,
        )
        self.exit_code = 0
        # Work still running at the stop deadline: the caller must exit without joining threads.
        self.abandoned = False
        self._round_poller: RoundPoller | None = None
        if poll is None:
            self._round_poller = poll = RoundPoller(settings)
        self._poll = poll
        self._serve = serve
        self._bounces = bounces
        self._prune = prune
        self._scheduler: Any = None
        self._web: threading.Thread | None = None
        self._web_error: BaseException | None = None
        self._running = 0
        self._running_cond = threading.Condition()
        self._last_errors: dict[str, tuple[str, datetime]] = {}
        self._last_health: datetime | None = None
        self._ready = threading.Event()
        self._freeze_gc = freeze_gc

    # --- life cycle ------------------------------------------------------------------------

    def run(self, signals: Signals | None = None) -> int:
        """Run until ``stop`` is set: the exit code. With ``signals`` (the CLI's, installed at
        its first instruction) SIGTERM or SIGINT sets it and SIGUSR1 sends now (see
        send_now); without, the caller holds ``stop`` (tests run the daemon in a thread).

        Raises LockedError when another daemon holds the database.
        """
        self.lock.acquire()
        try:
            received = signals.stop_received() if signals else None
            if received is not None:
                log_start_up_stop(received, "taking the daemon lock")
            else:
                self._start()
                self._ready.set()
                self._wait(signals)
        finally:
            self.stop.set()
            self._shutdown()
            self._release_lock()
        log_stopped(self.abandoned)
        return self.exit_code

    def wait_ready(self, timeout: float) -> bool:
        """For tests running the daemon in a thread: wait until its jobs are scheduled."""
        return self._ready.wait(timeout)

    def _start(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        now = self.clock()
        self.sends.started_at = now
        interval = self.settings.feeds.poll_interval
        sync_listed(self.db, self.settings, now)  # the feed list's new feeds, counted below
        overdue = spread_overdue_polls(self.db, now, start_spread(interval), self.rng)
        brought = bring_forward(self.db, now, interval, self.rng)
        self.db.set_meta(RUNNING_SETTINGS_KEY, RunningSettings.of(self.settings).to_json())
        state = self.sends.state(now)
        self._start_web()
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=6)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        tick = poll_tick(interval)
        started_at = datetime.now(UTC)

        def every(name: str, run: Callable[[], None], period: timedelta, first: datetime) -> None:
            trigger = IntervalTrigger(seconds=period.total_seconds(), timezone=UTC)
            scheduler.add_job(self._job(name, run), trigger, id=name, next_run_time=first)

        every("poll", self._poll_round, tick, started_at)
        # The send job fires at each send time, and once at start-up for a missed send.
        scheduler.add_job(
            self._job("send", self.check_sends),
            self.sends.schedule.trigger,
            id="send",
            next_run_time=started_at,
        )
        if self.settings.bounces.imap_url:  # the bounce mailbox, read every bounces.interval
            every("bounces", self._bounce_round, self.settings.bounces.interval, started_at)
        every("prune", self._prune_unconfirmed, PRUNE_EVERY, started_at)
        every("fold", self._fold_logs, PRUNE_EVERY, started_at)
        every("heartbeat", self._heartbeat, HEARTBEAT_EVERY, started_at + HEARTBEAT_EVERY)
        self._scheduler = scheduler
        scheduler.start()
        startup.report(self.settings, self.sends.schedule, self.clock(), tick, state, self._web)
        startup.report_moved(self.settings.feeds.poll_interval, overdue, brought)
        startup.report_first_polls(never_polled(self.db), interval)

    def _wait(self, signals: Signals | None) -> None:
        while not self.stop.is_set():
            if signals is None:
                self.stop.wait(0.5)
            else:  # a stop from another thread (heartbeat, web) is seen within 0.5 s
                for received in signals.wait(0.5):
                    self._on_signal(received)
            web = self._web
            if web is not None and not web.is_alive() and not self.stop.is_set():
                detail = f": {self._web_error}" if self._web_error else ""
                log.error(
                    "the web endpoint on %s:%s stopped%s; stopping (set web.port, or "
                    "web.enabled = false)",
                    self.settings.web.host,
                    self.settings.web.port,
                    detail,
                )
                self.exit_code = 1
                self.stop.set()
        log.info("stopping: no new work; running work gets %.0f s to finish", STOP_DEADLINE_S)

    def _on_signal(self, received: signal.Signals) -> None:
        if received == SEND_NOW_SIGNAL:
            log.info("%s received: sending now", received.name)
            self.send_now()
            return
        # Stop first, then say so: whoever reads the line may count on the stop being set.
        self.stop.set()
        log.info("%s received", received.name)

    def _shutdown(self) -> None:
        deadline = time.monotonic() + STOP_DEADLINE_S
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        with self._running_cond:
            while self._running and time.monotonic() < deadline:
                self._running_cond.wait(max(0.01, deadline - time.monotonic()))
            running = self._running
        if running:
            self.abandoned = True
            log.warning(
                "abandoning %d running job(s) at the stop deadline; the next start completes them",
                running,
            )
        elif self._round_poller is not None:
            self._round_poller.close()  # no poll runs: its parser processes can go
        if self._web is not None:
            self._web.join(timeout=max(0.1, deadline + WEB_STOP_S - time.monotonic()))
            if self._web.is_alive():
                self.abandoned = True
                log.warning("the web endpoint did not stop in time; abandoning it")

    def _release_lock(self) -> None:
        try:
            self.lock.release()
        except DigestError as e:
            log.error("could not release the daemon lock: %s", e)

    # --- jobs ------------------------------------------------------------------------------

    def _job(self, name: str, fn: Callable[[], None]) -> Callable[[], None]:
        """A job: counted for shutdown, not started once stopping, its errors logged."""

        def run() -> None:
            with self._running_cond:
                if self.stop.is_set():
                    return
                self._running += 1
            began = self.clock()
            try:
                fn()
                # A clean run: the next failure is news again, logged at once.
                last = self._last_errors.get(name)
                if last is not None and last[1] < began:
                    del self._last_errors[name]
            except DigestError as e:
                self._log_error(name, str(e))
            except Exception as e:  # a failing job must not end the daemon
                log.exception("%s failed unexpectedly: %s", name, e)
            finally:
                with self._running_cond:
                    self._running -= 1
                    self._running_cond.notify_all()

        return run

    def _log_error(self, job: str, message: str) -> None:
        # The same failure every tick (an unreadable OPML file) is logged every ten minutes.
        now = self.clock()
        last = self._last_errors.get(job)
        if last and last[0] == message and now - last[1] < REPEAT_ERROR_AFTER:
            return
        self._last_errors[job] = (message, now)
        log.error("%s: %s", job, message, extra={"fields": {"event": job, "error": message}})

    def _poll_round(self) -> None:
        try:
            summary = self._poll(self.db, self.settings, due_only=True, stop=self.stop)
        except LockedError as e:
            # A `digest poll` by hand: its feeds are fresh; the next tick looks again.
            log.info("poll round skipped: %s", e)
            return
        finally:
            self._freeze_once()
        fields = {"event": "poll", **summary.as_json(), "elapsed_s": round(summary.elapsed_s, 2)}
        if summary.feeds:
            log.info("poll round: %s", summary.line(), extra={"fields": fields})
        else:
            log.debug("poll round: no feed due", extra={"fields": fields})
        self._report_health()

    def _freeze_once(self) -> None:
        """After the first round (the poll path's imports loaded, its client and loop made):
        garbage collected, then every object alive frozen. The collector's full collections
        walked them all again and again: ~40 ms each, one every ~10 rounds of 200 feeds,
        0.017-0.021 ms per feed polled, 2-3 % of a round's CPU (bench/rounds.py, the
        collector's own clock), none once frozen."""
        if not self._freeze_gc:
            return
        self._freeze_gc = False
        gc.collect()
        gc.freeze()

    def _bounce_round(self) -> None:
        self._bounces(self.db, self.settings)  # it logs what it read and did

    def _prune_unconfirmed(self) -> None:
        if deleted := self._prune(self.db, self.clock()):
            log.info("deleted %s left unconfirmed for a week", counted(deleted, "sign-up"))

    def _fold_logs(self) -> None:
        keep = self.settings.delivery.keep_log
        folded = fold_old_logs(self.db, self.clock(), keep, stop=self.stop.is_set)
        if folded.rows or folded.issues:
            log.info("%s", folded.line(), extra={"fields": {"event": "fold", **folded.as_json()}})

    def _heartbeat(self) -> None:
        if not self.lock.heartbeat():
            log.error("another daemon took over the database lock: stopping")
            self.exit_code = 1
            self.stop.set()

    def _report_health(self) -> None:
        """Log the feeds failing for 7 days or more: after the first round, then daily."""
        now = self.clock()
        if self._last_health is not None and now - self._last_health < HEALTH_REPORT_EVERY:
            return
        self._last_health = now
        for feed in list_feeds(self.db, now):
            if not (feed.active and feed.long_failing and feed.failing_since):
                continue
            log.warning(
                "feed failing for %d days: %s (%s)",
                (now - feed.failing_since).days,
                feed.url,
                (feed.error or feed.status).splitlines()[0][:200],
                extra={
                    "fields": {
                        "event": "feed_health",
                        "url": feed.url,
                        "failing_since": feed.failing_since.isoformat(),
                        "error": feed.error,
                    }
                },
            )

    # --- sends -----------------------------------------------------------------------------

    def check_sends(self) -> None:
        """Run the send that is due, if any (see sends.Sends.check)."""
        self.sends.check()

    def send_now(self) -> None:
        """Send the issue now, as at a send time (SIGUSR1; see sends.Sends.send_now), in a
        job of its own: it waits for a send under way, and a stop ends it like any send."""
        if self._scheduler is None or self.stop.is_set():
            return
        self._scheduler.add_job(
            self._job("send", self.sends.send_now), id="send-now", replace_existing=True
        )

    def _retry_sends(self, after: timedelta) -> None:
        from apscheduler.triggers.date import DateTrigger

        if self._scheduler is None or self.stop.is_set():
            return
        self._scheduler.add_job(
            self._job("send", self.check_sends),
            DateTrigger(run_date=datetime.now(UTC) + after, timezone=UTC),
            id="send-retry",
            replace_existing=True,
        )

    # --- the web endpoint ------------------------------------------------------------------

    def _start_web(self) -> None:
        serve = self._serve
        if not self.settings.web.enabled or serve is None:
            return

        def target() -> None:
            try:
                serve(self.db, self.settings, stop=self.stop)
            except BaseException as e:  # noqa: BLE001 - uvicorn exits with SystemExit
                self._web_error = e

        # serve() logs where it listens; a port it cannot take ends the thread (see _wait).
        self._web = threading.Thread(target=target, name="digest-web", daemon=True)
        self._web.start()
