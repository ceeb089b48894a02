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
    A job whose work raises costs that job only: ``work`` is expected to turn failures into
    results, and anything else it raises is re-raised once the others are done.
    """
    slots = HostSlots(jobs, per_host, total)
    running: dict[asyncio.Task[R], J] = {}
    results: list[R] = []
    failure: BaseException | None = None
    while True:
        for job in slots.take():
            running[asyncio.create_task(work(job))] = job
        if not running:
            if failure is not None:
                raise failure
            return results
        done, _ = await asyncio.wait(
            running, timeout=STOP_CHECK_S, return_when=asyncio.FIRST_COMPLETED
        )
        if stop is not None and stop.is_set():
            slots.close()
            for task in running:
                task.cancel()
            await asyncio.wait(running)
            done = set(running)
        for task in done:
            slots.release(running.pop(task).url)
            if task.cancelled():
                continue
            error = task.exception()
            if error is None:
                results.append(task.result())
            else:
                failure = failure or error
