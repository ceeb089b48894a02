"""Time `digest preview` of a busy week: 300 blogs x 20 posts, and premailer's share.

    .venv/bin/python bench/preview.py [--blogs 300] [--posts 20] [--runs 5]
    .venv/bin/python bench/preview.py --years 5     # the same week after five years of posts

Builds a SQLite database in a temporary folder (posts written directly: this measures the
preview, not polling), then times the real command end to end, and in one process the
steps: planning (the database query), layout + templates, and premailer's inlining.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from busy_week import END, fill_week, fill_years  # noqa: E402

from digest.config import Settings  # noqa: E402
from digest.ingest.health import failing_note  # noqa: E402
from digest.issue import render  # noqa: E402
from digest.issue.plan import plan_issue, render_plan  # noqa: E402
from digest.storage import Database, utcnow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blogs", type=int, default=300)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--years", type=int, default=0, help="years of history before the week (4 posts a week)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/digest.db"
        db = Database(url)
        fill_week(db, args.blogs, args.posts)
        history = fill_years(db, args.years) if args.years else 0
        digest = [sys.executable, "-m", "digest"]
        env = {"DIGEST_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")}
        # In the folder: a feeds.opml where it is run (this checkout's) would take the week's
        # blogs off the list.
        cmd = [*digest, "preview", "--as-of", "2026-01-10T08:00Z", "-o", f"{tmp}/week.html"]
        walls = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=tmp, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        size = Path(f"{tmp}/week.html").stat().st_size
        startup = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run([*digest, "--help"], env=env, cwd=tmp, check=True, capture_output=True)
            startup.append(time.perf_counter() - t0)

        inline_s = 0.0
        original = render.inline_css

        def timed_inline(html: str) -> str:
            nonlocal inline_s
            t = time.perf_counter()
            try:
                return original(html)
            finally:
                inline_s += time.perf_counter() - t

        render.inline_css = timed_inline  # type: ignore[assignment]
        settings = Settings()
        plans, renders = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            plan = plan_issue(db, settings, END)
            t1 = time.perf_counter()
            render_plan(db, settings, plan, health=failing_note(db, utcnow()))
            t2 = time.perf_counter()
            plans.append(t1 - t0)
            renders.append(t2 - t1)
        inline_per_run = inline_s / args.runs
        med = statistics.median
        print(
            f"preview of {args.blogs} blogs x {args.posts} posts "
            f"({args.blogs * args.posts} posts), {history:,} posts of {args.years} years "
            f"before it, median of {args.runs} runs"
        )
        print(f"  command, end to end     {med(walls):6.2f} s   (target < 1.5 s)")
        print(f"    of which start-up     {med(startup):6.2f} s   (`digest --help`)")
        print(f"  in process: plan        {med(plans):6.2f} s")
        print(f"  in process: render      {med(renders):6.2f} s")
        share = 100 * inline_per_run / max(1e-9, med(plans) + med(renders))
        print(f"    of which premailer    {inline_per_run:6.2f} s   ({share:.0f}% of plan+render)")
        print(f"  HTML size               {size / 1000:6.1f} KB  (budget 90 KB)")


if __name__ == "__main__":
    main()
