"""Poll benchmark: digest against reader and rss2email on the feed farm, cold and warm.

    .venv/bin/python bench/poll.py                 # 500 feeds: digest, reader, rss2email
    .venv/bin/python bench/poll.py --feeds 5000    # scale: digest only, time and memory
    .venv/bin/python bench/poll.py --tools digest,reader --repeat 3   # medians of 3 rounds
    .venv/bin/python bench/poll.py --tools digest,reader --per-host 8,32 # the cap lifted

Starts ../shared/bench/feedfarm.py itself (``--farm`` or $FEEDFARM), primes it (so no tool
pays for the farm building its bodies), then runs each tool as its own process: a cold poll
on a fresh database, then a warm poll (nothing changed: every feed should answer 304).
The peers run from bench/.peers-venv (see bench/README.md). Wall time is measured around the
process; memory is the peak of the summed PSS of the process and all its children (parser
workers included), sampled from /proc every 20 ms, and the peak RSS of the largest single
process (os.wait4).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "bench" / ".peers-venv" / "bin"
DIGEST = REPO / ".venv" / "bin" / "digest"
SAMPLE_S = 0.02

# The other reference: feedparser fetching and parsing each URL in turn, nothing stored.
FEEDPARSER_SCRIPT = """
import sys, xml.etree.ElementTree as ET, feedparser
urls = [o.get("xmlUrl") for o in ET.parse(sys.argv[1]).iter("outline") if o.get("xmlUrl")]
print(sum(len(feedparser.parse(url).entries) for url in urls))
"""
# reader.update_feeds(workers=...): as the issue measures it.
READER_WORKERS = 16
READER_SCRIPT = f"""
import sys, xml.etree.ElementTree as ET
from reader import make_reader
reader = make_reader(sys.argv[1])
if sys.argv[2] == "add":
    for o in ET.parse(sys.argv[3]).iter("outline"):
        if o.get("xmlUrl"):
            reader.add_feed(o.get("xmlUrl"), exist_ok=True)
else:
    reader.update_feeds(workers={READER_WORKERS}, scheduled=False)
    print(reader.get_entry_counts().total)
