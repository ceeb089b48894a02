"""A week of the list's blogs in their real feeds' shapes (tests/data/week/), served over HTTP
and polled into a database, for the curator's issue tests (tests/test_cli_week.py and the
browser tests in tests/issue/test_issue_browser.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from tests.conftest import LOOPBACK, run_cli
from tests.poll_helpers import write_opml
from tests.servers import FeedServer, Response

WEEK_DATA = Path(__file__).parent / "data" / "week"
FEEDS = (  # OPML folder, title, file
    ("ML", "Lil'Log", "lilianweng.rss"),
    ("ML", "Simon Willison", "simonwillison.atom"),
    ("Systems", "Julia Evans", "jvns.atom"),
    ("Systems", "Phil Eaton", "eatonphil.rss"),
    ("Systems", "Martin Fowler", "martinfowler.atom"),
    ("Systems", "Scattered Thoughts", "scattered.atom"),
)
ESSAY = "Harness Engineering for Self-Improvement"
ESSAY_PAGE = "/posts/harness/"  # answers 404: the essay's length stays unknown
FOLDED = "Simon Willison"  # eight posts this week: three shown, five listed
TITLES = (  # every post of the week
    ESSAY,
    "Quoting Timothy B. Lee",
    "datasette-tailscale 0.1a0",
    "DeepSeek V4 Pro 0813 (on OpenRouter)",
    "Quoting Dean W. Ball",
    "alchemy-utils 0.1a0",
    "Stealing Reasoning Traces from Proprietary LLM APIs",
    "Introducing Muse Glimmer",
    "AI and Liability",
    'What\'s involved in getting a "modern" terminal setup?',
    "Writing a web server from scratch: 1. HTTP and sockets",
    "Implementing a simple jq clone in Go, and basics of Go memory profiling",
    "Bliki: WaterfallProcess",
    "photostream 122",
    "0042: consulting lessons, there are no strings on me, buttons",
)
_DATE = re.compile(r"@(RFC|ISO):([\d.]+)@")
_PAGE = re.compile(r"@SITE@(/(?:simonwillison|eatonphil)/[^\"#<\s]*)")
# Words on each post's page (a summary-only feed's reading time comes from its page): a link
# blog's posts run short, Phil Eaton's long.
PAGE_WORDS = {"quoting-timothy-b-lee": 120, "ai-and-liability": 200, "eatonphil": 1800}


def week_end() -> datetime:
    """The week ends now (a pick names a post of the coming issue: this week's)."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def fill(text: str, end: datetime, site: str) -> str:
    """A fixture with its dates (N days before ``end``) and the server's address."""

    def date(match: re.Match[str]) -> str:
        when = end - timedelta(days=float(match.group(2)))
        return format_datetime(when) if match.group(1) == "RFC" else when.isoformat()

    return _DATE.sub(date, text).replace("@SITE@", site)


def serve_week(http: FeedServer, end: datetime) -> list[tuple[str, str, str]]:
    """Each feed of the week at its own path; the essay's page answers 404. The OPML rows."""
    site = http.url("").rstrip("/")
    rows = []
    for folder, title, name in FEEDS:
        text = (WEEK_DATA / name).read_text()
        http.route(f"/{name}", Response(200, fill(text, end, site).encode()))
        rows.append((folder, title, http.url(f"/{name}")))
        for path in _PAGE.findall(text):
            http.route(path, Response(200, page(path), {"Content-Type": "text/html"}))
    http.route(ESSAY_PAGE, Response(404, b"<h1>Not found</h1>"))
    return rows


def page(path: str) -> bytes:
    """A post's web page: a menu, the article, a footer."""
    words = next((n for key, n in PAGE_WORDS.items() if key in path), 600)
    article = " ".join(["word"] * words)
    return (
        f"<html><body><nav>Home About Archive</nav><article><p>{article}</p></article>"
        "<footer>Copyright</footer></body></html>"
    ).encode()


def week_env(folder: Path, db_url: str) -> dict[str, str]:
    """Settings for the week: its feed list, a send every minute (so the coming issue's
    window is the week before now whatever the day), sign-up on."""
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_FEEDS_OPML": str(folder / "feeds.opml"),
        "DIGEST_FEEDS_ALLOW_NETWORKS": LOOPBACK,
        "DIGEST_NEWSLETTER_SEND_AT": "cron: * * * * *",
        "DIGEST_NEWSLETTER_BASE_URL": "https://news.example",
        "DIGEST_NEWSLETTER_SECRET_KEY": "week-key",
        "DIGEST_NEWSLETTER_TEMPLATES": str(folder / "no-templates"),
    }


def build_week(folder: Path, db_url: str, http: FeedServer, end: datetime) -> dict[str, str]:
    """The week polled into ``db_url`` (its posts' pages read: the essay's answers 404)."""
    env = week_env(folder, db_url)
    write_opml(folder / "feeds.opml", serve_week(http, end))
    polled = run_cli(["poll", "--json"], env)
    assert polled.exit_code == 0, polled.output
    return env
