"""Memory and time of `digest subscribers import` and `digest send` as the list grows.

    .venv/bin/python bench/readers.py [--readers 10000 100000 1000000] [--dkim]
                                      [--no-send] [--blogs 300] [--posts 20]

For each list size, in a temporary folder: writes a CSV of that many readers (70 % every
section, 20 % ML only, 10 % Systems only), times the floor of an import (`csv`, email-validator
and one sqlite3 executemany, in a process of its own), then runs the real commands as a user
does, `digest subscribers import FILE` and `digest send`, each in a process of its own, sampling
the resident memory of the whole process tree (the command and every process it starts) from
/proc every 50 ms. The send goes to a counting SMTP sink (below, a process of its own, not
counted): a minimal asyncio server that reads DATA in large reads, counts and discards.
`--dkim` signs every message with a 2048-bit RSA key made for the run. Prints one line per
step: peak RSS, seconds, CPU seconds (the command's and its children's), and messages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

SAMPLE_S = 0.05
PROGRESS_S = 60


# -- the counting SMTP sink ------------------------------------------------------------------


class _Count:
    messages = 0
    size = 0


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Just enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA (read in large reads until the
    CRLF.CRLF that ends it: the client waits for our answer, so it ends a read), RSET, QUIT."""
    writer.write(b"220 sink ESMTP\r\n")
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250-sink\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 100000000\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            size, tail = 0, b""
            while not tail.endswith(b"\r\n.\r\n"):
                chunk = await reader.read(1 << 18)
                if not chunk:
                    return
                size += len(chunk)
                tail = (tail + chunk)[-5:]
            _Count.messages += 1
            _Count.size = size
            writer.write(b"250 OK counted\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()
    writer.close()


def sink() -> None:
    """Child process: the sink; prints its port, then on each line read its count."""

    async def serve() -> None:
        server = await asyncio.start_server(_session, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):
            print(_Count.messages, _Count.size, round(time.process_time(), 1), flush=True)

    asyncio.run(serve())


# -- measuring a process tree ----------------------------------------------------------------


@dataclass
class Run:
    peak_mb: float
    seconds: float
    cpu: float
    stdout: str


def _tree(pid: int) -> Iterator[int]:
    yield pid
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            yield from _tree(int(child))


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    progress: Callable[[float], None] | None = None,
    to_file: Path | None = None,
) -> Run:
    """Run a command; its peak tree RSS, wall and CPU seconds (its own and its children's).
    ``progress`` is called with the peak so far every PROGRESS_S (a long run that is cut
    short still leaves its figures). ``to_file``: its output goes there, not to ``stdout``."""
    started = last = time.perf_counter()
    sink = to_file.open("w") if to_file is not None else subprocess.PIPE
    child = subprocess.Popen(args, env=env, cwd=cwd, stdout=sink, text=True)
    peak = 0
    done = threading.Event()
    out: list[str] = []

    def read() -> None:
        if child.stdout is None:
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped yet
            out.append("")
        else:
            out.append(child.stdout.read())
        done.set()

    threading.Thread(target=read, daemon=True).start()
    while not done.wait(SAMPLE_S):
        peak = max(peak, sum(_rss_kb(pid) for pid in _tree(child.pid)))
        if progress is not None and time.perf_counter() - last > PROGRESS_S:
            last = time.perf_counter()
            progress(peak / 1024)
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0,):
        sys.exit(f"{args[2:]} failed ({os.waitstatus_to_exitcode(status)}): {out[0][-2000:]}")
    return Run(peak / 1024, seconds, usage.ru_utime + usage.ru_stime, out[0])


# -- the floor of an import ------------------------------------------------------------------


def floor(path: Path, db_path: Path) -> None:
    """Child process: csv + email-validator + one executemany, nothing else."""
    import sqlite3

    from email_validator import validate_email

    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE s (email TEXT UNIQUE, sections TEXT)")

    def rows() -> Iterator[tuple[str, str]]:
        with path.open(newline="") as f:
            for email, sections in csv.reader(f):
                if email == "email":
                    continue
                valid = validate_email(email, check_deliverability=False)
                yield valid.normalized.lower(), sections

    with conn:
        conn.executemany("INSERT INTO s VALUES (?, ?)", rows())
    conn.close()


# -- the bench -------------------------------------------------------------------------------


def write_list(path: Path, readers: int) -> None:
    with path.open("w") as f:
        f.write("email,sections\n")
        for i in range(readers):
            sections = "ml" if i % 10 in (1, 2) else "systems" if i % 10 == 3 else ""
            f.write(f"reader{i:07d}@example.com,{sections}\n")


