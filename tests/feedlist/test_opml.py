"""OPML parsing and writing, the committed feeds.opml, and `digest opml import|export|build`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import listparser
import pytest

from digest.errors import ConfigError
from digest.feedlist.opml import merge_sources, parse_opml, read_opml, write_opml
from digest.types import ML, SYSTEMS, FeedRules, FeedSource, section_for
from tests.conftest import run_cli, run_digest
from tests.poll_helpers import opml
from tests.servers import FeedServer, Response

DATA = Path(__file__).parents[1] / "data" / "opml"
REPO = Path(__file__).parents[2]

# Every feed_url of the research table feeds.tsv, by section, except jalammar.github.io/feed.xml
# (the same author as the Language Models Newsletter), plus Karpathy's second feed.
EXPECTED_ML = {
    "https://colah.github.io/rss.xml",
    "https://karpathy.bearblog.dev/feed/",
    "https://karpathy.github.io/feed.xml",
    "https://lilianweng.github.io/index.xml",
    "https://ruder.io/rss/index.rss",
    "https://magazine.sebastianraschka.com/feed",
    "https://www.interconnects.ai/feed",
    "https://explosion.ai/feed",
    "https://newsletter.languagemodels.co/feed",
    "https://erikbern.com/atom.xml",
    "https://eugeneyan.com/rss/",
    "https://www.jeremyjordan.me/rss/",
    "https://dennybritz.com/index.xml",
    "https://alex.smola.org/blog.xml",
    "https://radekosmulski.com/rss/",
    "https://www.mrdbourke.com/rss/",
    "https://huyenchip.com/feed.xml",
    "https://iclr-blogposts.github.io/2025/feed.xml",
    "https://www.answer.ai/index.xml",
    "https://simonwillison.net/atom/everything/",
    "https://www.oneusefulthing.org/feed",
    "https://gwern.substack.com/feed",
}
EXPECTED_SYSTEMS = {
    "https://www.brendangregg.com/blog/rss.xml",
    "https://jvns.ca/atom.xml",
    "https://justine.lol/rss.xml",
    "https://eli.thegreenplace.net/feeds/all.atom.xml",
    "https://muratbuffalo.blogspot.com/feeds/posts/default",
    "https://smalldatum.blogspot.com/feeds/posts/default",
    "https://notes.eatonphil.com/rss.xml",
    "https://martinfowler.com/feed.atom",
    "https://tratt.net/laurie/blog/blog.rss",
    "https://awesomekling.github.io/feed.xml",
    "https://danluu.com/atom.xml",
    "https://transactional.blog/feed.xml",
    "https://blog.codingconfessions.com/feed",
    "https://www.hillelwayne.com/index.xml",
    "https://utcc.utoronto.ca/~cks/space/blog/?atom",
    "https://www.scattered-thoughts.net/atom.xml",
    "https://rachelbythebay.com/w/atom.xml",
    "https://tanelpoder.com/index.xml",
    "https://distributed-computing-musings.com/feed/",
    "https://www.evanjones.ca/index.rss",
    "https://buttondown.com/jaffray/rss",
    "https://aphyr.com/posts.atom",
    "https://jepsen.io/blog.atom",
    "https://www.allthingsdistributed.com/atom.xml",
}


def tricky() -> list[FeedSource]:
    return read_opml(DATA / "tricky.opml")


# --- parse_opml -------------------------------------------------------------------------------


def test_nested_folders_become_a_category_path() -> None:
    by_url = {s.url: s for s in tricky()}
    assert by_url["https://colah.github.io/rss.xml"].category == "Tech/ML"
    assert by_url["https://utcc.utoronto.ca/~cks/space/blog/?atom"].category == "Tech/Systems"
    assert section_for(by_url["https://colah.github.io/rss.xml"].category) == ML


def test_category_attribute_is_used_outside_folders_and_kept() -> None:
    source = next(s for s in tricky() if s.url == "https://cat.example/atom.xml")
    assert source.category == "Systems/Databases"  # first of "/Systems/Databases,/Other"
    assert ("category", "/Systems/Databases,/Other") in source.extra
    assert section_for(source.category) == SYSTEMS


def test_titles_text_and_missing_titles() -> None:
    by_url = {s.url: s for s in tricky()}
    assert by_url["https://colah.github.io/rss.xml"].title == "Chris Olah"  # text only
    karpathy = by_url["https://karpathy.bearblog.dev/feed/"]
    assert karpathy.title == "Andrej Karpathy's blog"  # title wins, text kept
    assert dict(karpathy.extra) == {"text": "Karpathy", "type": "atom"}
    assert by_url["https://untitled.example/rss"].title is None
    assert by_url["https://example.org/feed?a=1&b=2"].title is None


def test_entities_unicode_and_unknown_attributes() -> None:
    by_url = {s.url: s for s in tricky()}
    assert by_url["https://example.org/feed?a=1&b=2"].site_url == "https://example.org/?x=1&y=2"
    unicode = by_url["https://unicode.example/ü/feed.xml"]
    assert unicode.title == "Über Systeme — 日本語"
    assert unicode.category is None
    assert unicode.extra == (
        ("description", 'Ein "Blog" <ok>'),
        ("isComment", "false"),
        ("language", "de"),
    )


def test_duplicates_once_folders_skipped_bad_schemes_dropped() -> None:
    sources = tricky()
    urls = [s.url for s in sources]
    assert len(urls) == len(set(urls)) == 8
    olah = next(s for s in sources if s.url == "https://colah.github.io/rss.xml")
    assert olah.title == "Chris Olah"  # the first occurrence wins
    assert not any(u.startswith("javascript:") for u in urls)
    assert "http://old.example/rss" in urls  # feed:// is an old alias of http://
    assert "https://cat.example/atom.xml" in urls  # xmlURL: readers disagree on case


def test_round_trip_loses_nothing() -> None:
    first = tricky()
    written = write_opml(first)
    second = parse_opml(written)
    assert sorted(second, key=lambda s: s.url) == sorted(first, key=lambda s: s.url)
    assert write_opml(second) == written  # and writing is stable


def test_rules_travel_as_outline_attributes() -> None:
    rules = FeedRules("(?i)sponsored|weeknotes", "systems", "(?i)databases")
    sources = [FeedSource("https://x.example/feed", "X", category="ML", rules=rules)]
    written = write_opml(sources)
    assert b'skip="(?i)sponsored|weeknotes" section="systems" sectionIf="(?i)databases"' in written
    assert parse_opml(written) == sources


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ('skip="(unclosed"', r"^f.opml: feed https://x.example/feed: skip: bad regular"),
        ('section="cooking"', r"^f.opml: feed https://x.example/feed: section: unknown"),
        ('sectionIf="db"', r"^f.opml: feed https://x.example/feed: sectionIf needs a section"),
    ],
)
def test_bad_rules_in_an_outline_name_the_feed(attributes: str, message: str) -> None:
    data = (
        '<opml version="2.0"><body><outline text="X" '
        f'xmlUrl="https://x.example/feed" {attributes}/></body></opml>'
    ).encode()
    with pytest.raises(ConfigError, match=message):
        parse_opml(data, "f.opml")


def test_round_trip_keeps_order_within_a_folder() -> None:
    sources = [FeedSource(f"https://x.example/{i}", f"Feed {i}", category="A/B") for i in range(5)]
    assert parse_opml(write_opml(sources)) == sources


def test_another_parser_reads_what_we_write() -> None:
    written = write_opml(tricky())
    result = listparser.parse(written.decode())
    assert not result.bozo
    theirs = {f.url: f for f in result.feeds}
    assert set(theirs) == {s.url for s in tricky()}
    assert theirs["https://colah.github.io/rss.xml"].categories == [["Tech", "ML"]]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("malformed.opml", "not valid XML: Opening and ending tag mismatch"),
        ("not-opml.xml", "not an OPML file (the root element is <rss>)"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_file(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        read_opml(DATA / name)
    text = str(error.value)
    assert text.startswith(str(DATA / name) + ": ")
    assert message in text
    assert "\n" not in text and "<string>" not in text


@pytest.mark.parametrize("name", ["billion-laughs.opml", "xxe.opml"])
def test_hostile_entities_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        read_opml(DATA / name)


def test_internal_entities_are_refused_even_when_harmless() -> None:
    data = b"""<!DOCTYPE opml [<!ENTITY x "y">]>
