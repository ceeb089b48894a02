"""The readers' pages in a real browser: headless Chromium (Debian's, driven by Playwright with
the system browser: nothing downloaded) against the web endpoint served by uvicorn in this
process, with a real SMTP server, on a five-year database (260 issues).

- The whole reader's path (issue 24): sign up (the page shows the address), confirm, the
  welcome email, one-click unsubscribe from its List-Unsubscribe header (a POST), subscribe
  again from that page with one section ticked; the next issue has only that section.
- axe-core on every page (the archive, an issue, sign-up, check inbox, confirm in 5 states,
  preferences in 6, unsubscribe in 3, the bad-link pages, 404), light and dark: 0 violations.

Screenshots of the pages at 375 and 1280 px, light and dark, go to $DIGEST_TEST_SHOTS when set.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from digest.config import Settings
from digest.delivery.consent import sign_up
from digest.delivery.send import send_issue
from digest.delivery.subscribers import add_subscriber, find_subscriber
from digest.delivery.tokens import PREFERENCES, make_confirm_token, make_token
from digest.issue.plan import plan_issue, record_issue
from digest.models import Issue, Subscriber
from digest.storage import Database
from digest.web import serve
from tests.browser_helpers import SHOTS, assert_accessible, axe_violations, describe, shoot
from tests.conftest import free_port, wait_for
from tests.issue_helpers import SAT, add_feed, add_post
from tests.servers import SMTPSink
from tests.web.helpers import KEY, parsed, text_of

pytestmark = pytest.mark.slow
ISSUES = 260  # five years of Saturdays
WEEK = timedelta(days=7)
BLOGS = {"ml": ("Deep Notes", "Gradient Walk", "Tensor Diary"),
         "systems": ("Consensus Log", "Page Cache", "Queue Theory")}  # fmt: skip
OPML = """<?xml version="1.0"?>
<opml version="2.0"><body>
<outline text="ML">{ml}</outline>
<outline text="Systems">{systems}</outline>
</body></opml>"""


@dataclass
class Served:
    base: str
    db: Database
    smtp: SMTPSink
    settings: Settings

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [parsed(raw) for raw in self.smtp.raw if parsed(raw)["To"] == address]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The web endpoint on a database with 260 issues, the last one real (its posts in both
    sections), and a feed list of six blogs; SMTP to a sink."""
    folder = tmp_path_factory.mktemp("browser")
    outlines = {
        section: "".join(
            f'<outline type="rss" text="{t}" xmlUrl="https://{t.split()[0].lower()}.example/feed"'
            f' htmlUrl="https://{t.split()[0].lower()}.example/"/>'
            for t in titles
        )
        for section, titles in BLOGS.items()
    }
    (folder / "feeds.opml").write_text(OPML.format(**outlines))
    smtp, port = SMTPSink(), free_port()
    settings = Settings().replace(
        newsletter={"secret_key": KEY, "base_url": f"http://127.0.0.1:{port}",
                    "timezone": "Europe/London"},
        smtp={"host": "127.0.0.1", "port": smtp.port},
        web={"host": "127.0.0.1", "port": port, "signup": True},
        feeds={"opml": folder / "feeds.opml"},
    )  # fmt: skip
    db = Database(f"sqlite:///{folder / 'digest.db'}")
    _five_years(db, settings)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(db, settings), kwargs={"stop": stop})
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(base), 20, what="the web endpoint")
        yield Served(base, db, smtp, settings)
    finally:
        stop.set()
        thread.join(15)
        smtp.close()
        db.dispose()


def _five_years(db: Database, settings: Settings) -> None:
    """Issues #1-#259 as the archive lists them (sent, with picks), then #260 recorded from
    posts in both sections, as `digest send` records one."""
    with db.session() as s:
        for n in range(1, ISSUES):
            end = SAT - (ISSUES - n) * WEEK
            picks = f'["Pick {n}: on caches", "Pick {n}: on attention"]'
            s.add(Issue(number=n, window_start=end - WEEK, window_end=end, created_at=end,
                        subject=f"Weekend Reading #{n}", html="<html><body></body></html>",
                        text="", post_count=12, status="sent", pick_titles=picks))  # fmt: skip
    for section, titles in BLOGS.items():
        for title in titles:
            feed = add_feed(db, title, section)
            for k in range(3):
                add_post(db, feed, f"{title}, week 260, part {k}", date=SAT - timedelta(days=k + 1))
    assert record_issue(db, settings, plan_issue(db, settings, SAT)) is not None
    with db.session() as s:
        s.execute(update(Issue).where(Issue.number == ISSUES).values(status="sent"))


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def looked_at(page: Any, what: str, shot: str | None = None) -> None:
    """axe-core on the page, light and dark; its screenshots (light and dark) when named,
    and of its first screenful (a long page's full-length shot is too tall to look at)."""
    assert_accessible(page, what)
    if shot:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            shoot(page, f"{shot}-{scheme}")
            if SHOTS:
                for width in (375, 1280):
                    page.set_viewport_size({"width": width, "height": 800})
                    page.screenshot(path=f"{SHOTS}/{shot}-{scheme}-{width}-top.png")
        page.set_viewport_size({"width": 1280, "height": 800})
        page.emulate_media(color_scheme="light")


