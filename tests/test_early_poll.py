"""`digest poll` with feeds to fetch on SQLite: its first requests go out before SQLAlchemy has
loaded (ingest/early.py), and it ends as the whole poll ends: the same summary, the same
stored state, the same refusal of a second poll."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from digest.storage import Database
from digest.tables import FEEDS, FETCHES, POSTS
from tests.conftest import poll_while_one_is_held, run_digest, run_python
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Request, Response

# The end of the harnesses below: the command run in this process, then what they saw.
RUN_AND_SAY_SEEN = """
from digest.cli import cli
try:
    cli(sys.argv[1:], prog_name="digest")
except SystemExit:
    pass
print(json.dumps(seen), file=sys.stderr)
"""

# `digest poll` in process, the database's thread held until the transport has sent its first
# request: a poll that needed the database first would never send one (the gate gives up after
# 60 s and says so). Prints what was loaded when that request went out (stderr, last line).
HARNESS = (
    """
import json, sys, threading
import digest.ingest.early as early
from digest.ingest.transport import FeedTransport
first_sent, seen = threading.Event(), {}
opening = early._Opening._open
def gated(self, url, held):
    seen["gate"] = "opened" if first_sent.wait(60) else "timed out"
    opening(self, url, held)
early._Opening._open = gated
handle = FeedTransport.handle_async_request
async def first_noted(self, request):
    if not first_sent.is_set():
        seen["sqlalchemy"] = sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy")
        seen["storage"] = "digest.storage" in sys.modules
        first_sent.set()
    return await handle(self, request)
FeedTransport.handle_async_request = first_noted
"""
    + RUN_AND_SAY_SEEN
)


class Feeds:
    """Four feeds: one answering 304 to its ETag, one the same body again, one with new posts
    on the second poll, one failing; two databases following the same list."""

    def __init__(self, http: FeedServer, root: Path) -> None:
        self.stage = 1
        http.route("/etag.xml", self._etag)
        http.route("/same.xml", Response(200, rss(2, site="https://same.example")))
        http.route("/grows.xml", lambda _r: Response(200, rss(2 * self.stage, site="https://g.x")))
        http.route("/fails.xml", Response(503))
        names = ("etag", "same", "grows", "fails")
        self.envs = []
        for db in ("early", "whole"):
            opml = write_opml(
                root / f"{db}.opml", [("ML", n, http.url(f"/{n}.xml")) for n in names]
            )
            url = f"sqlite:///{root / db}.db"
            self.envs.append({"DIGEST_DATABASE_URL": url, "DIGEST_FEEDS_OPML": str(opml)})

    @staticmethod
    def _etag(req: Request) -> Response:
        if req.headers.get("if-none-match") == '"1"':
            return Response(304, headers={"ETag": '"1"'})
        return Response(200, rss(3, site="https://etag.example"), {"ETag": '"1"'})


def test_the_first_request_goes_out_before_the_database_layer_and_ends_as_the_whole_poll(
    workdir: Path, http: FeedServer
) -> None:
    feeds = Feeds(http, workdir)
    for env in feeds.envs:  # the first poll creates the database: the whole poll
        first = run_digest(["poll", "--json"], env, workdir)
        assert first.returncode == 0, first.stderr
    feeds.stage = 2
    early_env, whole_env = feeds.envs
    os.utime(whole_env["DIGEST_FEEDS_OPML"])  # touched: the list to look at, the whole poll

    early = run_python(HARNESS, ["poll", "--json"], early_env, workdir)
    whole = run_digest(["poll", "--json"], whole_env, workdir)

    assert early.returncode == whole.returncode == 0, early.stderr + whole.stderr
    seen = json.loads(early.stderr.strip().splitlines()[-1])
    assert seen == {"gate": "opened", "sqlalchemy": [], "storage": False}
    summaries = [_without_time(json.loads(done.stdout)) for done in (early, whole)]
    assert summaries[0] == summaries[1]
    assert (summaries[0]["feeds"], summaries[0]["new_posts"], summaries[0]["skipped"]) == (3, 2, 1)
    assert _stored(early_env) == _stored(whole_env)


# `digest poll` in process, the database's thread held until every response is in (so the
# bodies are there to parse while it has not opened yet), every import of another thread from
# that thread's start until it hands its database over (sets its future: all it imports is
# imported by then) noted. Prints the gate's fate, the imports the database's thread made and
# the others' (stderr, last line).
CONCURRENT = (
    """
import json, sys, threading
RESPONSES = int(sys.argv.pop(1))  # to wait for before the database's thread goes on
import digest.ingest.early as early
from digest.ingest.transport import FeedTransport
answered, opening_now = threading.Event(), threading.Event()
counted, seen = [0], {"mine": 0, "others": []}
def noted(event, args):
    if event != "import" or not opening_now.is_set():
        return
    me = threading.current_thread().name
    if me == "digest-open-database":
        seen["mine"] += 1
    else:
        seen["others"].append(f"{me}: {args[0]}")
