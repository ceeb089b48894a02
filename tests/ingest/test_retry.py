"""`digest feeds retry`'s reset, a re-added feed starting fresh, and the poll's words for the
feeds it left alone (backing off, asked to wait, gone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.errors import InputError
from digest.feedlist.opml import read_opml
from digest.ingest import policy
from digest.ingest.feedsync import sync_feeds
from digest.ingest.retry import retry_failing, retry_feed
from digest.ingest.summary import PollSummary
from digest.types import FeedStatus
from tests.ingest.test_poll import T0, Setup, env  # noqa: F401  (the fixture)
from tests.servers import Response

LATER = T0 + timedelta(minutes=1)


def gone_and_failing(env: Setup) -> None:  # noqa: F811
    env.http.route("/gone", Response(410))
    env.http.route("/down", Response(503))
    env.http.route(
        "/ok", Response(200, b"<rss version='2.0'><channel><title>t</title></channel></rss>")
    )
    env.feeds(("ML", "Gone", "/gone"), ("ML", "Down", "/down"), ("ML", "Fine", "/ok"))
    env.poll()
    assert env.feed("/gone").status == FeedStatus.GONE
    assert env.feed("/down").next_fetch_at is not None


def test_retry_resets_a_gone_feed_and_the_next_poll_fetches_it(env: Setup) -> None:  # noqa: F811
    gone_and_failing(env)
    assert env.poll(LATER).skipped == 2  # gone, and down backing off
    done = retry_feed(env.db, env.http.url("/gone"))
    assert (done.was, done.title) == (FeedStatus.GONE, "Gone")
    feed = env.feed("/gone")
    assert (feed.status, feed.error_count, feed.failing_since, feed.last_error) == (
        FeedStatus.NEW, 0, None, None,
    )  # fmt: skip
    hits = len(env.http.hits("/gone"))
    summary = env.poll(LATER)
    assert len(env.http.hits("/gone")) == hits + 1 and summary.skipped == 1


def test_retry_of_an_unknown_url_is_an_input_error(env: Setup) -> None:  # noqa: F811
    gone_and_failing(env)
    with pytest.raises(InputError, match="no feed at https://nowhere.example/feed"):
        retry_feed(env.db, "https://nowhere.example/feed")


def test_retry_all_failing_resets_only_the_failing_ones(env: Setup) -> None:  # noqa: F811
    gone_and_failing(env)
    done = retry_failing(env.db)
    assert sorted(r.title or "" for r in done) == ["Down", "Gone"]
    assert env.feed("/down").next_fetch_at is None
    assert env.feed("/ok").status == FeedStatus.OK  # untouched
    assert retry_failing(env.db) == []


def test_a_feed_removed_then_listed_again_starts_fresh(env: Setup) -> None:  # noqa: F811
    gone_and_failing(env)
    env.feeds(("ML", "Down", "/down"), ("ML", "Fine", "/ok"))
    sync_feeds(env.db, read_opml(env.opml), LATER)
    assert not env.feed("/gone").active
    env.feeds(("ML", "Gone", "/gone"), ("ML", "Down", "/down"), ("ML", "Fine", "/ok"))
    sync_feeds(env.db, read_opml(env.opml), LATER)
    feed = env.feed("/gone")
    assert feed.active and (feed.status, feed.error_count) == (FeedStatus.NEW, 0)
    assert env.feed("/down").next_fetch_at is not None  # never removed: its backoff stands


NOON = datetime(2026, 12, 6, 11, 0, tzinfo=UTC)


def test_the_summary_counts_the_feeds_left_alone_and_until_when() -> None:
    Hold = policy.Hold  # noqa: N806
    summary = PollSummary(feeds=1, held=policy.Held({Hold.BACKING_OFF: 1}, NOON))
    assert summary.line("Europe/Paris").endswith(
        "; 1 feed skipped, backing off until 2026-12-06 12:00 CET: --force polls it"
    )
    summary.held = policy.Held({Hold.BACKING_OFF: 2, Hold.ASKED_TO_WAIT: 1, Hold.GONE: 1}, NOON)
    assert summary.line().endswith(
        "; 3 feeds skipped, backing off (the first until 2026-12-06 11:00 UTC): --force polls 2"
        " (1 asked to wait by their server); 1 gone feed skipped (HTTP 410): "
        "`digest feeds retry URL` polls it again"
    )
    assert summary.held_json() == {
        "skipped": 3,
        "skipped_until": "2026-12-06T11:00:00+00:00",
        "gone": 1,
    }
    assert "skipped" not in PollSummary(feeds=1).line()