def environment(url: str, port: int, folder: Path, dkim: bool) -> dict[str, str]:
    env = {
        **os.environ,
        "DIGEST_DATABASE_URL": url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(port),
        "DIGEST_NEWSLETTER_FROM": "Weekend Reading <news@example.org>",
        "DIGEST_NEWSLETTER_BASE_URL": "https://digest.example.org",
    }
    if dkim:
        from send import dkim_settings

        for key, value in dkim_settings(folder).items():
            env[f"DIGEST_SMTP_{key.upper()}"] = str(value)
    return env


def bench(readers: int, args: argparse.Namespace, port: int, server: subprocess.Popen[str]) -> None:
    from busy_week import END, fill_week

    from digest.storage import Database

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'bench.db'}"
        db = Database(url)
        fill_week(db, args.blogs, args.posts)
        db.dispose()
        path = folder / "readers.csv"
        write_list(path, readers)
        env = environment(url, port, folder, args.dkim)
        me = [sys.executable, __file__]
        base = measure([*me, "--floor", str(path), str(folder / "floor.db")], env, folder)
        digest = [sys.executable, "-m", "digest"]
        imported = measure([*digest, "subscribers", "import", str(path)], env, folder)
        print(
            f"{readers:>9,} import: peak {imported.peak_mb:6.0f} MB, {imported.seconds:6.1f} s, "
            f"CPU {imported.cpu:6.1f} s = {imported.cpu / base.cpu:.2f} x the floor's "
            f"({base.cpu:.1f} s, {base.peak_mb:.0f} MB); {imported.stdout.strip()}",
            flush=True,
        )
        dry_run(readers, env, folder, digest)
        if args.no_send:
            return
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write("count\n")
        server.stdin.flush()
        before = int(server.stdout.readline().split()[0])
        began = time.perf_counter()

        def sink_count() -> list[str]:
            assert server.stdin is not None and server.stdout is not None
            server.stdin.write("count\n")
            server.stdin.flush()
            return server.stdout.readline().split()

        def progress(peak_mb: float) -> None:
            got = int(sink_count()[0]) - before
            print(
                f"  ... {time.perf_counter() - began:5.0f} s: {got:,} sent, "
                f"peak so far {peak_mb:.0f} MB",
                flush=True,
            )

        command = [*digest, "send", "--as-of", END.isoformat(), "--json"]
        sent = measure(command, env, folder, progress)
        count, size, sink_cpu = sink_count()
        summary = json.loads(sent.stdout)
        received = int(count) - before
        signed = "DKIM" if args.dkim else "unsigned"
        print(
            f"{readers:>9,} send ({signed}): peak {sent.peak_mb:6.0f} MB, {sent.seconds:6.1f} s, "
            f"{received / sent.seconds:5.0f} msg/s, CPU {sent.cpu / max(received, 1) * 1000:.2f}"
            f" ms/msg; sink got {received:,} (last {int(size) / 1000:.0f} KB, sink CPU "
            f"{sink_cpu} s in all); summary sent {summary.get('sent')}",
            flush=True,
        )
        if received != readers:
            sys.exit(f"expected {readers} messages, the sink got {received}")


def dry_run(readers: int, env: dict[str, str], folder: Path, digest: list[str]) -> None:
    """`digest send --dry-run --json` into a file (every recipient, a line each), as a user
    checks who would get what: its peak, and the file's recipients counted."""
    from busy_week import END

    out = folder / "dry-run.json"
    command = [*digest, "send", "--as-of", END.isoformat(), "--dry-run", "--json"]
    run = measure(command, env, folder, to_file=out)
    got = len(json.loads(out.read_text())["recipients"])
    print(
        f"{readers:>9,} dry run: peak {run.peak_mb:6.0f} MB, {run.seconds:6.1f} s, CPU "
        f"{run.cpu:6.1f} s; {got:,} recipients listed ({out.stat().st_size / 1e6:.0f} MB of JSON)",
        flush=True,
    )
    if got != readers:
        sys.exit(f"expected {readers} recipients, the dry run listed {got}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--blogs", type=int, default=300)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--dkim", action="store_true", help="sign with a 2048-bit RSA key")
    parser.add_argument("--no-send", action="store_true", help="measure the import only")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        sink()
        return
    if args.floor:
        floor(*args.floor)
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--sink"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())
    try:
        for readers in args.readers:
            bench(readers, args, port, server)
    finally:
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()
