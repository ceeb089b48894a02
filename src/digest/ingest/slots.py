"""The per-host limit, once: requests start as their host has a free slot (feeds.per_host) and
the poll has room (feeds.concurrency). The feed poll and the teaser pages both go through it.

A host here is a site (urls.site_of): every *.github.io blog waits for the same slots.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from digest.urls import site_of


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


J = TypeVar("J", bound=HasUrl)
R = TypeVar("R")

# How often a run of work checks whether it was asked to stop.
STOP_CHECK_S = 0.1


class HostSlots(Generic[J]):
    """Hands out jobs as their hosts have room: ``per_host`` per host, ``total`` in all.

    Jobs start only when they can run, so a poll of 5,000 feeds holds a few dozen tasks
    rather than 5,000 waiting on semaphores. Hosts take turns (round robin); each host's
    jobs keep their order (longest waiting first).
    """

    def __init__(self, jobs: Iterable[J], per_host: int, total: int) -> None:
        self.per_host, self.total = per_host, total
        self.queues: dict[str, collections.deque[J]] = {}
        for job in jobs:
            self.queues.setdefault(site_of(job.url), collections.deque()).append(job)
        # Hosts with jobs waiting and a free slot, in turn order.
        self.ready: dict[str, None] = dict.fromkeys(self.queues)
        self.busy: collections.Counter[str] = collections.Counter()
        self.running = 0
        self.closed = False

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def take(self) -> Iterator[J]:
        """The jobs that may start now (each one counts as running from here on)."""
        while self.ready and self.running < self.total and not self.closed:
            host = next(iter(self.ready))
            queue = self.queues[host]
            job = queue.popleft()
            self.busy[host] += 1
            self.running += 1
            del self.ready[host]
            if not queue:
                del self.queues[host]
            elif self.busy[host] < self.per_host:
                self.ready[host] = None  # to the back: the other hosts' turn first
            yield job

    def release(self, url: str) -> None:
        """A job of ``url``'s host is done with its slot."""
        host = site_of(url)
        self.busy[host] -= 1
        self.running -= 1
        if host in self.queues and host not in self.ready:
            self.ready[host] = None

    def close(self) -> None:
        """Start nothing more (a stop)."""
        self.closed = True


class Driver(Generic[J, R]):
    """Runs ``work(job)`` for each job ``slots`` hands out, as their hosts have room: the one
    driver of HostSlots (the poll's feeds, the teaser pages, feed discovery).

    A job holds its host's slot until its work ends, or until the work calls ``release()``
    (the poll's fetch is over: the next job of that host may start while it parses and
    stores). A stop starts nothing more and cancels the work still holding its slot; work
    past its slot finishes. A job whose work raises costs that job only: ``work`` is expected
    to turn failures into results, and anything else it raises is re-raised once the others
    are done. Done-callbacks, not a wait over every task: a poll of 5,000 feeds starts and
    ends 5,000 tasks.
    """

    def __init__(
        self,
        slots: HostSlots[J],
        work: Callable[[J], Coroutine[Any, Any, R]],
        stop: threading.Event | None = None,
    ) -> None:
        self.slots, self.work, self.stop = slots, work, stop
        self.results: list[R] = []  # of the work that finished, in the order it did
        self._holding: dict[asyncio.Task[R], J] = {}  # running work that holds its slot
        self._running: set[asyncio.Task[R]] = set()
        self._failure: BaseException | None = None
        self._idle: asyncio.Event | None = None

    async def run(self) -> list[R]:
        """Work every job (or until a stop); the results of the work that finished."""
        self._idle = asyncio.Event()
        watcher = asyncio.create_task(self._watch_stop()) if self.stop is not None else None
        try:
            self._start_more()
            await self._idle.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
        if self._failure is not None:
            raise self._failure
        return self.results

    def release(self) -> None:
        """Called by a job's work: its turn with its host is over; the slot goes to the next."""
        task = asyncio.current_task()
        job = self._holding.pop(task, None) if task is not None else None
        if job is not None:
            self.slots.release(job.url)
            self._start_more()

    def _start_more(self) -> None:
        for job in self.slots.take():
            task = asyncio.create_task(self.work(job))
            self._holding[task] = job
            self._running.add(task)
            task.add_done_callback(self._finished)
        if not self._running and self._idle is not None:
            self._idle.set()

    def _finished(self, task: asyncio.Task[R]) -> None:
        self._running.discard(task)
        job = self._holding.pop(task, None)
        if job is not None:
            self.slots.release(job.url)
        if not task.cancelled():
            error = task.exception()
            if error is None:
                self.results.append(task.result())
            else:
                self._failure = self._failure or error
        self._start_more()

    async def _watch_stop(self) -> None:
        assert self.stop is not None
        while not self.stop.is_set():
            await asyncio.sleep(STOP_CHECK_S)
        self.slots.close()
        for task in list(self._holding):
            task.cancel()


async def politely(
    jobs: Iterable[J],
    work: Callable[[J], Coroutine[Any, Any, R]],
    *,
    per_host: int,
    total: int,
    stop: threading.Event | None = None,
) -> list[R]:
    """``work(job)`` for every job, within the slots; the results of those that finished.

    A stop starts nothing more and cancels the work in flight (what it left is for next time).
    A job whose work raises costs that job only: see Driver.
    """
    return await Driver(HostSlots(jobs, per_host, total), work, stop).run()
