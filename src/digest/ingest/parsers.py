"""The parser processes of a poll (feedparser is CPU-bound): a process pool that can outlive
one poll (the daemon keeps it across rounds), and that a dying worker cannot take down.

A worker that dies (out of memory, a crash in a C extension on a hostile body) breaks the
whole ProcessPoolExecutor: every body in flight fails with it. Each of those bodies is parsed
again in a process of its own; the one that kills that process too is reported as "parser
process died" (its feed's error), the pool is made anew for the rest, and no body is ever
parsed in the poll's own process after a death (it also serves the web endpoint).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from digest.errors import ParseError
from digest.ingest.worker import exit_with_parent, parse_or_failure
from digest.types import ParsedFeed

if TYPE_CHECKING:  # multiprocessing loads with the first pool: a poll of 304s never needs one
    import concurrent.futures

log = logging.getLogger(__name__)

# Below this many feeds a new process pool costs more than it saves (a running one is used).
MIN_POOL_BATCH = 8
PARSER_DIED = "parser process died"
# What the forkserver imports once, so a new worker starts parsing at once. (The command's
# script is kept out of the workers by digest.cli.main: see _name_the_main_module there.)
PRELOAD = ["digest.ingest.worker", "digest.ingest.parse"]


class ParserPool:
    """Parses bodies in worker processes; a poll with few bodies and no pool running yet
    parses them in a thread instead (starting workers would cost more), unless the pool is
    ``lasting`` (the daemon's: its workers start once and serve every round, so even a
    round of one feed parses out of the process that serves the web endpoint)."""

    def __init__(self, workers: int, *, lasting: bool = False) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.lasting = lasting
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.died = 0  # parser processes lost, for the log and tests

    def in_process(self, batch: int) -> bool:
        """Would a poll of ``batch`` bodies parse them in this process?"""
        if self.lasting or self._pool is not None:
            return False
        return self.workers <= 1 or batch < MIN_POOL_BATCH

    async def parse(
        self,
        body: bytes,
        url: str,
        headers: Mapping[str, str],
        now: datetime,
        *,
        in_process: bool = False,
    ) -> ParsedFeed:
        """The parsed feed; raises ParseError for a body that is not a feed we can read, or
        whose parse killed its process."""
        call = functools.partial(parse_or_failure, body, url, dict(headers), now)
        if in_process and self._pool is None and not self.died:
            result = await asyncio.to_thread(call)
        else:
            from concurrent.futures.process import BrokenProcessPool

            pool = self._get_pool()
            try:
                result = await asyncio.get_running_loop().run_in_executor(pool, call)
            except BrokenProcessPool:
                self._replace(pool)
                result = await self._parse_alone(call, url)
        if isinstance(result, str):
            raise ParseError(url, result)
        return result

    async def _parse_alone(
        self, call: functools.partial[ParsedFeed | str], url: str
    ) -> ParsedFeed | str:
        """A body that was in flight when a worker died, parsed again in a process of its
        own: if it dies there too, this body is the one that kills parsers."""
        from concurrent.futures.process import BrokenProcessPool

        alone = self._new_pool(1)
        try:
            return await asyncio.get_running_loop().run_in_executor(alone, call)
        except BrokenProcessPool:
            self.died += 1
            log.warning("%s: %s", url, PARSER_DIED)
            return PARSER_DIED
        finally:
            alone.shutdown(wait=False, cancel_futures=True)

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        """Drop a broken pool (once, however many parses saw it break)."""
        if self._pool is broken:
            log.warning("a parser process died: starting new parser processes")
            self._pool = None
            broken.shutdown(wait=False, cancel_futures=True)

    def _get_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = self._new_pool(self.workers)
        return self._pool

    @staticmethod
    def _new_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
        import concurrent.futures
        import multiprocessing

        # forkserver: never fork this (threaded) process; workers start from a clean one.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=exit_with_parent, initargs=(os.getpid(),)
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
