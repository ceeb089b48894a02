"""Soak: `digest run` against the feed farm for an hour; CPU per feed polled and the process
tree's memory, every minute, against a one-shot warm poll's CPU per feed in the same run.

    .venv/bin/python bench/soak.py                       # 2,000 feeds, 60 minutes
    .venv/bin/python bench/soak.py --duration 12 --feeds 500   # a quick look
    git archive HEAD src templates | tar -x -C /tmp/snap && \
        nohup .venv/bin/python bench/soak.py --src /tmp/snap/src > /tmp/soak.out &   # a snapshot

Starts ../shared/bench/feedfarm.py (``--farm`` or $FEEDFARM) and a counting SMTP sink
(aiosmtpd, messages counted, not kept), builds a database with a cold `digest poll` and
``--subscribers`` readers, then measures ``--warm`` one-shot warm polls (`digest poll`, every
feed answering 304: the CPU of the whole process tree, parser workers included, sampled from
/proc). Then runs `digest run` with ``feeds.poll_interval = 1m`` and a send every 10 minutes
(``newsletter.send_at = cron: */10 * * * *``) while the farm publishes a post in
``--publish`` feeds every ``--publish-every`` seconds. Each minute it prints the feeds polled
(the farm's request count), the tree's CPU seconds (user + system of every process, the
parser workers and the forkserver included), CPU per feed, the summed RSS and PSS of the
tree, and the messages the sink has counted. At the end: the daemon's CPU per feed over the
whole soak (minute 1, which starts the workers, included) against the best warm one-shot
poll's, and the RSS at minute 10 and at the last minute.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from poll import CLOCK_TICKS, DIGEST, REPO, Farm, free_port, measure  # noqa: E402


class CountingSink:
    """aiosmtpd on 127.0.0.1 that counts messages and their recipients, keeping nothing."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages = 0
        self.recipients = 0
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            self.messages += 1
            self.recipients += len(envelope.rcpt_tos)
        return "250 OK"

    def start(self) -> int:
        self.controller.start()
        return self.port

    def stop(self) -> None:
        self.controller.stop()


@dataclass
class TreeSample:
    cpu_s: float  # user + system of every process seen in the tree so far
    rss_mb: float  # summed RSS of the live processes
    pss_mb: float  # summed PSS (shared pages divided among their users)
    processes: int


class Tree:
    """The daemon's process tree, sampled from /proc. A process's CPU is its last sample:
    processes that live for the whole soak (the daemon, its forkserver and parser workers)
    are exact; a short-lived one loses what it used after its last sample."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu: dict[int, float] = {}

    def sample(self) -> TreeSample:
        rss = pss = 0
        live, todo = 0, [self.pid]
        while todo:
            p = todo.pop()
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                self.cpu[p] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
                with open(f"/proc/{p}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Rss:"):
                            rss += int(line.split()[1])
                        elif line.startswith("Pss:"):
                            pss += int(line.split()[1])
                live += 1
                for task in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{task}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        return TreeSample(sum(self.cpu.values()), rss / 1024, pss / 1024, live)


def _canary_work() -> int:
    seen: dict[int, int] = {}
    total = 0
    for i in range(60_000):
        seen[i % 997] = total
        total += i * 3 % 7
    return total


class Canary:
    """How fast this machine runs Python now: a fixed piece of pure-Python work timed every
    half second in a thread of its own (thread CPU time: waiting for a core does not count),
    ~1 % of a core. These shared 2-core machines ran that work in 7 ms or in 13 ms from one
    second to the next (2026-12-06, pinned to either core), so each minute's CPU per feed is
    printed beside the canary's median for that minute, and the ratio is also given at the
    machine's speed (each side divided by the canary of its time)."""

    def __init__(self) -> None:
        self._samples: list[float] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="canary", daemon=True).start()

    def _run(self) -> None:
        while not STOP.wait(0.5):
            started = time.thread_time()
            _canary_work()
            spent = 1000 * (time.thread_time() - started)
            with self._lock:
                self._samples.append(spent)

    def take(self) -> float:
        """The median ms of the samples since the last take (nan: none yet)."""
        with self._lock:
            samples, self._samples = self._samples, []
        return statistics.median(samples) if samples else math.nan


def run(cmd: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()[-2000:]}")


STOP = threading.Event()  # SIGTERM or SIGINT: end the soak early, still reporting


