"""The per-host slots: who may start now, and a run of work within them."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest

from digest.ingest.slots import Driver, HostSlots, politely
from digest.types import FeedJob


def test_slots_counts_a_platforms_blogs_as_one_host() -> None:
    # Every *.github.io blog is served by GitHub Pages: they share its per-host slots.
    urls = ["https://a.github.io/f", "https://b.github.io/f", "https://c.github.io/f"]
    jobs = [FeedJob(i, url, None, None, None) for i, url in enumerate(urls)]
    d = HostSlots(jobs, per_host=2, total=10)
    assert [j.feed_id for j in d.take()] == [0, 1]
    d.release(jobs[0].url)
    assert [j.feed_id for j in d.take()] == [2]


def test_slots_gives_hosts_turns_within_both_caps() -> None:
    jobs = [
        FeedJob(i, f"https://{h}.example/{i}", None, None, None) for i, h in enumerate("aaaabbc")
    ]
    d = HostSlots(jobs, per_host=2, total=4)
    assert [j.feed_id for j in d.take()] == [0, 4, 6, 1]  # a, b, c, a: then the total is full
    d.release(jobs[0].url)
    assert [j.feed_id for j in d.take()] == [5]  # b's turn comes before a's
    d.release(jobs[4].url)
    assert [j.feed_id for j in d.take()] == [2]
    d.close()
    d.release(jobs[1].url)
    assert list(d.take()) == [] and d.waiting == 1  # a stop: job 3 never starts


@dataclass(frozen=True)
class Page:
    url: str


def test_politely_keeps_to_the_caps_and_returns_every_result() -> None:
    pages = [Page(f"https://{h}.example/{i}") for i, h in enumerate("aaaaaabbbc")]
    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}
    total_peak = 0

    async def work(page: Page) -> str:
        nonlocal total_peak
        host = page.url.split("/")[2]
        in_flight[host] = in_flight.get(host, 0) + 1
        peak[host] = max(peak.get(host, 0), in_flight[host])
        total_peak = max(total_peak, sum(in_flight.values()))
        await asyncio.sleep(0.01)  # a fetch's time (one event loop: the order is the same anywhere)
        in_flight[host] -= 1
        return page.url

    got = asyncio.run(politely(pages, work, per_host=2, total=3))
    assert sorted(got) == sorted(p.url for p in pages)
    assert max(peak.values()) == 2 and total_peak == 3


def test_politely_stops_starting_and_cancels_on_stop() -> None:
    stop = threading.Event()
    started: list[str] = []

    async def work(page: Page) -> str:
        started.append(page.url)
        if len(started) == 2:
            stop.set()
        await asyncio.Event().wait()  # never set: the work ends only when cancelled
        return page.url

    pages = [Page(f"https://a.example/{i}") for i in range(5)]
    began = time.monotonic()
    got = asyncio.run(politely(pages, work, per_host=2, total=10, stop=stop))
    assert got == [] and len(started) == 2 and time.monotonic() - began < 2


def test_politely_finishes_the_others_then_raises_a_failure() -> None:
    done: list[str] = []

    async def work(page: Page) -> str:
        if page.url.endswith("/1"):
            raise ValueError("boom")
        done.append(page.url)
        return page.url

    pages = [Page(f"https://a.example/{i}") for i in range(4)]
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(politely(pages, work, per_host=1, total=1))
    assert len(done) == 3


def test_a_job_that_releases_its_slot_lets_the_next_of_its_host_start() -> None:
    pages = [Page("https://a.example/1"), Page("https://a.example/2")]
    second_started = asyncio.Event()

    async def work(page: Page) -> str:
        if page.url.endswith("/1"):
            driver.release()  # its fetch is over: the host's one slot goes to /2 ...
            await asyncio.wait_for(second_started.wait(), 30)  # ... while /1 still runs
        else:
            second_started.set()
        return page.url

    driver = Driver(HostSlots(pages, per_host=1, total=1), work)
    got = asyncio.run(driver.run())
    assert got == ["https://a.example/2", "https://a.example/1"]


def test_a_stop_cancels_the_work_holding_a_slot_and_lets_the_released_finish() -> None:
    stop = threading.Event()
    pages = [Page("https://a.example/storing"), Page("https://b.example/fetching")]
    started = {p.url: asyncio.Event() for p in pages}
    fetch_cancelled, store_done = asyncio.Event(), asyncio.Event()

    async def work(page: Page) -> str:
        started[page.url].set()
        if page.url.endswith("/storing"):
            driver.release()  # past its fetch: a stop no longer cancels it
            await store_done.wait()
            return page.url
        try:
            await asyncio.Event().wait()  # a fetch that never answers
        except asyncio.CancelledError:
            fetch_cancelled.set()
            raise
        return page.url

    async def stop_then_finish_the_store() -> None:
        for event in started.values():
            await event.wait()
        stop.set()
        await fetch_cancelled.wait()
        store_done.set()

    async def main() -> list[str]:
        controller = asyncio.create_task(stop_then_finish_the_store())
        got = await driver.run()
        await controller
        return got

    driver = Driver(HostSlots(pages, per_host=1, total=10), work, stop)
    assert asyncio.run(main()) == ["https://a.example/storing"]
