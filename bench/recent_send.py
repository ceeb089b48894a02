"""The first send of a soak-like database: `digest preview` and `digest send` of an issue of
~40,000 recent posts to 200 readers, CPU seconds and peak RSS, for this checkout and a snapshot
of other code (``--before``) in the same run, alternating.

    python3 ../shared/bench/feedfarm.py --feeds 2000 --hosts 8 --latency-ms 5 --recent \\
        --port 8931 &                             # the soak's farm
    curl -s http://127.0.0.2:8931/feeds.opml > /tmp/feeds.opml
    DIGEST_DATABASE_URL=sqlite:////tmp/recent.db DIGEST_FEEDS_OPML=/tmp/feeds.opml \\
        DIGEST_FEEDS_ALLOW_NETWORKS=127.0.0.0/8 .venv/bin/digest poll
    DIGEST_DATABASE_URL=sqlite:////tmp/recent.db .venv/bin/digest subscribers import 200.csv
    git archive main src templates | tar -x -C /tmp/before
    .venv/bin/python bench/recent_send.py /tmp/recent.db /tmp/feeds.opml \\
        --before /tmp/before/src

Each send runs on a fresh copy of the database, so every version sends the same issue #1
(``newsletter.send_at = cron: */10 * * * *`` as in bench/soak.py: the first window is the
week before, every recent post). The SMTP sink is bench/soak.py's counting aiosmtpd, in this
process. CPU is the child's user + system (rusage), RSS its peak (ru_maxrss).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from poll import DIGEST  # noqa: E402
from soak import CountingSink  # noqa: E402


@dataclass(frozen=True)
class Run:
    cpu_s: float
    peak_mb: float


def measure(cmd: list[str], env: dict[str, str]) -> Run:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err[-2000:]}")
    return Run(usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("database", type=Path, help="a soak-like SQLite database (see above)")
    p.add_argument("opml", type=Path, help="the farm's feeds.opml the database was polled from")
    p.add_argument("--before", type=Path, help="src folder of the code to compare with")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    versions = {"after": str(BENCH.parent / "src")}
    if args.before:
        versions = {"before": str(args.before.resolve()), **versions}
    sink = CountingSink()
    port = sink.start()
    results: dict[tuple[str, str], list[Run]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="digest-recent-send-") as tmp:
            for _ in range(args.rounds):
                for name, src in versions.items():
                    db = Path(tmp) / f"{name}.db"
                    shutil.copyfile(args.database, db)
                    env = {
                        **os.environ,
                        "PYTHONPATH": src,
                        "DIGEST_DATABASE_URL": f"sqlite:///{db}",
                        "DIGEST_FEEDS_OPML": str(args.opml.resolve()),
                        "DIGEST_NEWSLETTER_SEND_AT": "cron: */10 * * * *",
                        "DIGEST_NEWSLETTER_TIMEZONE": "UTC",
                        "DIGEST_SMTP_HOST": "127.0.0.1",
                        "DIGEST_SMTP_PORT": str(port),
                    }
                    for command in ("preview", "send"):
                        output = ["-o", str(Path(tmp) / "preview.html")]
                        args_ = output if command == "preview" else []
                        run = measure([str(DIGEST), command, *args_], env)
                        results.setdefault((name, command), []).append(run)
                        print(f"{name:6} {command:7} {run.cpu_s:6.2f} s CPU {run.peak_mb:6.0f} MB")
    finally:
        sink.stop()
    print(f"sink counted {sink.messages} messages")
    for (name, command), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        best = min(r.cpu_s for r in runs)
        peak = max(r.peak_mb for r in runs)
        print(f"{command:7} {name:6} best {best:6.2f} s CPU, peak RSS {peak:5.0f} MB")


if __name__ == "__main__":
    main()
