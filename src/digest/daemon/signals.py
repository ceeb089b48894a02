"""The signals `digest run` answers, noted from its first instruction: SIGTERM and SIGINT stop
it, SIGUSR1 sends the issue now.

A signal never interrupts what the process is doing (a migration, a database write, a message
half-sent): its handler does nothing but let Python write the signal's number to a pipe
(``signal.set_wakeup_fd``), and the daemon reads that pipe between its start-up steps and in
its main loop. So a SIGTERM during start-up ends the step under way, and then the daemon, with
exit status 0 and nothing half-written.
"""

from __future__ import annotations

import logging
import os
import select
import signal
from types import FrameType, TracebackType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SEND_NOW_SIGNAL = signal.SIGUSR1


def _noted(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: nothing to do, the wakeup pipe already holds the signal."""


class Signals:
    """Installs the daemon's signal handlers (main thread only) until closed; ``wait`` and
    ``stop_received`` read what arrived."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._previous = {
            sig: signal.signal(sig, _noted) for sig in (*STOP_SIGNALS, SEND_NOW_SIGNAL)
        }
        self._pending: list[signal.Signals] = []

    def __enter__(self) -> Signals:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def wait(self, timeout: float) -> list[signal.Signals]:
        """The signals received since the last call, in order, waiting up to ``timeout``
        seconds for one when none is in yet."""
        if not self._pending and timeout > 0:
            select.select([self._read], [], [], timeout)
        self._drain()
        received, self._pending = self._pending, []
        return received

    def stop_received(self) -> signal.Signals | None:
        """The first SIGTERM or SIGINT received so far (and kept: it is asked again later),
        without waiting; a SIGUSR1 before it stays pending too."""
        self._drain()
        return next((sig for sig in self._pending if sig in STOP_SIGNALS), None)

    def close(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read)
        os.close(self._write)

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._read, 512)
            except BlockingIOError:
                return
            self._pending += [signal.Signals(number) for number in data]


def log_start_up_stop(sig: signal.Signals, after: str) -> None:
    """Why `digest run` stops before its jobs ever ran."""
    log.info(
        "%s received during start-up, after %s: stopping",
        sig.name,
        after,
        extra={"fields": {"event": "signal", "signal": sig.name, "after": after}},
    )


def log_stopped(abandoned: bool) -> None:
    """The last line of every `digest run`: it stopped (and whether work was abandoned)."""
    log.info("stopped", extra={"fields": {"event": "stop", "abandoned": abandoned}})