"""


@dataclass
class Run:
    """One timed process: what it was, how long it took, how much memory it held."""

    tool: str
    phase: str
    seconds: float
    tree_mb: float  # peak of the summed PSS of the process tree
    cpu_s: float  # user + system CPU of every process in the tree (sampled from /proc)
    max_rss_mb: float  # peak RSS of the largest single process (wait4)
    returncode: int
    stats: dict[str, int] = field(default_factory=dict)  # the farm's counters for this run
    note: str = ""


# --- the farm ------------------------------------------------------------------------------


class Farm:
    """The feed farm as a child process on a free port."""

    def __init__(
        self, script: Path, feeds: int, latency_ms: int, hosts: int, extra: tuple[str, ...] = ()
    ) -> None:
        self.script, self.feeds, self.latency_ms, self.hosts = script, feeds, latency_ms, hosts
        self.extra = extra  # more options of feedfarm.py (bench/soak.py: --recent)
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> None:
        for _attempt in range(5):
            self.port = free_port()
            cmd = [
                sys.executable,
                str(self.script),
                "--feeds",
                str(self.feeds),
                "--latency-ms",
                str(self.latency_ms),
                "--hosts",
                str(self.hosts),
                "--port",
                str(self.port),
                *self.extra,
            ]
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line.startswith("feedfarm:"):
                return
            self.proc.wait()
        raise SystemExit("the feed farm did not start (ports busy?)")

    def url(self, path: str) -> str:
        return f"http://127.0.0.2:{self.port}{path}"

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url(path), timeout=30) as resp:
            data: bytes = resp.read()
            return data

    def post(self, path: str) -> None:
        req = urllib.request.Request(self.url(path), method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()

    def stats(self) -> dict[str, int]:
        data: dict[str, int] = json.loads(self.get("/_stats"))
        return data

    def prime(self, urls: list[str]) -> None:
        """Fetch every feed once, plain and gzipped, so the farm has built and cached them."""

        def fetch(url: str) -> None:
            for encoding in ("identity", "gzip"):
                req = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
                with urllib.request.urlopen(req, timeout=60) as resp:
                    resp.read()

        with ThreadPoolExecutor(64) as pool:
            list(pool.map(fetch, urls))
        self.post("/_reset-stats")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        port: int = s.getsockname()[1]
    return port if port < 60000 else random.randrange(20000, 30000)


def opml_urls(opml: bytes) -> list[str]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(opml)
    return [o.attrib["xmlUrl"] for o in root.iter("outline") if "xmlUrl" in o.attrib]


# --- measuring one process -----------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def sample_tree(pid: int, cpu: dict[int, float]) -> int:
    """Summed PSS of ``pid`` and all its descendants, in KB (0 once it is gone); records
    each process's CPU seconds so far in ``cpu``.

    PSS, not RSS: forked workers share the interpreter's pages, and summing RSS would count
    them once per process.
    """
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu[p] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def measure(tool: str, phase: str, cmd: list[str], env: dict[str, str], cwd: Path) -> Run:
    """Run ``cmd`` to the end; wall time, peak tree RSS, wait4's max RSS, output kept."""
    out_path = cwd / f"{tool}-{phase}.out"
    with open(out_path, "w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        cpu: dict[int, float] = {}
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, sample_tree(proc.pid, cpu))
                done.wait(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    # The main process's own figure is exact (wait4 counts no orphaned descendants here);
    # the others' is their last sample.
    cpu[proc.pid] = usage.ru_utime + usage.ru_stime
    return Run(
        tool=tool,
        phase=phase,
        seconds=seconds,
        tree_mb=peak / 1024,
        cpu_s=sum(cpu.values()),
        max_rss_mb=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
    )


def last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


# --- the tools -----------------------------------------------------------------------------


@dataclass
class Tool:
    name: str
    setup: Callable[[Path], None]
    command: Callable[[Path], list[str]]
    env: dict[str, str]
    check: Callable[[Path, str], str]  # (workdir, phase) -> note for the table
    phases: tuple[str, ...] = ("cold", "warm")


def digest_tool(
    opml: Path, digest_cmd: list[str], extra_env: dict[str, str], name: str = "digest"
) -> Tool:
    # The farm serves on 127.0.0.x, which the network policy refuses unless opened.
    env = {"DIGEST_FEEDS_OPML": str(opml), "DIGEST_FEEDS_ALLOW_NETWORKS": "127.0.0.0/8"}
    env.update(extra_env)

    def setup(work: Path) -> None:
        env["DIGEST_DATABASE_URL"] = f"sqlite:///{work / 'digest.db'}"
        write_bytecode(digest_cmd, work)

    def check(work: Path, phase: str) -> str:
        try:
            summary = json.loads(last_line(work / f"{name}-{phase}.out"))
        except ValueError:
            return "no JSON summary"
        return f"{summary['new_posts']} new, {summary['not_modified']} not modified"

    return Tool(name, setup, lambda _w: [*digest_cmd, "poll", "--json"], env, check)


def write_bytecode(digest_cmd: list[str], work: Path) -> None:
    """An untimed poll of an empty feed list that may write bytecode, as pip does for an
    installed package: an editable install under PYTHONDONTWRITEBYTECODE=1 (set on these
    machines) would otherwise compile digest's own modules on every timed run, which the
    peers, installed by pip, never pay."""
    empty = work / "empty.opml"
    empty.write_text('<opml version="2.0"><head/><body/></opml>')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(DIGEST_FEEDS_OPML=str(empty), DIGEST_DATABASE_URL=f"sqlite:///{work / 'pyc.db'}")
    subprocess.run([*digest_cmd, "poll"], env=env, cwd=work, check=False, capture_output=True)


def reader_tool(opml: Path) -> Tool:
    python = str(PEERS / "python")

    def setup(work: Path) -> None:
        db = str(work / "reader.db")
        subprocess.run([python, "-c", READER_SCRIPT, db, "add", str(opml)], check=True)

    def check(work: Path, phase: str) -> str:
        return f"{last_line(work / f'reader-{phase}.out')} entries stored"

    return Tool(
        "reader",
        setup,
        lambda w: [python, "-c", READER_SCRIPT, str(w / "reader.db"), "update"],
        {},
        check,
    )


def feedparser_tool(opml: Path) -> Tool:
    """A plain feedparser.parse(url) loop: cold only (it keeps no validators, so no warm)."""

    def check(work: Path, phase: str) -> str:
        return f"{last_line(work / f'feedparser-{phase}.out')} entries parsed"

    command = [str(PEERS / "python"), "-c", FEEDPARSER_SCRIPT, str(opml)]
    return Tool("feedparser", lambda _w: None, lambda _w: command, {}, check, ("cold",))


def rss2email_tool(opml: Path) -> Tool:
    r2e = str(PEERS / "r2e")

    def base(work: Path) -> list[str]:
        return [r2e, "-c", str(work / "r2e.cfg"), "-d", str(work / "r2e.json")]

    def setup(work: Path) -> None:
        for step in (["new", "bench@example.org"], ["opmlimport", str(opml)]):
            subprocess.run([*base(work), *step], check=True, capture_output=True)

    def check(work: Path, phase: str) -> str:
        return ""

    return Tool("rss2email", setup, lambda w: [*base(w), "run", "--no-send"], {}, check)


def run_tool(tool: Tool, farm: Farm, root: Path, phases: list[str], round_: int = 0) -> list[Run]:
    work = root / f"{tool.name}-{round_}"
    work.mkdir()
    tool.setup(work)
    env = {**os.environ, **tool.env}
    runs = []
    for phase in phases:
        farm.post("/_reset-stats")
        run = measure(tool.name, phase, tool.command(work), env, work)
        run.stats = farm.stats()
        run.note = (
            tool.check(work, phase)
            if run.returncode == 0
            else last_line(work / f"{tool.name}-{phase}.out")
        )
        print(f"  {describe(run)}", flush=True)
        runs.append(run)
    return runs


# --- reporting -----------------------------------------------------------------------------


def describe(run: Run) -> str:
    s = run.stats
    # The farm counts the /_reset-stats request that opened the run as one 200.
    codes = f"{s.get('status_200', 1) - 1}x200 {s.get('status_304', 0)}x304"
    return (
        f"{run.tool:10} {run.phase:5} {run.seconds:7.2f} s  cpu {run.cpu_s:6.2f} s  "
        f"{run.tree_mb:6.1f} MB "
        f"(largest process {run.max_rss_mb:5.1f} MB)  {codes}  {run.note}"
    ).rstrip()


def median_runs(runs: list[Run]) -> dict[tuple[str, str], Run]:
    """Each (tool, phase)'s median run by wall time (the lower middle one for even counts)."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.tool, run.phase), []).append(run)
    return {k: sorted(g, key=lambda r: r.seconds)[(len(g) - 1) // 2] for k, g in groups.items()}


def table(runs: list[Run], feeds: int, rounds: int = 1) -> str:
    by = median_runs(runs)
    label = f"{feeds} feeds" + (f", median of {rounds}" if rounds > 1 else "")
    lines = [
        f"| {label} | cold s | warm s | cold CPU s | warm CPU s "
        "| peak MB cold (all PSS / largest RSS) | peak MB warm | cold vs reader | warm vs reader |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ref_cold, ref_warm = by.get(("reader", "cold")), by.get(("reader", "warm"))
    for tool in dict.fromkeys(r.tool for r in runs):
        cold, warm = by.get((tool, "cold")), by.get((tool, "warm"))
        cells = [tool]
        cells.append(f"{cold.seconds:.2f}" if cold else "-")
        cells.append(f"{warm.seconds:.2f}" if warm else "-")
        cells.append(f"{cold.cpu_s:.1f}" if cold else "-")
        cells.append(f"{warm.cpu_s:.1f}" if warm else "-")
        cells.append(f"{cold.tree_mb:.0f} / {cold.max_rss_mb:.0f}" if cold else "-")
        cells.append(f"{warm.tree_mb:.0f} / {warm.max_rss_mb:.0f}" if warm else "-")
        cells.append(ratio(cold, ref_cold))
        cells.append(ratio(warm, ref_warm))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio(run: Run | None, ref: Run | None) -> str:
    if run is None or ref is None or ref.seconds <= 0:
        return "-"
    return f"{run.seconds / ref.seconds:.2f}x"


def latency_floor(
    digest_cmd: list[str], extra_env: dict[str, str], feeds: int, hosts: int, latency_ms: float
) -> str:
    """What the farm's latency alone costs a poll under digest's effective concurrency caps
    (and reader's threads): no code can be faster than this."""
    env = {**os.environ, **extra_env}
    out = subprocess.run([*digest_cmd, "config", "--json"], env=env, capture_output=True)
    try:
        caps = json.loads(out.stdout)["feeds"]
    except (ValueError, KeyError):
        return "latency floor: digest config --json failed"
    in_flight = min(caps["concurrency"], caps["per_host"] * hosts, feeds)
    floor = feeds * latency_ms / 1000 / in_flight
    reader = feeds * latency_ms / 1000 / min(READER_WORKERS, feeds)
    # The farm serves feed i from host i % hosts: the busiest host's requests go in chains,
    # one per connection, and the longest chain ends the poll.
    chain = math.ceil(math.ceil(feeds / hosts) / caps["per_host"])
    return (
        f"latency floor: {feeds} requests x {latency_ms:g} ms / {in_flight} in flight "
        f"(feeds.per_host {caps['per_host']} x {hosts} hosts, feeds.concurrency "
        f"{caps['concurrency']}) = {floor:.2f} s for digest ({chain} requests in the longest "
        f"chain: {chain * latency_ms / 1000:.2f} s); reader's {READER_WORKERS} threads: "
        f"{reader:.2f} s"
    )


# --- the floor, measured -------------------------------------------------------------------


async def _bare_chain(host: str, port: int, paths: list[str], etags: dict[str, str]) -> int:
    """One keep-alive connection asking for ``paths`` in turn, conditionally: how many 304s."""
    reader, writer = await asyncio.open_connection(host, port)
    not_modified = 0
    try:
        for path in paths:
            head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept-Encoding: gzip\r\n"
            if path in etags:
                head += f"If-None-Match: {etags[path]}\r\n"
            writer.write((head + "\r\n").encode())
            answer = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", answer)
            if length:
                await reader.readexactly(int(length.group(1)))
            etag = re.search(rb"(?i)\r\netag: *([^\r\n]+)", answer)
            if etag:
                etags[path] = etag.group(1).decode()
            not_modified += answer.split(b" ", 2)[1] == b"304"
    finally:
        writer.close()
    return not_modified


async def _bare_poll(urls: list[str], per_host: int, etags: dict[str, str]) -> tuple[float, int]:
    by_host: dict[tuple[str, int], list[str]] = {}
    for url in urls:
        parts = urlsplit(url)
        by_host.setdefault((parts.hostname or "", parts.port or 80), []).append(parts.path)
    chains = [
        _bare_chain(host, port, paths[i::per_host], etags)
        for (host, port), paths in by_host.items()
        for i in range(per_host)
    ]
    started = time.monotonic()
    answers = await asyncio.gather(*chains)
    return time.monotonic() - started, sum(answers)


def bare_floor(urls: list[str], per_host: int, etags: dict[str, str]) -> float:
    """The floor measured: a bare asyncio client, ``per_host`` keep-alive connections a host
    (as digest's feeds.per_host), the same conditional GETs, nothing parsed or stored; the
    seconds of a warm pass (a first pass learns the ETags)."""
    if not etags:
        asyncio.run(_bare_poll(urls, per_host, etags))
    seconds, not_modified = asyncio.run(_bare_poll(urls, per_host, etags))
    if not_modified != len(urls):
        raise SystemExit(f"bare client: {not_modified} of {len(urls)} answered 304")
    return seconds


def digest_per_host(args: argparse.Namespace, extra_env: dict[str, str]) -> int:
    """feeds.per_host of the digest measured (its config)."""
    env = {**os.environ, **extra_env}
    out = subprocess.run(
        [*shlex.split(args.digest), "config", "--json"], env=env, capture_output=True
    )
    return int(json.loads(out.stdout)["feeds"]["per_host"])


def per_host_caps(per_host: int, hosts: int) -> dict[str, str]:
    """digest's settings for ``per_host`` connections per host with nothing else binding."""
    return {
        "DIGEST_FEEDS_PER_HOST": str(per_host),
        "DIGEST_FEEDS_CONCURRENCY": str(per_host * hosts),
    }


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_farm = os.environ.get("FEEDFARM") or str(REPO.parent / "shared/bench/feedfarm.py")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--farm", default=default_farm, help="feedfarm.py (default: %(default)s)")
    p.add_argument("--feeds", type=int, default=500)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument(
        "--tools",
        default=None,
        help="comma-separated: digest,reader,rss2email,feedparser (default: the first three up to "
        "1,000 feeds, "
        "digest alone above)",
    )
    p.add_argument(
        "--digest",
        default=str(DIGEST),
        help="the digest command (default: %(default)s)",
    )
    p.add_argument(
        "--digest-before",
        metavar="CMD",
        help="also run this digest command first, as 'digest-before' (e.g. an older checkout: "
        "'env PYTHONPATH=/tmp/old/src .venv/bin/python -m digest')",
    )
    p.add_argument(
        "--per-host",
        default="",
        metavar="N[,N...]",
        help="also run digest with feeds.per_host N (and feeds.concurrency N x hosts, so only "
        "the per-host cap binds), once per N, in the same rounds: how far the warm poll goes "
        "when the politeness cap is lifted",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for digest, e.g. DIGEST_FEEDS_PER_HOST=4",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of every tool, interleaved; the table shows each one's median run",
    )
    p.add_argument("--json", dest="json_out", help="also write the runs to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the work folder (databases, output)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = (args.tools or ("digest,reader,rss2email" if args.feeds <= 1000 else "digest")).split(
        ","
    )
    if any(t != "digest" for t in tools) and not (PEERS / "python").exists():
        raise SystemExit(f"no peers venv at {PEERS.parent}: see bench/README.md")
    extra_env = dict(e.split("=", 1) for e in args.env)
    per_host = [int(n) for n in args.per_host.split(",") if n]
    farm = Farm(Path(args.farm), args.feeds, args.latency_ms, args.hosts)
    root = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    runs: list[Run] = []
    floors: list[float] = []  # the bare client's warm passes, one a round
    etags: dict[str, str] = {}
    try:
        farm.start()
        opml_bytes = farm.get("/feeds.opml")
        opml = root / "feeds.opml"
        opml.write_bytes(opml_bytes)
        urls = opml_urls(opml_bytes)
        print(
            f"farm: {len(urls)} feeds, {args.hosts} hosts, {args.latency_ms} ms latency, "
            f"port {farm.port}; priming ...",
            flush=True,
        )
        farm.prime(urls)
        print(f"load average before: {load()}  (2 cores; other work on the machine skews)")
        makers: dict[str, Callable[[], Tool]] = {
            "digest": lambda: digest_tool(opml, shlex.split(args.digest), extra_env),
            "reader": lambda: reader_tool(opml),
            "rss2email": lambda: rss2email_tool(opml),
            "feedparser": lambda: feedparser_tool(opml),
        }
        for round_ in range(args.repeat):
            if args.repeat > 1:
                print(f"round {round_ + 1} of {args.repeat}", flush=True)
            if args.digest_before:
                cmd = shlex.split(args.digest_before)
                before = digest_tool(opml, cmd, extra_env, "digest-before")
                runs += run_tool(before, farm, root, ["cold", "warm"], round_)
            for name in tools:
                tool = makers[name]()
                runs += run_tool(tool, farm, root, list(tool.phases), round_)
            for n in per_host:
                env = {**extra_env, **per_host_caps(n, args.hosts)}
                variant = digest_tool(opml, shlex.split(args.digest), env, f"digest per_host {n}")
                runs += run_tool(variant, farm, root, list(variant.phases), round_)
            if "digest" in tools:
                floors.append(bare_floor(urls, digest_per_host(args, extra_env), etags))
    finally:
        farm.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)
        else:
            print(f"work folder kept: {root}")
    print(f"load average after: {load()}")
    print()
    print(table(runs, args.feeds, args.repeat))
    if "digest" in tools:
        print()
        print(
            latency_floor(
                shlex.split(args.digest), extra_env, args.feeds, args.hosts, args.latency_ms
            )
        )
    if floors:
        warm = [r.seconds for r in runs if r.tool == "digest" and r.phase == "warm"]
        floor, digest_warm = statistics.median(floors), statistics.median(warm)
        print(
            f"floor measured (a bare asyncio client, the same connections and conditional GETs, "
            f"nothing parsed or stored; median of {len(floors)}, one a round): {floor:.2f} s "
            f"(runs {', '.join(f'{f:.2f}' for f in floors)}); digest's warm poll "
            f"{digest_warm:.2f} s is {digest_warm - floor:.2f} s above it"
        )
    for n in per_host:
        env = {**extra_env, **per_host_caps(n, args.hosts)}
        floor = latency_floor(
            shlex.split(args.digest), env, args.feeds, args.hosts, args.latency_ms
        )
        print(f"per_host {n}: {floor}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([vars(r) for r in runs], indent=2) + "\n")
    return 1 if any(r.returncode for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
