"""The issue in a real browser (Debian's Chromium, driven by Playwright; axe-core from the npm
registry): the email's HTML passes axe-core light and dark, and the curator's desk (`digest
preview --serve`) is driven by hand: an intro, a pick with a note, a skip, each changing the
issue; a POST without the desk's token changes nothing.

Screenshots of the issue at 375 and 600 px, light and dark, and of the desk go to
$DIGEST_TEST_SHOTS when it is set. One week polled once for the module; each test works on a
copy of its database."""

from __future__ import annotations

import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from digest.configfile import load_settings
from digest.issue.curation import pending, pending_intro
from digest.issue.newsletter import Newsletter
from digest.models import Post
from digest.storage import Database
from digest.web.desk import Desk, make_server
from tests.browser_helpers import axe_violations, describe, shoot
from tests.conftest import run_cli
from tests.servers import FeedServer
from tests.week_helpers import ESSAY, FOLDED, build_week, week_end

pytestmark = pytest.mark.slow
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """The week polled once: its folder (the database as week.db) and its settings."""
    folder = tmp_path_factory.mktemp("week")
    http = FeedServer()
    try:
        yield folder, build_week(folder, f"sqlite:///{folder / 'week.db'}", http, week_end())
    finally:
        http.close()


def copy_of(week: tuple[Path, dict[str, str]], into: Path) -> dict[str, str]:
    folder, env = week
    shutil.copy(folder / "week.db", into / "digest.db")
    return {**env, "DIGEST_DATABASE_URL": f"sqlite:///{into / 'digest.db'}"}


def axe_passes(page: Any) -> set[str]:
    axe_violations(page)  # injects axe-core (or skips the test without it)
    passed = page.evaluate("async () => (await axe.run(document)).passes.map(p => p.id)")
    return set(passed)


def test_the_email_passes_axe_core_light_and_dark(
    week: tuple[Path, dict[str, str]], browser: Any, tmp_path: Path
) -> None:
    # (The week first: its poll runs an event loop, which can't start under Playwright's.)
    env = copy_of(week, tmp_path)
    env.update(DIGEST_WEB_SIGNUP="true", DIGEST_NEWSLETTER_POSTAL_ADDRESS="1 Main St, Springfield")
    intro = (
        "A week of *harnesses* and terminals: start with [Lil'Log](https://lilianweng.example/)."
    )
    assert run_cli(["intro", intro], env).exit_code == 0
    with Database(env["DIGEST_DATABASE_URL"]).session() as s:
        essay = s.scalar(select(Post.link).where(Post.title == ESSAY))
    assert essay is not None
    note = "Why it matters: the **evaluators** are the weak point."
    assert run_cli(["pick", essay, "--note", note], env).exit_code == 0
    built = run_cli(["preview", "-o", str(tmp_path / "issue.html")], env)
    assert built.exit_code == 0, built.output
    html = (tmp_path / "issue.html").read_text()
    assert f"Also from {FOLDED}" in html and "<strong>evaluators</strong>" in html

    page = browser.new_page()
    page.set_content(html)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found = axe_violations(page, impacts=SERIOUS)
        assert not found, f"the email ({scheme}):\n{describe(found)}"
        shoot(page, f"issue-{scheme}", widths=(375, 600))
    assert {"page-has-heading-one", "heading-order", "color-contrast"} <= axe_passes(page)
    page.close()


@pytest.fixture
def desk(week: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[tuple[str, Database]]:
    """The curator's desk on a copy of the week, in this process: its URL and database."""
    env = copy_of(week, tmp_path)
    settings = load_settings(env=env)
    db = Database(settings.database.url)
    server = make_server(
        Desk(db, settings, Newsletter.of(settings), None, "127.0.0.1"), "127.0.0.1", 0
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", db
    server.shutdown()
    server.server_close()
    db.dispose()


def post_id(db: Database, title: str) -> int:
    with db.session() as s:
        found = s.scalar(select(Post.id).where(Post.title == title))
    assert found is not None
    return found


def test_the_curators_desk_picks_notes_skips_and_opens_the_issue(
    week: tuple[Path, dict[str, str]], browser: Any, desk: tuple[str, Database]
) -> None:
    url, db = desk
    page = browser.new_page()
    page.set_default_timeout(10_000)
    page.goto(url)
    assert page.locator("h1").inner_text() == "Weekend Reading #1"
    assert not axe_violations(page, impacts=SERIOUS), describe(
        axe_violations(page, impacts=SERIOUS)
    )
    shoot(page, "desk-before", widths=(1280,))

    # The intro: typed, saved, shown under the issue's title.
    page.fill("#intro", "This week: *harnesses* and [terminals](https://jvns.example/).")
    page.click("button:has-text('Save intro')")
    page.wait_for_selector("text=Intro saved.")
    assert page.locator(".intro em").inner_text() == "harnesses"
    assert pending_intro(db) == "This week: *harnesses* and [terminals](https://jvns.example/)."

    # A pick with a note: the post leads the picks, the note under it.
    quote = post_id(db, "Quoting Dean W. Ball")
    block = page.locator(f"#post-{quote}")
    block.locator("summary:has-text('Note')").click()
    block.locator("input[name=note]").fill(
        "The **economics** of frontier models, in one paragraph."
    )
    block.locator("button:has-text('Pick with note')").click()
    page.wait_for_selector("text=Picked.")
    picked = page.locator(f"td.pk#post-{quote}")
    assert picked.locator(".note strong").inner_text() == "economics"
    assert "the editor's pick" in picked.inner_text()
    assert [(c.verdict.value, c.note) for c in pending(db)] == [
        ("pick", "The **economics** of frontier models, in one paragraph.")
    ]

    # A skip: the post leaves the issue and is listed as skipped, to be taken back.
    terminal = post_id(db, 'What\'s involved in getting a "modern" terminal setup?')
    page.locator(f"#post-{terminal} button:has-text('Skip')").first.click()
    page.wait_for_selector("text=Skipped: it is out of the issue.")
    assert page.locator(f"#post-{terminal}").count() == 0
    assert "What's involved" in page.locator("aside").inner_text()
    shoot(page, "desk-after", widths=(1280,))
    page.close()

    # A POST without the desk's token (another site's page could send one): nothing changes.
    before = [(c.url, c.verdict) for c in pending(db)]
    essay = post_id(db, ESSAY)
    with db.session() as s:
        essay_url = s.scalar(select(Post.canonical_url).where(Post.id == essay))
    for form in (f"url={essay_url}", f"url={essay_url}&csrf=forged"):
        request = urllib.request.Request(
            url + "skip",
            data=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
        assert "Nothing changed" in refused.value.read().decode()
    assert [(c.url, c.verdict) for c in pending(db)] == before
    # With the page's own token but sent to another host name (a DNS rebinding): refused.
    page_html = urllib.request.urlopen(url, timeout=10).read().decode()
    token = re.search(r'name="csrf" value="([^"]+)"', page_html)
    assert token
    request = urllib.request.Request(
        url + "skip",
        data=f"url={essay_url}&csrf={token.group(1)}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Host": "evil.example"},
    )
    with pytest.raises(urllib.error.HTTPError) as rebound:
        urllib.request.urlopen(request, timeout=10)
    assert rebound.value.code == 403
    assert [(c.url, c.verdict) for c in pending(db)] == before
