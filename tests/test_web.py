"""The web endpoint: RFC 8058 one-click unsubscribe, the confirm page, bad tokens, the archive."""

from __future__ import annotations

import html
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from digest.config import Settings
from digest.delivery.subscribers import add_subscriber, list_subscribers, remove_subscriber
from digest.delivery.tokens import make_token
from digest.errors import ConfigError
from digest.issue.plan import plan_issue, record_issue
from digest.storage import Database
from digest.web import make_app, serve
from tests.conftest import free_port
from tests.issue_helpers import SAT, add_feed, add_post
from tests.web.helpers import serving

SETTINGS = Settings().replace(newsletter={"secret_key": "web-test-key"})


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    with TestClient(make_app(db, SETTINGS), follow_redirects=False) as c:
        yield c


def token_for(db: Database, email: str) -> str:
    info = next(s for s in list_subscribers(db) if s.email == email)
    return make_token("web-test-key", info.id, info.email)


def status_of(db: Database) -> dict[str, str]:
    return {s.email: s.status for s in list_subscribers(db)}


def test_get_shows_a_button_and_changes_nothing(db: Database, client: TestClient) -> None:
    add_subscriber(db, "a@example.com")
    r = client.get(f"/unsubscribe/{token_for(db, 'a@example.com')}")
    assert r.status_code == 200
    assert '<form method="post" action="">' in r.text
    assert "<button" in r.text and "a@example.com" in r.text
    assert "set-cookie" not in r.headers
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert client.head(f"/unsubscribe/{token_for(db, 'a@example.com')}").status_code == 200
    assert status_of(db) == {"a@example.com": "active"}


def test_one_click_post_unsubscribes_only_that_subscriber(db: Database, client: TestClient) -> None:
    add_subscriber(db, "a@example.com")
    add_subscriber(db, "b@example.com")
    url = f"/unsubscribe/{token_for(db, 'a@example.com')}"
    # What Gmail and others send (RFC 8058 3.2): a form body, no cookies, no auth.
    r = client.post(url, content=b"List-Unsubscribe=One-Click", headers={
        "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 200
    assert "location" not in r.headers and "set-cookie" not in r.headers
    assert "unsubscribed" in r.text
    assert status_of(db) == {"a@example.com": "unsubscribed", "b@example.com": "active"}
    assert list_subscribers(db, "unsubscribed")[0].unsubscribed_at is not None
    # Again (a second click, a retry): still 200.
    assert client.post(url).status_code == 200
    # A multipart body works too; the body is never needed.
    assert client.post(url, files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    assert "already unsubscribed" in client.get(url).text


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_forged_or_altered_tokens_get_400_and_change_nothing(
    db: Database, client: TestClient, method: str
) -> None:
    add_subscriber(db, "a@example.com")
    add_subscriber(db, "b@example.com")
    good = token_for(db, "a@example.com")
    good_id = int(good.split(".")[0])
    b_id = next(s.id for s in list_subscribers(db) if s.email == "b@example.com")
    forged = [
        f"{b_id}.{good.split('.')[1]}",  # a's MAC on b's id
        make_token("guessed-key", good_id, "a@example.com"),
        good[:-1] + ("A" if good[-1] != "A" else "B"),
        "1.AAAAAAAAAAAAAAAAAAAAAA",
        "nonsense",
        good + "x",
    ]
    for token in forged:
        r = client.request(method, f"/unsubscribe/{token}")
        assert r.status_code == 400, token
        assert "isn't valid" in r.text
    assert status_of(db) == {"a@example.com": "active", "b@example.com": "active"}


def test_token_of_a_removed_subscriber_is_dead(db: Database, client: TestClient) -> None:
    add_subscriber(db, "a@example.com")
    token = token_for(db, "a@example.com")
    remove_subscriber(db, "a@example.com")
    add_subscriber(db, "new@example.com")  # may reuse the id on SQLite
    assert client.post(f"/unsubscribe/{token}").status_code == 400
    assert status_of(db) == {"new@example.com": "active"}


def test_web_version_and_archive(db: Database, client: TestClient) -> None:
    feed = add_feed(db, "Deep Blog", "ml")
    add_post(db, feed, "Attention <again>", date=SAT - timedelta(days=2))
    issue = record_issue(db, SETTINGS, plan_issue(db, SETTINGS, SAT))
    assert issue is not None
    r = client.get("/issues/1")
    assert r.status_code == 200
    assert "Attention &lt;again&gt;" in r.text
    assert "unsubscribe.invalid" not in r.text
    index = client.get("/")
    assert index.status_code == 200
    assert 'href="/issues/1"' in index.text
    assert html.escape(issue.subject) in index.text
    assert client.get("/issues/2").status_code == 404
    assert client.get("/issues/abc").status_code == 404
    assert client.get("/nowhere").status_code == 404


def test_archive_when_empty(client: TestClient) -> None:
    assert "No issues yet" in client.get("/").text


def test_serve_until_stopped(db: Database) -> None:
    port = free_port()
    settings = SETTINGS.replace(web={"host": "127.0.0.1", "port": port})
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(db, settings), kwargs={"stop": stop})
    thread.start()
    try:
        for _ in range(100):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.ConnectError:
                threading.Event().wait(0.05)
        assert r.status_code == 200
        with pytest.raises(ConfigError, match="cannot listen"):
            serve(db, settings)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    "path", ["/issues/99999999999999999999999999", "/issues/2147483648", "/issues/-1", "/issues/x"]
)
def test_an_issue_number_out_of_range_is_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_no_page_can_be_framed_by_another_site(db: Database, client: TestClient) -> None:
    add_subscriber(db, "a@example.com")
    feed = add_feed(db, "Blog")
    add_post(db, feed, "Consensus", date=SAT - timedelta(days=1))
    assert record_issue(db, SETTINGS, plan_issue(db, SETTINGS, SAT)) is not None
    for path in (
        "/",
        "/issues/1",
        "/issues/7",
        "/nowhere",
        f"/unsubscribe/{token_for(db, 'a@example.com')}",
    ):
        r = client.get(path)
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path


@pytest.mark.slow
def test_slow_clients_are_dropped_and_the_others_served(db_url: str, tmp_path: Path) -> None:
    slow: list[socket.socket] = []
    with serving({"DIGEST_DATABASE_URL": db_url}, tmp_path) as (base, _):
        address = ("127.0.0.1", int(base.rsplit(":", 1)[1]))
        try:
            for _ in range(40):  # half-open requests: headers that never end
                s = socket.create_connection(address)
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                slow.append(s)
            for _ in range(40):  # whole headers, then a body that never ends
                s = socket.create_connection(address)
                s.sendall(
                    b"POST /preferences/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: 1000\r\n\r\na"
                )
                slow.append(s)
            began = time.monotonic()
            assert httpx.get(base + "/", timeout=3).status_code == 200
            for s in slow:  # each one is closed by the server within REQUEST_S (5 s) and a bit
                s.settimeout(max(0.1, began + 8 - time.monotonic()))
                assert s.recv(1024) == b""
            assert time.monotonic() - began < 8
        finally:
            for s in slow:
                s.close()