def main() -> None:
    args = parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: STOP.set())
    with tempfile.TemporaryDirectory(prefix="digest-soak-") as tmp:
        soak(args, Path(tmp))


def soak(args: argparse.Namespace, work: Path) -> None:
    # --recent: posts of the last days, so each send has an issue to send (January's would not)
    farm = Farm(Path(args.farm), args.feeds, args.latency_ms, args.hosts, ("--recent",))
    sink = CountingSink()
    farm.start()
    try:
        port = sink.start()
        (work / "feeds.opml").write_bytes(farm.get("/feeds.opml"))
        env = {
            **os.environ,
            "DIGEST_DATABASE_URL": f"sqlite:///{work / 'soak.db'}",
            "DIGEST_FEEDS_OPML": str(work / "feeds.opml"),
            "DIGEST_FEEDS_ALLOW_NETWORKS": "127.0.0.0/8",
            "DIGEST_FEEDS_POLL_INTERVAL": "1m",
            "DIGEST_NEWSLETTER_SEND_AT": args.send_at,
            "DIGEST_NEWSLETTER_TIMEZONE": "UTC",
            "DIGEST_SMTP_HOST": "127.0.0.1",
            "DIGEST_SMTP_PORT": str(port),
            "DIGEST_WEB_ENABLED": "false",
        }
        if args.src:  # a snapshot of the code: the soak runs what it started with
            env["PYTHONPATH"] = str(Path(args.src).resolve())
        digest = str(DIGEST)
        started = time.monotonic()
        run([digest, "poll", "--quiet"], env, work)
        print(f"cold poll of {args.feeds:,} feeds: {time.monotonic() - started:.1f} s", flush=True)
        csv = work / "readers.csv"
        csv.write_text("email\n" + "".join(f"r{i}@example.com\n" for i in range(args.subscribers)))
        run([digest, "subscribers", "import", str(csv)], env, work)
        canary = Canary()
        before = warm_polls(args, farm, env, work, "before", canary)
        minutes = watch_daemon(args, farm, sink, env, work, canary)
        after = warm_polls(args, farm, env, work, "after", canary)
        report(args, minutes, before, after)
    finally:
        sink.stop()
        farm.stop()


@dataclass
class OneShot:
    per_feed_ms: float  # CPU ms per feed polled
    canary_ms: float  # the canary's median while it ran


def warm_polls(
    args: argparse.Namespace,
    farm: Farm,
    env: dict[str, str],
    work: Path,
    when: str,
    canary: Canary,
) -> list[OneShot]:
    """CPU ms per feed of ``args.warm`` one-shot `digest poll`s (the farm unchanged)."""
    shots = []
    for i in range(args.warm):
        before = farm.stats().get("requests", 0)
        canary.take()
        r = measure("digest", f"warm-{when}-{i}", [str(DIGEST), "poll", "--quiet"], env, work)
        polled = farm.stats().get("requests", 0) - before - 1
        shots.append(OneShot(1000 * r.cpu_s / max(1, polled), canary.take()))
        print(
            f"one-shot warm poll ({when} the soak): {polled:,} feeds, {r.seconds:.2f} s, "
            f"CPU {r.cpu_s:.2f} s = {shots[-1].per_feed_ms:.3f} ms per feed, tree PSS "
            f"{r.tree_mb:.0f} MB, canary {shots[-1].canary_ms:.1f} ms",
            flush=True,
        )
    return shots


@dataclass
class Minute:
    minute: int
    feeds: int
    cpu_s: float
    sample: TreeSample
    sent: int
    canary_ms: float


