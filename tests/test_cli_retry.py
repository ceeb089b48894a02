"""`digest feeds retry` and `digest poll --force` end to end: a real process, real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_digest
from tests.servers import FeedServer
from tests.test_cli_poll import env_for, serve


def test_force_fetches_feeds_backing_off_but_never_a_410_nor_a_retry_after(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    serve(http)  # a 410, a 429 with Retry-After 120, an HTML page (backing off after it)
    env = env_for(workdir, sqlite_url, http)
    assert run_digest(["poll"], env, workdir).returncode == 0
    forced = run_digest(["poll", "--force", "--json"], env, workdir)
    assert forced.returncode == 0, forced.stderr
    summary = json.loads(forced.stdout)
    assert (summary["feeds"], summary["skipped"], summary["gone"]) == (3, 1, 1)
    assert len(http.hits("/page.xml")) == 2
    assert len(http.hits("/gone.xml")) == 1 and len(http.hits("/busy.xml")) == 1

    text = run_digest(["poll", "--force"], env, workdir).stdout
    assert "; 1 feed skipped, backing off until " in text  # the 429: its server asked
    assert "; 1 gone feed skipped (HTTP 410): `digest feeds retry URL` polls it again" in text

    retried = run_digest(["feeds", "retry", "--all-failing", "--json"], env, workdir)
    assert retried.returncode == 0, retried.stderr
    was = {r["title"]: r["was"] for r in json.loads(retried.stdout)}
    assert was == {"Gone blog": "gone", "Busy blog": "backoff", "Page": "error"}
    assert run_digest(["poll"], env, workdir).returncode == 0
    assert len(http.hits("/gone.xml")) == 2 and len(http.hits("/busy.xml")) == 2


def test_retry_says_what_it_did_and_refuses_an_unknown_url(
    workdir: Path, sqlite_url: str, http: FeedServer
) -> None:
    serve(http)
    env = env_for(workdir, sqlite_url, http)
    assert run_digest(["poll"], env, workdir).returncode == 0
    listed = run_digest(["feeds"], env, workdir)
    assert "1 feed gone (HTTP 410): `digest feeds retry URL` polls it again" in listed.stderr
    page = http.url("/page.xml")
    done = run_digest(["feeds", "retry", page], env, workdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"reset Page <{page}> (was failing: ")
    assert done.stdout.rstrip().endswith("the next poll fetches it")

    unknown = run_digest(["feeds", "retry", "https://nowhere.example/feed"], env, workdir)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.strip() == (
        "Error: no feed at https://nowhere.example/feed: `digest feeds` lists them"
    )
    neither = run_digest(["feeds", "retry"], env, workdir)
    assert neither.returncode == 2 and "--all-failing" in neither.stderr
    assert "Traceback" not in unknown.stderr + neither.stderr
