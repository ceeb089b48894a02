"""digest.startup: the CLI's start-up runs without cyclic collections; every command gets them
back, frozen past what the imports made (the poll once its fetch code is loaded)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digest import startup
from digest.ingest import fetch
from tests.conftest import run_cli
from tests.poll_helpers import rss, write_opml
from tests.servers import FeedServer, Response


@pytest.fixture
def paused() -> Iterator[None]:
    """Collections paused as `digest` pauses them; on again and unfrozen afterwards."""
    startup.pause_collections()
    try:
        yield
    finally:
        startup.resume_collections()
        gc.enable()
        gc.unfreeze()


def test_resume_freezes_what_was_made_and_collects_again(paused: None) -> None:
    assert not gc.isenabled()
    startup.resume_collections()
    assert gc.isenabled() and gc.get_freeze_count() > 0


def test_resume_without_a_pause_changes_nothing() -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    startup.resume_collections()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_pause_leaves_collections_off_if_they_were(paused: None) -> None:
    startup.pause_collections()  # again: still paused once, resumed once
    startup.resume_collections()
    assert gc.isenabled()


def test_a_command_gets_its_collections_back(paused: None, tmp_path: Path) -> None:
    result = run_cli(["config", "--json"], {"DIGEST_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"})
    assert result.exit_code == 0, result.output
    assert gc.isenabled()


def test_the_poll_gets_them_back_once_it_fetches(
    paused: None, tmp_path: Path, http: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    collecting_at_make_client: list[bool] = []
    real = fetch.make_client

    def spy(*args: Any, **kw: Any) -> Any:
        collecting_at_make_client.append(gc.isenabled())
        return real(*args, **kw)

    monkeypatch.setattr(fetch, "make_client", spy)
    http.route("/f", Response(200, rss(2)))
    opml = tmp_path / "feeds.opml"
    write_opml(opml, [("ML", "F", http.url("/f"))])
    env = {"DIGEST_DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "DIGEST_FEEDS_OPML": str(opml)}
    result = run_cli(["poll", "--json"], env)
    assert result.exit_code == 0, result.output
    assert gc.isenabled()
    assert collecting_at_make_client == [False]  # up to its fetch code: start-up