def watch_daemon(
    args: argparse.Namespace,
    farm: Farm,
    sink: CountingSink,
    env: dict[str, str],
    work: Path,
    canary: Canary,
) -> list[Minute]:
    log_path = Path(args.log) if args.log else work / "daemon.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            [str(DIGEST), "run"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT
        )
    tree = Tree(daemon.pid)
    print(f"digest run (pid {daemon.pid}), log {log_path}", flush=True)
    print(
        "minute  feeds  cpu_s  ms/feed  rss_mb  pss_mb  procs  messages_sent  canary_ms",
        flush=True,
    )
    minutes: list[Minute] = []
    start = time.monotonic()
    last_cpu, last_requests = tree.sample().cpu_s, farm.stats().get("requests", 0)
    canary.take()
    next_publish = start + args.publish_every
    try:
        for m in range(1, args.duration + 1):
            tick_end = start + 60 * m
            if STOP.is_set():
                print(f"stopped early, after {len(minutes)} minutes", flush=True)
                break
            while (now := time.monotonic()) < tick_end and not STOP.is_set():
                if daemon.poll() is not None:
                    raise SystemExit(f"digest run exited ({daemon.returncode}): see {log_path}")
                if now >= next_publish:
                    farm.post(f"/_advance?n={args.publish}")
                    next_publish += args.publish_every
                STOP.wait(min(1.0, max(0.0, tick_end - now)))
            if STOP.is_set():
                continue
            sample = tree.sample()
            requests = farm.stats().get("requests", 0)
            feeds = requests - last_requests - 1  # the /_stats call itself
            row = Minute(m, feeds, sample.cpu_s - last_cpu, sample, sink.messages, canary.take())
            minutes.append(row)
            last_cpu, last_requests = sample.cpu_s, requests
            print(
                f"{m:6d} {feeds:6d} {row.cpu_s:6.2f} {1000 * row.cpu_s / max(1, feeds):8.3f} "
                f"{sample.rss_mb:7.1f} {sample.pss_mb:7.1f} {sample.processes:6d} "
                f"{sink.messages:14d} {row.canary_ms:10.1f}",
                flush=True,
            )
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    return minutes


def report(
    args: argparse.Namespace, minutes: list[Minute], before: list[OneShot], after: list[OneShot]
) -> None:
    feeds = sum(m.feeds for m in minutes)
    cpu = sum(m.cpu_s for m in minutes)
    per_feed = 1000 * cpu / max(1, feeds)
    best = min(before, key=lambda s: s.per_feed_ms)
    floor = best.per_feed_ms
    print(
        f"soak: {len(minutes)} min, {feeds:,} feeds polled, CPU {cpu:.1f} s = "
        f"{per_feed:.3f} ms per feed; one-shot warm poll before {floor:.3f} ms"
        + (f", after {min(s.per_feed_ms for s in after):.3f} ms" if after else "")
        + f"; ratio {per_feed / floor:.2f} (target <= 1.2)"
    )
    soak_canary = statistics.median(m.canary_ms for m in minutes) if minutes else math.nan
    print(
        f"canary (the machine's speed, ms for the same work): the best one-shot before "
        f"{best.canary_ms:.1f}, the soak's minutes {soak_canary:.1f} (median); ratio at the "
        f"machine's speed {(per_feed / soak_canary) / (floor / best.canary_ms):.2f}"
    )
    if len(minutes) >= 10:
        at10, last = minutes[9].sample, minutes[-1].sample
        change = 100 * (last.rss_mb - at10.rss_mb) / at10.rss_mb
        print(
            f"tree RSS: minute 10 {at10.rss_mb:.1f} MB, minute {minutes[-1].minute} "
            f"{last.rss_mb:.1f} MB ({change:+.1f} %, target within 10 %); PSS "
            f"{at10.pss_mb:.1f} -> {last.pss_mb:.1f} MB"
        )
    print(f"messages sent: {minutes[-1].sent if minutes else 0:,}")


def parse_args() -> argparse.Namespace:
    near = [d / "shared/bench/feedfarm.py" for d in (REPO.parent, REPO.parent.parent)]
    default_farm = os.environ.get("FEEDFARM") or str(next((f for f in near if f.exists()), near[0]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--farm", default=default_farm, help="feedfarm.py (default: %(default)s)")
    p.add_argument("--feeds", type=int, default=2000)
    p.add_argument("--duration", type=int, default=60, help="minutes of `digest run`")
    p.add_argument("--latency-ms", type=int, default=20)
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--subscribers", type=int, default=200)
    p.add_argument("--publish", type=int, default=20, help="feeds given a new post each time")
    p.add_argument("--publish-every", type=float, default=180, help="seconds")
    p.add_argument(
        "--send-at",
        default="cron: */10 * * * *",
        help="newsletter.send_at of the daemon (default: %(default)s; 'cron: 0 0 1 1 *' sends "
        "nothing within the hour)",
    )
    p.add_argument("--warm", type=int, default=3, help="one-shot warm polls before and after")
    p.add_argument("--log", help="the daemon's log file (default: in the work folder)")
    p.add_argument(
        "--src",
        help="import digest from this folder (`git archive HEAD src templates | tar -x -C DIR`, "
        "then "
        "DIR/src): an hour's soak keeps running the code it started with while the tree changes",
    )
    return p.parse_args()


if __name__ == "__main__":
    main()