sys.addaudithook(noted)
opening = early._Opening._open
def handing_over(future, name):
    hand_over = getattr(future, name)
    def handed(value):
        opening_now.clear()
        hand_over(value)
    setattr(future, name, handed)
def gated(self, url, held):
    opening_now.set()
    handing_over(self.future, "set_result")
    handing_over(self.future, "set_exception")
    seen["gate"] = "opened" if answered.wait(60) else "timed out"
    opening(self, url, held)
early._Opening._open = gated
handle = FeedTransport.handle_async_request
async def counting(self, request):
    response = await handle(self, request)
    counted[0] += 1
    if counted[0] == RESPONSES:
        answered.set()
    return response
FeedTransport.handle_async_request = counting
"""
    + RUN_AND_SAY_SEEN
)


def test_no_thread_imports_while_the_database_thread_does(workdir: Path, http: FeedServer) -> None:
    """Python hands a thread a half-loaded module rather than deadlock when two threads import
    at once: a forced poll's parse of a recovered feed (the parser imported in a thread) beside
    the database's thread once stored the feed as an error. Parsing waits for the database."""
    feeds = Feeds(http, workdir)
    env = feeds.envs[0]
    assert run_digest(["poll", "--json"], env, workdir).returncode == 0
    feeds.stage = 2  # grows.xml has new posts: a body to parse, in a thread (one body)

    early = run_python(CONCURRENT, ["4", "poll", "--force", "--json"], env, workdir)

    assert early.returncode == 0, early.stderr
    seen = json.loads(early.stderr.strip().splitlines()[-1])
    assert seen["gate"] == "opened" and seen["mine"] > 50  # the database layer, in its thread
    assert seen["others"] == []
    summary = json.loads(early.stdout)
    assert (summary["feeds"], summary["new_posts"], summary["errors"]) == (4, 2, 1)


def _without_time(summary: dict[str, Any]) -> dict[str, Any]:
    # When the failing feed may be tried again counts from each database's first poll.
    return {k: v for k, v in summary.items() if k not in ("elapsed_s", "skipped_until")}


def _stored(env: dict[str, str]) -> dict[str, Any]:
    """What the polls left: each feed's health and validators, posts, fetches by outcome."""
    db = Database(env["DIGEST_DATABASE_URL"])
    columns = ("url", "status", "etag", "body_hash", "error_count", "last_status_code")
    try:
        with db.begin() as conn:
            feeds = [tuple(r) for r in conn.execute(select(*(FEEDS.c[c] for c in columns)))]
            posts = conn.execute(select(func.count()).select_from(POSTS)).scalar()
            fetches = conn.execute(
                select(FETCHES.c.outcome, func.count()).group_by(FETCHES.c.outcome)
            )
            by_outcome = sorted((str(o), n) for o, n in fetches)
        polls = db.get_meta("last_poll")
    finally:
        db.dispose()
    record = _without_time(json.loads(polls or "{}"))
    record.pop("at", None)
    return {"feeds": sorted(feeds), "posts": posts, "fetches": by_outcome, "record": record}


def test_a_second_poll_is_refused_while_an_early_one_runs(workdir: Path, http: FeedServer) -> None:
    env = Feeds(http, workdir).envs[0]
    assert run_digest(["poll", "--json"], env, workdir).returncode == 0
    held = poll_while_one_is_held(env, workdir, http)  # an early poll: its lock by sqlite3
    second, out, err = held.second, held.first_out, held.first_err
    assert second.returncode == 1 and second.stdout == ""
    assert second.stderr.startswith("Error: another poll holds database ")
    assert f": pid {held.first_pid} on " in second.stderr and second.stderr.count("\n") == 1
    assert held.first_code == 0, err
    assert json.loads(out)["feeds"] == 3  # the failing one backs off


# The database's thread fails (once): the early poll gives way to the whole poll.
FAILING = """
import sys
import digest.ingest.poll as poll
from digest.errors import StorageError
real = poll.OpenedLate.__init__
def fails_once(self, url, held):
    poll.OpenedLate.__init__ = real
    print("the thread failed", file=sys.stderr)
    raise StorageError("cannot open it this time")
poll.OpenedLate.__init__ = fails_once
from digest.cli import cli
cli(sys.argv[1:], prog_name="digest")
"""


def test_a_database_that_fails_to_open_in_the_thread_gives_way_to_the_whole_poll(
    workdir: Path, http: FeedServer
) -> None:
    feeds = Feeds(http, workdir)
    env = feeds.envs[0]
    assert run_digest(["poll", "--json"], env, workdir).returncode == 0
    feeds.stage = 2
    done = run_python(FAILING, ["poll", "--json"], env, workdir)
    assert done.returncode == 0, done.stderr
    assert "the thread failed" in done.stderr  # the early poll ran, and gave way
    summary = json.loads(done.stdout)
    assert (summary["feeds"], summary["new_posts"], summary["skipped"]) == (3, 2, 1)
    db = Database(env["DIGEST_DATABASE_URL"])
    try:
        assert db.get_meta("poll_lock") is None  # released by the whole poll, ours gone before
    finally:
        db.dispose()
