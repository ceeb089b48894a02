"""Parsing feeds: our own small fixtures, one per quirk seen in real feeds (tests/data/feeds)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.errors import ParseError
from digest.ingest.parse import parse_feed
from digest.ingest.worker import post_row
from digest.types import FeedData, PostData

FEEDS = Path(__file__).parents[1] / "data" / "feeds"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FEED_URL = "https://feeds.example.net/some/feed.xml"


def parse(name: str, url: str = FEED_URL, headers: dict[str, str] | None = None) -> FeedData:
    return parse_feed((FEEDS / name).read_bytes(), url, headers, now=NOW)


def by_title(data: FeedData) -> dict[str, PostData]:
    return {p.title: p for p in data.posts}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


# --- formats ------------------------------------------------------------------------------


def test_atom_links_resolve_against_xml_base_and_pick_alternate() -> None:
    data = parse("atom-base.xml")
    assert data.site_url == "https://atom.example.org/blog/"
    one, two, three = data.posts
    # Five rels on one entry (replies, edit, self, alternate): the alternate one is the post.
    assert one.link == "https://atom.example.org/blog/posts/one.html"
    assert two.link == "https://mirror.example.com/archive/2026/generics/"  # entry xml:base
    assert three.link == "https://atom.example.org/2026/10/escaped-twice.html"
    assert one.key == "tag:atom.example.org,2026:post-1"


def test_atom_dates_with_milliseconds_and_offsets_are_utc() -> None:
    one = parse("atom-base.xml").posts[0]
    assert one.published == utc(2026, 11, 1, 8, 0)
    assert one.updated == utc(2026, 11, 1, 10, 15, 30)


def test_atom_entry_without_author_has_the_feeds() -> None:
    one, two, _ = parse("atom-base.xml").posts
    assert one.author == "Ada Example"
    assert two.author == "Guest Writer"


def test_rss1_rdf() -> None:
    data = parse("rss1.rdf")
    assert (data.title, data.site_url) == ("An RDF Site Summary", "https://rdf.example.net/")
    first, second = data.posts
    assert first.title == "First RDF item"
    assert first.link == "https://rdf.example.net/2026/11/first.html"  # utm_* dropped
    assert first.author == "Rin Example"
    assert first.updated == utc(2026, 11, 1, 3, 0)  # dc:date, +09:00
    assert first.text == "The whole first item."  # content:encoded beats the description
    assert second.updated == utc(2026, 10, 1)


# --- links -------------------------------------------------------------------------------


def test_rss_links_are_repaired_and_normalised() -> None:
    posts = by_title(parse("rss2-links.xml"))
    # The channel link "/blog/" is relative to the feed; item links are relative to it.
    assert posts["Relative to the channel link"].link == (
        "https://feeds.example.net/blog/2026/relative.html"
    )
    assert posts["Percent-encoded colon"].link == "http://links.example.org/writing/encoded-colon/"
    assert posts["Doubled slashes"].link == "https://links.example.org/blog/2026/slashes.html"
    assert posts["Tracking parameters"].link == "https://links.example.org/blog/tracked.html?id=7"
    assert posts["Permalink guid, no link element"].link == (
        "https://links.example.org/blog/guid-only.html"
    )
    assert posts["Not a web link"].link is None


def test_relative_links_without_a_site_link_use_the_feed_url() -> None:
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>a</title><link>../posts/a.html</link></item></channel></rss>"
    )
    data = parse_feed(body, "https://h.example/blog/feed/rss.xml", now=NOW)
    assert data.site_url is None
    assert data.posts[0].link == "https://h.example/blog/posts/a.html"


# --- identity -----------------------------------------------------------------------------


def test_identity_is_the_id_else_the_link_else_a_content_hash() -> None:
    posts = by_title(parse("rss2-identity.xml"))
    no_guid = posts["No guid: the link is the identity"]
    assert no_guid.key == "https://ident.example.com/posts/no-guid/" == no_guid.link
    nothing = posts["No guid, no link: the content is the identity"]
    assert nothing.link is None and nothing.key.startswith("sha256:")
    # The same content gives the same key on the next poll; other content another key.
    again = by_title(parse("rss2-identity.xml"))
    assert again["No guid, no link: the content is the identity"].key == nothing.key
    assert len({p.key for p in posts.values()}) == 3


def test_an_untitled_entry_takes_its_opening_words() -> None:
    posts = parse("rss2-identity.xml").posts
    assert posts[2].key == "note-3"
    assert posts[2].title.startswith("An untitled short note whose opening words")
    assert posts[2].title.endswith("…") and len(posts[2].title) <= 81
    blogger = parse("blogger.atom").posts[1]
    assert blogger.title == "Giornata in compagnia"  # the first line, not the whole paragraph


def test_tracking_parameters_do_not_change_the_identity() -> None:
    body = (FEEDS / "rss2-identity.xml").read_bytes()
    other = body.replace(b"utm_source=rss", b"utm_source=twitter&amp;fbclid=XYZ")
    first = parse_feed(body, FEED_URL, now=NOW).posts[0]
    second = parse_feed(other, FEED_URL, now=NOW).posts[0]
    assert first.key == second.key == "https://ident.example.com/posts/no-guid/"


# --- dates --------------------------------------------------------------------------------


def test_dates_are_utc_and_untrustworthy_ones_are_none() -> None:
    posts = by_title(parse("rss2-dates.xml"))
    published = {title: p.published for title, p in posts.items()}
    assert published == {
        "Hand-written weekday": utc(2019, 5, 30),  # "Thurs, ... UTC"
        "One-digit day": utc(2015, 9, 3),
        "Offset zone": utc(2026, 11, 2, 4, 30),
        "Year one": None,  # not 2001, as a two-digit-year reading would have it
        "Before 1990": None,
        "Epoch": None,
        "Far future": None,
        "Garbage": None,
        "Updated inside an item": utc(2007, 1, 12, 17, 19),
    }
    assert posts["Updated inside an item"].updated == utc(2007, 1, 17, 18, 19, 17)


def test_a_date_ahead_of_the_clock_is_kept_up_to_a_month() -> None:
    body = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b"<entry><id>1</id><title>a</title><updated>2026-11-23T20:00:00Z</updated></entry>"
        b"<entry><id>2</id><title>b</title><updated>2026-11-25T12:00:00Z</updated></entry>"
        b"<entry><id>3</id><title>c</title><updated>0001-01-01T00:00:00Z</updated></entry>"
        b"<entry><id>4</id><title>d</title><updated>2027-02-01T00:00:00Z</updated></entry>"
        b"</feed>"
    )
    a, b, c, d = parse_feed(body, FEED_URL, now=NOW).posts
    assert a.updated == utc(2026, 11, 23, 20)  # time zone slips are not "the future"
    # Days ahead: the post waits for its week (it went into this week's issue before).
    assert b.updated == utc(2026, 11, 25, 12)
    assert c.updated is None and d.updated is None  # year one; months ahead: mistakes


# --- text ---------------------------------------------------------------------------------


def test_titles_are_clean_text() -> None:
    data = parse("atom-base.xml")
    assert data.title == "Notes & Sketches by Ada"
    titles = [p.title for p in data.posts]
    assert titles[1] == "Vec<T> & friends"  # plain text: "<T>" is not a tag
    assert titles[2] == "Escaped twice & more"


def test_scripts_and_styles_never_reach_the_text() -> None:
    three = parse("atom-base.xml").posts[2]
    assert three.text == "Body kept."
    two = parse("atom-base.xml").posts[1]
    assert two.text == "A Vec<T> holds many Ts."  # xhtml summary; escaped "<T>" is text


def test_cdata_and_substack_style_items() -> None:
    data = parse("substack.xml")
    assert data.title == "Gradient Notes"
    assert data.site_url == "https://gradientnotes.substack.com/"
    full, paid = data.posts
    assert full.title == 'Scaling & the "bitter" lesson, revisited'
    assert full.author == "Grace Example"  # dc:creator
    assert full.published == utc(2026, 11, 7, 13, 1, 47)
    # The full post (content:encoded), not the teaser; no subscribe form, no markup.
    assert full.text.startswith("The full post starts here")
    assert full.text.endswith("It ends here.")
    assert "Subscribe" not in full.text and "<" not in full.text
    assert paid.author == "Grace Example and Sam Coauthor"
    assert paid.text == "Only the teaser is public."


@pytest.mark.parametrize("name", ["blogger.atom", "blogger.rss"])
def test_blogger_feeds(name: str) -> None:
    data = parse(name)
    assert data.title == "Sentieri d'alta quota"
    assert data.site_url == "https://sentieri-example.blogspot.com/"
    first = data.posts[0]
    assert first.key == "tag:blogger.com,1999:blog-4242.post-1001"
    assert first.title == "Capodanno al rifugio: così è andata"
    assert first.link == "https://sentieri-example.blogspot.com/2007/01/capodanno.html"
    assert first.author == "Il camminatore"  # not "noreply@blogger.com (Il camminatore)"
    assert first.published == utc(2007, 1, 12, 17, 19)
    assert first.updated == utc(2007, 1, 17, 18, 19, 17)
    assert first.text.startswith("Quest'anno il capodanno l'abbiamo passato al rifugio")


def test_author_email_forms() -> None:
    item = "<item><title>{0}</title><author>{0}</author></item>"
    authors = ["noreply@blogger.com (Jo Doe)", "jo@example.org", "Jo &lt;b&gt;Doe&lt;/b&gt;"]
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        + "".join(item.format(a) for a in authors)
        + "</channel></rss>"
    ).encode()
    assert [p.author for p in parse_feed(body, FEED_URL, now=NOW).posts] == [
        "Jo Doe",
        None,  # a bare address is not a name
        "Jo Doe",
    ]


# --- encodings ----------------------------------------------------------------------------


def test_latin1_bytes_declared_utf8() -> None:
    data = parse("latin1-declared-utf8.xml")
    assert data.title == "Café crème"
    assert data.posts[0].title == "Déjà vu à Noël"
    assert data.posts[0].text == "Le café était froid."
    assert data.warning and "utf-8" in data.warning


def test_a_bom_and_space_before_the_declaration() -> None:
    data = parse("bom-leading-space.atom")
    assert data.title == "Naïve “quotes”"
    post = data.posts[0]
    assert post.title == "Über cafés — and a BOM"
    assert post.author == "Zoë"
    assert post.text == "0042: cafés, naïveté"  # type="text/html" content is still HTML


def test_a_wrong_charset_header_does_not_garble_utf8() -> None:
    headers = {"Content-Type": "text/xml; charset=iso-8859-1"}
    data = parse("bom-leading-space.atom", headers=headers)
    assert data.posts[0].title == "Über cafés — and a BOM"


@pytest.mark.parametrize("declared", ['encoding="UTF-8"', 'encoding="utf-16"', ""])
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_utf16_with_a_bom_whatever_the_declaration(declared: str, codec: str) -> None:
    text = (FEEDS / "substack.xml").read_text("utf-8").replace('encoding="UTF-8"', declared)
    body = ("\ufeff" + text).encode(codec) if codec.endswith("be") else text.encode(codec)
    data = parse_feed(body, FEED_URL, now=NOW)
    assert data.posts[0].title == 'Scaling & the "bitter" lesson, revisited'


# --- what is not a feed -------------------------------------------------------------------


def test_recoverable_mistakes_keep_the_feed() -> None:
    data = parse("recoverable.xml")
    assert data.warning  # feedparser's complaint is kept
    assert [p.title for p in data.posts] == ["Tips & tricks for R&D"]  # no empty leftovers
    assert data.posts[0].text == "Raw HTML\nin a description."


def test_truncated_xml_is_a_readable_parse_error() -> None:
    with pytest.raises(ParseError) as info:
        parse("truncated.xml")
    assert info.value.url == FEED_URL
    assert info.value.message.startswith("malformed XML: the document is cut short")
    assert "\n" not in info.value.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body: not a feed"),
        (b"  \n ", "empty body: not a feed"),
        (b"hello, world", "not a feed: malformed XML"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', "not a feed: malformed XML"),
        (
            b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
            "not a feed: no RSS, Atom or RDF document found",
        ),
        (
            b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><</channel></rss>',
            "malformed XML:",
        ),
    ],
)
def test_bodies_that_are_not_feeds(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(body, FEED_URL, now=NOW)
    assert info.value.message.startswith(message)


def test_an_html_page_is_not_a_feed() -> None:
    with pytest.raises(ParseError, match="not a feed: got an HTML page"):
        parse("not-a-feed.html")
    with pytest.raises(ParseError, match="not a feed"):
        parse_feed(b"\xef\xbb\xbf<!doctype html><title>x</title>", FEED_URL, now=NOW)


def test_a_5_mb_feed_parses_in_seconds() -> None:
    paragraph = "<p>" + "words about consensus and compilers " * 40 + "</p>"
    item = (
        "<item><title>Post {0}</title><link>https://big.example/{0}</link>"
        "<guid>https://big.example/{0}</guid><pubDate>Mon, 02 Nov 2026 10:00:00 GMT</pubDate>"
        "<description><![CDATA[" + paragraph * 3 + "]]></description></item>"
    )
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>'
        + "".join(item.format(i) for i in range(1200))
        + "</channel></rss>"
    ).encode()
    assert len(body) > 5_000_000
    started = time.monotonic()
    data = parse_feed(body, FEED_URL, now=NOW)
    assert time.monotonic() - started < 20
    assert len(data.posts) == 1200
    assert all(len(p.text) <= 3001 for p in data.posts)  # text kept per post is capped
    assert data.posts[0].words == 3 * 40 * 5


def test_a_long_post_keeps_its_head_as_text_and_counts_all_its_words() -> None:
    paragraph = "<p>" + " ".join(["word"] * 50) + " <b>bold</b></p>\n"
    body = "<h1>Start</h1>" + paragraph * 400  # ~120 KB of markup, 20,400 words
    rss = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        "<link>https://t.example/</link><item><title>Long</title>"
        "<link>https://t.example/long</link>"
        f"<description><![CDATA[{body}]]></description></item></channel></rss>"
    ).encode()
    started = time.perf_counter()
    [post] = parse_feed(rss, FEED_URL, now=NOW).posts
    assert time.perf_counter() - started < 2
    assert post.text.startswith("word word")  # the heading is not the post's prose
    assert "<" not in post.text and len(post.text) <= 3001
    assert post.words == 1 + 400 * 51


def _one_entry(item: str) -> PostData:
    rss = (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>T</title>'
        f"<link>https://t.example/</link><item><title>P</title>{item}</item></channel></rss>"
    ).encode()
    [post] = parse_feed(rss, FEED_URL, now=NOW).posts
    return post


def test_a_summary_only_entry_is_a_teaser_a_full_post_is_not() -> None:
    # Hugo's feeds (lilianweng.github.io): a paragraph of summary for a long essay.
    summary = " ".join(["summary"] * 70)
    assert _one_entry(f"<description>{summary}</description>").teaser
    # Full text in <description> (python-feedgen, Zola: eatonphil, scattered-thoughts).
    full = " ".join(["word"] * 900)
    assert not _one_entry(f"<description>{full}</description>").teaser
    # A content element is the post itself, however short.
    content = f"<description>{summary}</description><content:encoded>Short.</content:encoded>"
    assert not _one_entry(content).teaser


def test_categories_and_links_to_other_hosts_are_kept() -> None:
    body = (
        '<p>See <a href="https://other.example/post?utm_source=x">this</a>, '
        '<a href="/2026/old-post">my old post</a>, <a href="https://t.example/x">mine</a>, '
        '<a href="#fn1">a note</a>, <a href="mailto:a@b.example">mail</a> and '
        "<a href='http://www.third.example/a/'>that</a> (twice: "
        '<a href="https://other.example/post">this</a>).</p>'
    )
    post = _one_entry(
        "<link>https://t.example/p</link><category>Databases</category>"
        "<category> databases </category><category>Sponsored</category>"
        f"<description><![CDATA[{body}]]></description>"
    )
    assert post.categories == ("Databases", "databases", "Sponsored")
    assert post.links == (
        "https://other.example/post?utm_source=x",
        "http://www.third.example/a/",
        "https://other.example/post",
    )
    row = post_row(post)._asdict()
    assert row["categories"] == "Databases\ndatabases\nSponsored"
    # Stored canonical, as posts' own canonical_url: what a link is compared with.
    assert row["links"] == "https://other.example/post\nhttps://third.example/a"