<opml version="2.0"><body><outline text="a" xmlUrl="https://a.example/f"/></body></opml>"""
    with pytest.raises(ConfigError, match="declares XML entities"):
        parse_opml(data, "hostile.opml")


def test_empty_and_bodiless_documents() -> None:
    with pytest.raises(ConfigError, match="^x.opml: not valid XML"):
        parse_opml(b"", "x.opml")
    assert parse_opml(b"<opml version='2.0'><head/></opml>") == []


def test_read_opml_names_the_setting_when_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^feeds.opml: .*nothing.opml does not exist"):
        read_opml(tmp_path / "nothing.opml")


def test_merge_keeps_existing_entries_and_counts_the_added() -> None:
    old = [FeedSource("https://a.example/f", "Mine", category="ML")]
    new = [
        FeedSource("https://a.example/f", "Theirs", category="Other"),
        FeedSource("https://b.example/f", "B"),
        FeedSource("https://b.example/f", "B again"),
    ]
    merged, added = merge_sources(old, new)
    assert added == 1
    assert merged == [old[0], new[1]]


# --- the committed feeds.opml -----------------------------------------------------------------


def test_committed_feeds_opml_lists_every_researched_blog_in_its_section() -> None:
    sources = read_opml(REPO / "feeds.opml")
    ml = {s.url for s in sources if section_for(s.category) == ML}
    systems = {s.url for s in sources if section_for(s.category) == SYSTEMS}
    assert ml == EXPECTED_ML
    assert systems == EXPECTED_SYSTEMS
    assert len(sources) == 46
    assert "https://jalammar.github.io/feed.xml" not in {s.url for s in sources}
    assert all(s.title and s.site_url for s in sources)
    jay = next(s for s in sources if s.url == "https://newsletter.languagemodels.co/feed")
    assert jay.title == "Jay Alammar (Language Models Newsletter)"


def test_listparser_reads_the_committed_feeds_opml() -> None:
    result = listparser.parse((REPO / "feeds.opml").read_text(encoding="utf-8"))
    assert not result.bozo
    assert len(result.feeds) == 46
    by_section = {f.url: f.categories for f in result.feeds}
    assert all(by_section[u] == [["ML"]] for u in EXPECTED_ML)
    assert all(by_section[u] == [["Systems"]] for u in EXPECTED_SYSTEMS)


def test_committed_feeds_opml_is_what_the_lists_build(workdir: Path) -> None:
    result = run_cli(["opml", "build", "--lists", str(REPO / "lists"), "--no-discover"])
    assert result.exit_code == 0, result.output
    assert "46 feeds (46 pinned and 0 discovered from 45 blogs, 0 kept" in result.stdout
    assert (workdir / "feeds.opml").read_bytes() == (REPO / "feeds.opml").read_bytes()


# --- digest opml import / export --------------------------------------------------------------


def test_import_creates_then_merges_and_export_writes_it_back(workdir: Path) -> None:
    first = run_cli(["opml", "import", str(DATA / "tricky.opml")])
    assert first.exit_code == 0, first.output
    assert "8 feeds added, 0 already present; feeds.opml lists 8 feeds" in first.stdout
    again = run_cli(["opml", "import", str(DATA / "tricky.opml"), "--json"])
    assert '"added": 0' in again.stdout and '"already_present": 8' in again.stdout

    exported = run_cli(["opml", "export"])
    assert exported.exit_code == 0
    assert parse_opml(exported.stdout_bytes) == read_opml(workdir / "feeds.opml")
    assert sorted(parse_opml(exported.stdout_bytes), key=lambda s: s.url) == sorted(
        tricky(), key=lambda s: s.url
    )

    assert run_cli(["opml", "export", "-o", "out.opml"]).exit_code == 0
    assert (workdir / "out.opml").read_bytes() == exported.stdout_bytes


def test_import_from_stdin_into_the_configured_file(workdir: Path) -> None:
    data = (DATA / "tricky.opml").read_text(encoding="utf-8")
    env = {"DIGEST_FEEDS_OPML": "conf/my.opml"}
    result = run_cli(["opml", "import", "-"], env=env, stdin=data)
    assert result.exit_code == 0, result.output
    assert "<stdin>: 8 feeds added" in result.stdout
    assert len(read_opml(workdir / "conf" / "my.opml")) == 8


def test_import_of_a_malformed_file_is_one_line_and_touches_nothing(workdir: Path) -> None:
    (workdir / "feeds.opml").write_bytes(write_opml([FeedSource("https://a.example/f", "A")]))
    before = (workdir / "feeds.opml").read_bytes()
    for name in ("malformed.opml", "billion-laughs.opml", "not-opml.xml"):
        result = run_cli(["opml", "import", str(DATA / name)])
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and name in result.stderr
        assert "Traceback" not in result.stderr
    assert (workdir / "feeds.opml").read_bytes() == before


def test_import_and_export_with_missing_files(workdir: Path) -> None:
    missing = run_cli(["opml", "import", "nope.opml"])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "Error: nope.opml: no such file"
    export = run_cli(["opml", "export"])
    assert export.exit_code == 1
    assert export.stderr.startswith("Error: feeds.opml: feeds.opml does not exist")
    assert export.stderr.count("\n") == 1


def test_export_reads_a_broken_feeds_file_as_one_line(workdir: Path) -> None:
    (workdir / "feeds.opml").write_text("<opml><body>")
    result = run_cli(["opml", "export"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: feeds.opml: not valid XML")


# --- digest opml build against real HTTP ------------------------------------------------------

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
HTML = b"<!doctype html><html><head><title>home</title></head><body>hi</body></html>"


def write_lists(folder: Path, http: FeedServer) -> None:
    folder.mkdir()
    (folder / "blogs.md").write_text(
        "# Test blogs\n\n"
        "## ML\n\n"
        f"- [Pinned]({http.url('/pinned/')}) — feed: {http.url('/pinned/rss.xml')}\n"
        f"- [Alternate]({http.url('/alt/')})\n"
        "  found through its <link rel=alternate>\n"
        "## Systems\n\n"
        f"- [Fallback]({http.url('/fb/')})\n"
        f"- [HTML only]({http.url('/html/')})\n",
        encoding="utf-8",
    )
    alternate = b'<html><head><link rel="alternate" type="application/atom+xml" href="a.xml">'
    http.route("/alt/", Response(200, alternate, {"Content-Type": "text/html"}))
    http.route("/alt/a.xml", Response(200, FEED, {"Content-Type": "application/xml"}))
    http.route("/fb/", Response(200, HTML, {"Content-Type": "text/html"}))
    http.route("/fb/feed.xml", Response(200, FEED, {"Content-Type": "application/xml"}))
    http.route("/html/", Response(200, HTML, {"Content-Type": "text/html"}))


def test_build_discovers_feeds_and_reports_the_rest(workdir: Path, http: FeedServer) -> None:
    write_lists(workdir / "lists", http)
    result = run_cli(["opml", "build"])
    assert result.exit_code == 0, result.output
    assert "3 feeds (1 pinned and 2 discovered from 4 blogs, 0 kept" in result.stdout
    assert f"warning: HTML only ({http.url('/html/')}): no feed found" in result.stderr
    sources = {s.url: s for s in read_opml(workdir / "feeds.opml")}
    assert sources[http.url("/alt/a.xml")].category == "ML"
    assert sources[http.url("/alt/a.xml")].title == "Alternate"
    assert sources[http.url("/fb/feed.xml")].category == "Systems"
    assert sources[http.url("/fb/feed.xml")].site_url == http.url("/fb/")
    assert http.url("/pinned/rss.xml") in sources
    assert not [r for r in http.requests if r.path.startswith("/pinned/")]  # taken as it is

    strict = run_cli(["opml", "build", "--strict", "--json"])
    assert strict.exit_code == 1
    assert '"unresolved": [\n    "HTML only' in strict.stdout


def test_strict_build_writes_nothing_when_a_blog_has_no_feed(
    workdir: Path, http: FeedServer
) -> None:
    write_lists(workdir / "lists", http)
    strict = run_cli(["opml", "build", "--strict"])
    assert strict.exit_code == 1
    assert "--strict: 1 blog without a feed; feeds.opml left as it was" in strict.stderr
    assert not (workdir / "feeds.opml").exists()
    (workdir / "feeds.opml").write_bytes(b"<opml version='2.0'><body/></opml>")
    assert run_cli(["opml", "build", "--strict"]).exit_code == 1
    assert (workdir / "feeds.opml").read_bytes() == b"<opml version='2.0'><body/></opml>"


def test_build_drops_imported_feeds_unless_kept_unlisted(workdir: Path, http: FeedServer) -> None:
    write_lists(workdir / "lists", http)
    run_cli(["opml", "import", str(DATA / "tricky.opml")])
    kept = run_cli(["opml", "build", "--no-discover", "--keep-unlisted"])
    assert kept.exit_code == 0, kept.output
    assert "9 feeds (1 pinned and 0 discovered from 4 blogs, 8 kept from the file, 0 removed)" in (
        kept.stdout
    )
    assert kept.stderr.count("kept (no list names it; --keep-unlisted): ") == 8
    assert "not pinned, and discovery is off" in kept.stderr
    assert not http.requests
    assert len(read_opml(workdir / "feeds.opml")) == 9

    built = run_cli(["opml", "build", "--no-discover", "--json"])  # the lists rule
    assert built.exit_code == 0
    assert len(json.loads(built.stdout)["removed"]) == 8
    assert built.stderr.count("removed (no list names it; its posts stay in the database): ") == 8
    assert [s.url for s in read_opml(workdir / "feeds.opml")] == [http.url("/pinned/rss.xml")]
    again = run_cli(["opml", "build", "--no-discover", "--prune"])  # older scripts' flag
    assert again.exit_code == 0 and "1 feed (1 pinned" in again.stdout


def test_the_lists_are_the_source_of_truth(workdir: Path, http: FeedServer) -> None:
    """Issue 24: a blog removed from a list stayed in feeds.opml ("kept (no list names it;
    --prune drops it)"). Adding, removing and moving a blog, as the README shows them."""
    lists = workdir / "lists"
    lists.mkdir()
    ml, systems = lists / "ml.md", lists / "systems.md"
    ml.write_text(
        "## ML\n- [A](https://a.example/) — feed: https://a.example/feed\n"
        "- [B](https://b.example/) — feed: https://b.example/feed\n"
    )
    systems.write_text("## Systems\n- [C](https://c.example/) — feed: https://c.example/feed\n")
    assert run_cli(["opml", "build"]).exit_code == 0
    assert len(read_opml(workdir / "feeds.opml")) == 3

    ml.write_text("## ML\n- [A](https://a.example/) — feed: https://a.example/feed\n")  # B out
    systems.write_text(
        "## Systems\n- [C](https://c.example/) — feed: https://c.example/feed\n"
        "- [D](https://d.example/) — feed: https://d.example/feed\n"  # D in
    )
    removed = run_cli(["opml", "build"])
    assert removed.exit_code == 0, removed.output
    assert "3 feeds (3 pinned and 0 discovered from 3 blogs, 0 kept from the file, 1 removed)" in (
        removed.stdout
    )
    assert removed.stderr == (
        "removed (no list names it; its posts stay in the database): https://b.example/feed (B)\n"
    )
    assert [s.url for s in read_opml(workdir / "feeds.opml")] == [
        "https://a.example/feed",
        "https://c.example/feed",
        "https://d.example/feed",
    ]

    ml.write_text(ml.read_text() + "- [D](https://d.example/) — feed: https://d.example/feed\n")
    systems.write_text("## Systems\n- [C](https://c.example/) — feed: https://c.example/feed\n")
    assert run_cli(["opml", "build"]).exit_code == 0  # D moved from Systems to ML
    moved = {s.url: s.category for s in read_opml(workdir / "feeds.opml")}
    assert moved["https://d.example/feed"] == "ML"


