"""A reader signs up in a real browser: headless Chromium (Debian's, driven by Playwright with
the system browser: nothing downloaded) against a real `digest serve` and a real SMTP server.
Fill in the form, read the confirmation email, open its link, press Confirm, reach the
preferences page, switch to Systems only, unsubscribe; the database shows each step.

Screenshots of the sign-up, confirm and preferences pages at 375 and 1280 px go to
$DIGEST_TEST_SHOTS when it is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from digest.storage import Database
from tests.browser_helpers import assert_accessible, shoot
from tests.conftest import wait_for
from tests.servers import SMTPSink
from tests.web.helpers import row, serving, text_of

pytestmark = pytest.mark.slow


def test_a_reader_signs_up_confirms_chooses_systems_and_leaves(
    browser: Any, sqlite_url: str, smtp: SMTPSink, workdir: Path
) -> None:
    db = Database(sqlite_url)
    env = {
        "DIGEST_DATABASE_URL": sqlite_url,
        "DIGEST_WEB_SIGNUP": "true",
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp.port),
    }
    with serving(env, workdir) as (base, _process):
        page = browser.new_page()
        page.set_default_timeout(10_000)
        page.goto(base + "/")
        page.click("text=Subscribe by email")
        assert page.url == base + "/subscribe"
        shoot(page, "subscribe")
        assert_accessible(page, "the sign-up page")
        page.fill("#email", "ada@example.com")
        page.fill("#name", "Ada Lovelace")
        page.click("button:has-text('Subscribe')")
        page.wait_for_selector("h1:has-text('Check your inbox')")
        subscriber = row(db, "ada@example.com")
        assert subscriber is not None
        assert (subscriber.status, subscriber.sections, subscriber.source) == (
            "pending",
            None,
            "web",
        )

        wait_for(lambda: len(smtp.raw) == 1)
        link = next(word for word in text_of(smtp.raw[0]).split() if "/confirm/" in word)
        assert link.startswith(base + "/confirm/")
        page.goto(link)  # what a mail scanner does too: nothing changes
        page.wait_for_selector("button:has-text('Confirm')")
        shoot(page, "confirm")
        subscriber = row(db, "ada@example.com")
        assert subscriber is not None and subscriber.status == "pending"
        page.click("button:has-text('Confirm')")
        page.wait_for_selector("h1:has-text('subscribed')")
        shoot(page, "confirmed")
        subscriber = row(db, "ada@example.com")
        assert subscriber is not None and subscriber.status == "active"
        assert subscriber.confirm_ip == "127.0.0.1" and subscriber.confirmed_at is not None

        page.click("text=Choose sections or unsubscribe")
        page.wait_for_selector("h1:has-text('Your subscription')")
        assert "/preferences/" in page.url
        shoot(page, "preferences")
        page.uncheck("input[value=ml]")
        page.click("button:has-text('Save sections')")
        page.wait_for_selector("text=Saved: you get Systems only.")
        shoot(page, "preferences-saved")
        subscriber = row(db, "ada@example.com")
        assert subscriber is not None and (subscriber.status, subscriber.sections) == (
            "active",
            "systems",
        )

        page.click("button:has-text('Unsubscribe')")
        page.wait_for_selector("text=You're unsubscribed")
        shoot(page, "unsubscribed")
        subscriber = row(db, "ada@example.com")
        assert subscriber is not None and subscriber.status == "unsubscribed"
        assert subscriber.unsubscribed_at is not None
        page.close()
    assert len(smtp.raw) == 1  # the confirmation, nothing else
    db.dispose()
