"""Feed rules end to end: a list entry's `skip:` and `section:` through `opml build`, the OPML
file, `opml export/import`, a real poll over HTTP, `digest feeds --json` and the preview."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from tests.conftest import run_cli
from tests.servers import FeedServer, Response

END = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)


def rss(site: str, posts: list[tuple[str, list[str]]]) -> bytes:
    """An RSS document of (title, categories) posts, one a day before END."""
    items = "".join(
        f"<item><title>{escape(title)}</title><link>{site}/{n}</link><guid>{site}/{n}</guid>"
        f"<pubDate>{format_datetime(END - timedelta(days=1 + n))}</pubDate>"
        + "".join(f"<category>{escape(c)}</category>" for c in categories)
        + f"<description>Words of {escape(title)}.</description></item>"
        for n, (title, categories) in enumerate(posts)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>{site}/</link>'
        f"<description>d</description>{items}</channel></rss>"
    ).encode()


def serve(http: FeedServer) -> tuple[str, str]:
    links = rss(
        "https://links.example",
        [
            ("Weeknotes 12", []),
            ("A Sponsored post", []),
            ("Paid placement", ["sponsored"]),
            ("A normal link", ["ai"]),
        ],
    )
    mixed = rss(
        "https://mixed.example",
        [("Postgres vacuum, explained", ["Databases"]), ("Attention, explained", ["ml"])],
    )
    http.route("/links.xml", Response(200, links))
    http.route("/mixed.xml", Response(200, mixed))
    return http.url("/links.xml"), http.url("/mixed.xml")


def test_skip_and_section_rules_from_the_list_to_the_issue(
    workdir: Path, db_url: str, http: FeedServer
) -> None:
    links, mixed = serve(http)
    (workdir / "lists").mkdir()
    (workdir / "lists" / "blogs.md").write_text(
        "## ML\n"
        f'- [Links](https://links.example/) — feed: {links} — skip: "(?i)sponsored|weeknotes"\n'
        f'- [Mixed](https://mixed.example/) — feed: {mixed} — section: systems if "(?i)databases"\n'
    )
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_FEEDS_FETCH_PAGES": "false"}
    built = run_cli(["opml", "build", "--lists", "lists", "--no-discover"], env)
    assert built.exit_code == 0, built.output
    opml = (workdir / "feeds.opml").read_text()
    assert 'skip="(?i)sponsored|weeknotes"' in opml
    assert 'section="systems" sectionIf="(?i)databases"' in opml

    # export, then import into another file: the rules are shown and dropped, unless
    # --keep-rules (an imported file's rules are not trusted silently).
    assert run_cli(["opml", "export", "-o", "out.opml"], env).exit_code == 0
    other = {**env, "DIGEST_FEEDS_OPML": "other.opml"}
    dropped = run_cli(["opml", "import", "out.opml"], other)
    assert dropped.exit_code == 0 and "sectionIf" not in (workdir / "other.opml").read_text()
    assert 'rules dropped (skip="(?i)sponsored|weeknotes"): --keep-rules keeps them' in (
        dropped.stderr
    )
    (workdir / "other.opml").unlink()
    assert run_cli(["opml", "import", "--keep-rules", "out.opml"], other).exit_code == 0
    assert 'sectionIf="(?i)databases"' in (workdir / "other.opml").read_text()

    assert run_cli(["poll"], env).exit_code == 0
    feeds = {f["title"]: f for f in json.loads(run_cli(["feeds", "--json"], env).stdout)}
    assert feeds["Links"]["rules"] == {"skip": "(?i)sponsored|weeknotes"}
    assert feeds["Mixed"]["rules"] == {"section": "systems", "section_if": "(?i)databases"}
    assert feeds["Links"]["posts"] == 4  # skipped posts are stored...
    table = run_cli(["feeds"], env).stdout
    assert 'rules: skip: "(?i)sponsored|weeknotes"' in table

    preview = run_cli(["preview", "--as-of", "2026-01-10", "--format", "text", "-o", "-"], env)
    assert preview.exit_code == 0, preview.output
    text = preview.stdout
    for skipped in ("Weeknotes 12", "A Sponsored post", "Paid placement"):
        assert skipped not in text  # ...but never in an issue
    ml, systems = text.split("== MACHINE LEARNING")[1].split("== SYSTEMS")
    assert "A normal link" in ml and "Attention, explained" in ml
    assert "Postgres vacuum, explained" in systems


def test_a_bad_regex_fails_the_build_naming_the_line(workdir: Path) -> None:
    (workdir / "lists").mkdir()
    (workdir / "lists" / "ml.md").write_text(
        '## ML\n\n- [A](https://a.example/) — feed: https://a.example/rss — skip: "(?i)ad("\n'
    )
    result = run_cli(["opml", "build", "--lists", "lists", "--no-discover"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "lists/ml.md:3: skip: bad regular expression" in result.output
    assert not (workdir / "feeds.opml").exists()