def test_a_listed_blog_whose_feed_is_not_found_keeps_its_feed(
    workdir: Path, http: FeedServer
) -> None:
    lists = workdir / "lists"
    lists.mkdir()
    site = http.url("/blog/")
    (lists / "ml.md").write_text(f"## ML\n- [Blog]({site})\n")
    http.route("/blog/", Response(200, HTML, {"Content-Type": "text/html"}))
    http.route("/blog/feed.xml", Response(200, FEED, {"Content-Type": "application/xml"}))
    assert run_cli(["opml", "build"]).exit_code == 0
    http.route("/blog/", Response(503))  # down today: its feed stays
    http.route("/blog/feed.xml", Response(503))
    again = run_cli(["opml", "build"])
    assert again.exit_code == 0
    assert [s.url for s in read_opml(workdir / "feeds.opml")] == [http.url("/blog/feed.xml")]
    assert f"kept from the file (its blog is listed): {http.url('/blog/feed.xml')}" in again.stderr
    assert "warning" not in again.stderr
    offline = run_cli(["opml", "build", "--no-discover"])
    assert offline.exit_code == 0 and "1 kept from the file, 0 removed" in offline.stdout


def test_build_with_a_broken_list_is_one_line(workdir: Path) -> None:
    (workdir / "lists").mkdir()
    (workdir / "lists" / "ml.md").write_text("## ML\n- Chris Olah https://colah.github.io/\n")
    result = run_cli(["opml", "build", "--no-discover"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: lists/ml.md:2: a list entry looks like")
    assert result.stderr.count("\n") == 1
    assert not (workdir / "feeds.opml").exists()
    missing = run_cli(["opml", "build", "--lists", "nowhere"])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "Error: blog lists: nowhere is not a folder"


@pytest.mark.slow
def test_build_and_export_as_a_real_process(tmp_path: Path) -> None:
    built = run_digest(
        ["opml", "build", "--lists", str(REPO / "lists"), "--no-discover"], env={}, cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "feeds.opml").read_bytes() == (REPO / "feeds.opml").read_bytes()
    exported = run_digest(["opml", "export"], env={}, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert listparser.parse(exported.stdout).feeds[0].url == "https://colah.github.io/rss.xml"
    broken = run_digest(["opml", "import", str(DATA / "xxe.opml")], env={}, cwd=tmp_path)
    assert broken.returncode == 1
    assert broken.stderr.startswith("Error: ") and broken.stderr.count("\n") == 1


@pytest.fixture
def opml_server() -> Iterator[FeedServer]:
    """Another reader's OPML file, served from 127.0.0.2."""
    server = FeedServer("127.0.0.2")
    feeds = [
        ("ML", "Public", "https://blog.example/feed.xml"),
        ("ML", "By address", "http://93.184.215.14/feed.xml"),
        ("Systems", "Loopback", "http://127.0.0.1:8080/admin"),
        ("Systems", "Localhost", "http://localhost/feed"),
        ("Systems", "Intranet", "http://10.0.0.5/feed"),
    ]
    server.route("/list.opml", Response(200, opml(feeds), {"Content-Type": "text/x-opml"}))
    yield server
    server.close()


def test_import_by_url_under_the_network_policy(workdir: Path, opml_server: FeedServer) -> None:
    url = opml_server.url("/list.opml")
    result = run_cli(["opml", "import", url], env={"DIGEST_FEEDS_ALLOW_NETWORKS": "127.0.0.2/32"})
    assert result.exit_code == 0, result.output
    assert f"{url}: 2 feeds added, 0 already present, 3 skipped" in result.stdout
    assert "skipped http://127.0.0.1:8080/admin: a loopback address" in result.stderr
    assert "skipped http://localhost/feed: a loopback address" in result.stderr
    assert "skipped http://10.0.0.5/feed: a private address" in result.stderr
    assert "http://93.184.215.14/feed.xml names an IP address" in result.stderr
    assert [s.url for s in read_opml(workdir / "feeds.opml")] == [
        "https://blog.example/feed.xml",
        "http://93.184.215.14/feed.xml",
    ]


def test_import_by_url_is_refused_where_the_policy_says_so(
    workdir: Path, opml_server: FeedServer
) -> None:
    url = opml_server.url("/list.opml")
    result = run_cli(["opml", "import", url], env={"DIGEST_FEEDS_ALLOW_NETWORKS": ""})
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        f"Error: {url}: refused to connect to 127.0.0.2: a loopback address; "
        "feeds.allow_networks opens a range\n"
    )
    missing = run_cli(["opml", "import", opml_server.url("/nothing.opml")])
    assert missing.exit_code == 1 and "HTTP 404, no OPML file" in missing.stderr
    assert not (workdir / "feeds.opml").exists()