def test_the_readers_whole_path(browser: Any, served: Served) -> None:
    page = browser.new_page()
    page.set_default_timeout(10_000)
    page.goto(served.base + "/subscribe")
    page.fill("#email", "Reader@Example.com")
    page.click("button:has-text('Subscribe')")
    page.wait_for_selector("h1:has-text('Check your inbox')")
    assert "reader@example.com" in page.inner_text("main")  # the address, to spot a typo

    wait_for(lambda: served.mails_to("reader@example.com"), what="the confirmation email")
    link = re.search(r"http://\S+/confirm/\S+", text_of(served.smtp.raw[-1]))
    assert link is not None
    page.goto(link.group(0))
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("h1:has-text('You’re subscribed'), h1:has-text(\"You're subscribed\")")
    said = page.inner_text("main")
    assert re.search(r"Your first issue comes on Saturday \d+ \w+ at 8:00 \(London time\), "
                     r"and then every Saturday\.", said)  # fmt: skip
    assert page.get_attribute("text=read the latest issue", "href") == f"/issues/{ISSUES}"

    wait_for(lambda: len(served.mails_to("reader@example.com")) == 2, what="the welcome email")
    welcome = served.mails_to("reader@example.com")[1]
    assert welcome["Subject"] == "Welcome to Weekend Reading"
    text = " ".join(welcome.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    assert f"latest issue, #{ISSUES} (3–10 January 2026): {served.base}/issues/{ISSUES}" in text
    header = str(welcome["List-Unsubscribe"]).strip().strip("<>")
    assert header.startswith(served.base + "/unsubscribe/")

    # What a mail program does with that header: a POST of List-Unsubscribe=One-Click.
    page.goto(served.base + "/")
    page.evaluate(
        """url => { const f = document.createElement('form'); f.method = 'post'; f.action = url;
        const i = document.createElement('input'); i.type = 'hidden';
        i.name = 'List-Unsubscribe'; i.value = 'One-Click'; f.appendChild(i);
        document.body.appendChild(f); f.submit(); }""",
        header,
    )
    page.wait_for_selector("h1:has-text('unsubscribed')")
    assert find_subscriber(served.db, "reader@example.com").status == "unsubscribed"
    # Right there: subscribe again, Systems only.
    page.uncheck("input[name=sections][value=ml]")
    page.click("button:has-text('Subscribe again')")
    page.wait_for_selector("h1:has-text('subscribed again')")
    back = find_subscriber(served.db, "reader@example.com")
    assert (back.status, back.sections) == ("active", ("systems",))
    page.close()

    # The next issue, with posts in both sections, has only Systems for this reader.
    for section, titles in BLOGS.items():
        feed = add_feed(served.db, f"{titles[0]} too", section)
        add_post(served.db, feed, f"Next week in {section}", date=SAT + timedelta(days=3))
    summary = send_issue(served.db, served.settings, as_of=SAT + WEEK)
    assert summary.sent >= 1
    issue = served.mails_to("reader@example.com")[-1]
    assert issue["Subject"].startswith(f"Weekend Reading #{ISSUES + 1}")
    body = issue.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Next week in systems" in body and "Next week in ml" not in body
    assert "== SYSTEMS" in body and "MACHINE LEARNING" not in body


def test_every_page_passes_axe_light_and_dark(browser: Any, served: Served) -> None:
    db, base = served.db, served.base
    page = browser.new_page()
    page.set_default_timeout(10_000)

    page.goto(base + "/")
    assert page.locator(".issues li").count() == 50  # a page of them
    listed = page.inner_text(".issues")
    assert f"#{ISSUES} · 3–10 January 2026" in listed and "Picks: Pick 259: on caches" in listed
    looked_at(page, "the archive (260 issues, the first of 6 pages)", "archive")
    page.click("a[rel=next]")
    page.wait_for_url(base + "/?page=2")
    page.goto(base + "/?page=6")
    assert page.locator(".issues li").count() in (10, 11)  # 11 after the reader's path sent one
    assert "(page 6 of 6)" in page.inner_text("nav.nav")
    assert page.inner_text(".issues li:last-child").startswith("#1 · ")
    looked_at(page, "the archive's last page", "archive-last")
    page.goto(f"{base}/issues/{ISSUES}")
    looked_at(page, "an issue's web version", "issue")
    page.goto(base + "/nowhere")
    looked_at(page, "404", "not-found")

    # Sign-up: the form, a refused try, check your inbox.
    page.goto(base + "/subscribe")
    looked_at(page, "the sign-up page", "subscribe")
    for summary in page.locator("summary").all():
        summary.click()
    assert page.is_visible("a[href='https://consensus.example/']")
    looked_at(page, "the sign-up page, its blogs open", "subscribe-blogs")
    page.fill("#email", "not an address")
    page.evaluate("document.querySelector('#email').type = 'text'")  # past the browser's check
    page.click("button:has-text('Subscribe')")
    page.wait_for_selector(".error")
    looked_at(page, "the sign-up page with an error")
    page.fill("#email", "walk@example.com")
    page.click("button:has-text('Subscribe')")
    page.wait_for_selector("h1:has-text('Check your inbox')")
    looked_at(page, "check your inbox", "check-inbox")

    # Confirm: the button, a stale form, expired, done, already; a bad link.
    pending = sign_up(db, "pending@example.com", name=None, sections=None, now=SAT)
    token = make_confirm_token(KEY, pending.subscriber_id, "pending@example.com",
                               datetime.now(UTC) + timedelta(hours=1))  # fmt: skip
    page.goto(f"{base}/confirm/{token}")
    looked_at(page, "confirm: the button", "confirm")
    page.evaluate("document.querySelector('input[name=csrf]').value = 'stale'")
    page.click("button:has-text('Confirm')")
    page.wait_for_selector(".error")
    looked_at(page, "confirm: a stale form")
    expired = make_confirm_token(KEY, pending.subscriber_id, "pending@example.com", SAT)
    page.goto(f"{base}/confirm/{expired}")
    looked_at(page, "confirm: expired", "confirm-expired")
    page.goto(f"{base}/confirm/{token}")
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("h1:has-text('subscribed')")
    looked_at(page, "confirm: subscribed", "subscribed")
    page.goto(f"{base}/confirm/{token}")
    looked_at(page, "confirm: already subscribed")
    page.goto(f"{base}/confirm/1.1.AAAAAAAAAAAAAAAAAAAAAA")
    looked_at(page, "confirm: a bad link")

    # Preferences: active, saved, an error, unsubscribed (one form), subscribed again, bounced.
    info, _ = add_subscriber(db, "prefs@example.com")
    page.goto(f"{base}/preferences/{make_token(KEY, info.id, info.email, PREFERENCES)}")
    looked_at(page, "preferences: active", "preferences")
    page.uncheck("input[value=ml]")
    page.click("button:has-text('Save sections')")
    page.wait_for_selector(".notice")
    looked_at(page, "preferences: saved")
    page.uncheck("input[value=systems]")
    page.click("button:has-text('Save sections')")
    page.wait_for_selector(".error")
    looked_at(page, "preferences: no section ticked")
    page.click("button:has-text('Unsubscribe')")
    page.wait_for_selector("button:has-text('Subscribe again')")
    assert page.locator("form").count() == 1  # off the list: one form
    looked_at(page, "preferences: unsubscribed", "preferences-unsubscribed")
    page.check("input[value=ml]")
    page.click("button:has-text('Subscribe again')")
    page.wait_for_selector("text=Welcome back")
    looked_at(page, "preferences: subscribed again")
    bounced, _ = add_subscriber(db, "bounced@example.com")
    with db.session() as s:
        s.execute(update(Subscriber).where(Subscriber.id == bounced.id).values(status="bounced"))
    page.goto(f"{base}/preferences/{make_token(KEY, bounced.id, bounced.email, PREFERENCES)}")
    looked_at(page, "preferences: bounced")
    page.goto(f"{base}/preferences/nonsense")
    looked_at(page, "preferences: a bad link")

    # Unsubscribe: the button, done (and the way back), already; a bad link.
    leaving, _ = add_subscriber(db, "leaving@example.com")
    page.goto(f"{base}/unsubscribe/{make_token(KEY, leaving.id, leaving.email)}")
    looked_at(page, "unsubscribe: the button", "unsubscribe")
    page.click("button:has-text('Unsubscribe')")
    page.wait_for_selector("h1:has-text('unsubscribed')")
    looked_at(page, "unsubscribe: done", "unsubscribed")
    page.goto(f"{base}/unsubscribe/{make_token(KEY, leaving.id, leaving.email)}")
    looked_at(page, "unsubscribe: already")
    page.click("button:has-text('Only Systems')")
    page.wait_for_selector("h1:has-text('subscribed again')")
    looked_at(page, "unsubscribe: subscribed again", "subscribed-again")
    page.goto(f"{base}/unsubscribe/1.AAAAAAAAAAAAAAAAAAAAAA")
    looked_at(page, "unsubscribe: a bad link")

    # The welcome email, as a mail program shows it.
    wait_for(lambda: served.mails_to("pending@example.com"), what="the welcome email")
    html = served.mails_to("pending@example.com")[-1].get_body(("html",))
    assert html is not None
    page.set_content(html.get_content())
    # An email is no page (no landmarks, no h1 in mail programs): what a reader meets, only.
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found = axe_violations(page, impacts=("serious", "critical"))
        assert not found, f"the welcome email ({scheme}):\n{describe(found)}"
        shoot(page, f"welcome-email-{scheme}")
    page.close()
