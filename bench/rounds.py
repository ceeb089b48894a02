"""The daemon's poll rounds in one process: CPU per feed of each round, and a profile.

    .venv/bin/python bench/rounds.py                        # 200 feeds, 30 rounds
    .venv/bin/python bench/rounds.py --src /tmp/snap/src    # a snapshot of the code
    .venv/bin/python bench/rounds.py --feeds 2000 --tick 6  # the daemon's due feeds, 1m interval

Starts ../shared/bench/feedfarm.py (``--farm`` or $FEEDFARM), builds a database with a cold
`digest poll`, then runs ``--rounds`` rounds of the daemon's RoundPoller in this process, each
fetching every feed (every one answering 304, as in a warm minute of `digest run`: the soak's
2,000 feeds every minute are ~200 per 6-second tick). Prints the process's CPU (every thread:
the event loop, the store thread) per feed of each round after ``--skip``, their median and
minimum. With ``--tick S`` a round starts every S seconds and fetches the feeds that are due
(``feeds.poll_interval`` 1 minute), as the daemon's do. Each round's time in the garbage
collector is shown apart (``--freeze``: gc.collect() and gc.freeze() after the first round;
``--gc-threshold N``: then generation 0 collected every N allocations, not 700).

A profile of every thread (the rounds run on the poller's loop thread, out of cProfile's
sight): ``py-spy record -r 250 -f raw -o rounds.txt -- .venv/bin/python bench/rounds.py``
(py-spy is no dependency: ``.venv/bin/pip install py-spy``).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from poll import DIGEST, REPO, Farm  # noqa: E402


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="digest-rounds-") as tmp:
        rounds(args, Path(tmp))


def rounds(args: argparse.Namespace, work: Path) -> None:
    farm = Farm(Path(args.farm), args.feeds, args.latency_ms, args.hosts)
    farm.start()
    try:
        (work / "feeds.opml").write_bytes(farm.get("/feeds.opml"))
        env = {
            "DIGEST_DATABASE_URL": f"sqlite:///{work / 'rounds.db'}",
            "DIGEST_FEEDS_OPML": str(work / "feeds.opml"),
            "DIGEST_FEEDS_ALLOW_NETWORKS": "127.0.0.0/8",
            "DIGEST_FEEDS_POLL_INTERVAL": "1m",
        }
        os.environ.update(env)
        if args.src:
            sys.path.insert(0, str(Path(args.src).resolve()))
            os.environ["PYTHONPATH"] = str(Path(args.src).resolve())
        subprocess.run([str(DIGEST), "poll", "--quiet"], check=True, cwd=work)
        used = run_rounds(args)[args.skip :]
    finally:
        farm.stop()
    per_feed = [1000 * r.cpu_s / r.feeds for r in used if r.feeds]
    feeds = max(1, sum(r.feeds for r in used))
    total = 1000 * sum(r.cpu_s for r in used) / feeds
    print(
        f"CPU per feed over {len(used)} rounds: {total:.3f} ms in all, round median "
        f"{statistics.median(per_feed):.3f} ms, min {min(per_feed):.3f} ms; of it in gc: "
        f"gen 2 {1000 * sum(r.gc_s for r in used) / feeds:.3f} ms, "
        f"gen 0-1 {1000 * sum(r.gc_young_s for r in used) / feeds:.3f} ms",
        flush=True,
    )


@dataclass
class Round:
    feeds: int
    cpu_s: float  # the process's, every thread
    gc_s: float  # of it, in the collections of generation 2
    gc_young_s: float  # and of generations 0 and 1


class GcClock:
    """CPU spent in the cyclic garbage collector, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.spent = [0.0, 0.0, 0.0]
        self._started = threading.local()
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started.at = time.thread_time()
        else:
            self.spent[info["generation"]] += time.thread_time() - self._started.at

    def young_and_old(self) -> tuple[float, float]:
        return self.spent[0] + self.spent[1], self.spent[2]


def run_rounds(args: argparse.Namespace) -> list[Round]:
    import digest
    from digest.configfile import load_settings
    from digest.daemon.polling import RoundPoller
    from digest.storage import Database

    print(f"digest from {Path(digest.__file__).parent}", flush=True)
    settings = load_settings(None)
    db = Database(settings.database.url)
    poller = RoundPoller(settings)
    used: list[Round] = []
    clock = GcClock()
    try:
        for i in range(args.rounds):
            cpu, began = time.process_time(), time.monotonic()
            young, old = clock.young_and_old()
            summary = poller(db, settings, due_only=args.tick > 0)
            young_after, old_after = clock.young_and_old()
            r = Round(
                summary.feeds, time.process_time() - cpu, old_after - old, young_after - young
            )
            used.append(r)
            if args.freeze and i == 0:
                gc.collect()
                gc.freeze()
            if args.gc_threshold and i == 0:
                gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
            if args.tick > 0:
                time.sleep(max(0.0, args.tick - (time.monotonic() - began)))
            print(
                f"round {i + 1}: {r.feeds} feeds, {1000 * r.cpu_s / max(1, r.feeds):.3f} ms/feed, "
                f"gc gen 2 {1000 * r.gc_s:.1f} ms, gen 0-1 {1000 * r.gc_young_s:.1f} ms",
                flush=True,
            )
    finally:
        close = getattr(poller, "close", None)
        if close is not None:
            close()
    return used


def parse_args() -> argparse.Namespace:
    near = [d / "shared/bench/feedfarm.py" for d in (REPO.parent, REPO.parent.parent)]
    default_farm = os.environ.get("FEEDFARM") or str(next((f for f in near if f.exists()), near[0]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--farm", default=default_farm, help="feedfarm.py (default: %(default)s)")
    p.add_argument("--feeds", type=int, default=200)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--skip", type=int, default=3, help="rounds left out of the figures")
    p.add_argument("--latency-ms", type=int, default=20)
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--freeze", action="store_true", help="gc.freeze() after the first round")
    p.add_argument("--gc-threshold", type=int, default=0, help="gc's first threshold, then")
    p.add_argument("--tick", type=float, default=0, help="seconds from a round to the next")
    p.add_argument("--src", help="import digest from this folder (a snapshot's src)")
    return p.parse_args()


if __name__ == "__main__":
    main()
