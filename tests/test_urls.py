"""URL repair and normalisation: urls.normalize_link and urls.canonical_url."""

from __future__ import annotations

import pytest

from digest.urls import canonical_url, normalize_link, repair, site_of


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Zola's percent-encoded colon, and other breakage seen in real feeds
        ("http%3A//scattered.example/writing/x/", "http://scattered.example/writing/x/"),
        ("HTTPS%3a//a.example/x", "https://a.example/x"),
        ("feed://a.example/rss.xml", "http://a.example/rss.xml"),
        ("  https://a.example/with space  ", "https://a.example/with%20space"),
        ("https:\\\\a.example\\x", "https://a.example/x"),
        # case, default ports, trailing dot, duplicate slashes
        ("HTTP://Example.COM:80//a//b/", "http://example.com/a/b/"),
        ("https://EXAMPLE.com.:443/x", "https://example.com/x"),
        ("http://a.example:8080/x", "http://a.example:8080/x"),
        ("https://a.example", "https://a.example/"),
        ("http://[::1]:8911/feed", "http://[::1]:8911/feed"),
        # tracking parameters go; everything else stays as written
        ("https://a.example/p?utm_source=rss&utm_medium=feed", "https://a.example/p"),
        ("https://a.example/p?id=7&UTM_Campaign=x&fbclid=F&gclid=G", "https://a.example/p?id=7"),
        ("https://a.example/p?id=7&mc_cid=1&mc_eid=2&ref_src=tw", "https://a.example/p?id=7"),
        ("https://a.example/p?q=a+b%20c&flag&utm_term=x", "https://a.example/p?q=a+b%20c&flag"),
        ("https://a.example/p?b=2&a=1", "https://a.example/p?b=2&a=1"),
        ("https://cks.example/blog/?atom", "https://cks.example/blog/?atom"),
        # escapes: one spelling, meaning kept
        ("https://a.example/caf%c3%a9", "https://a.example/caf%C3%A9"),
        ("https://a.example/café", "https://a.example/caf%C3%A9"),
        ("https://a.example/%7Euser/", "https://a.example/~user/"),
        ("https://a.example/a%2Fb", "https://a.example/a%2Fb"),
        ("https://a.example/100%25-done", "https://a.example/100%25-done"),
        ("https://a.example/100%-done", "https://a.example/100%25-done"),
        # fragments point inside a page, unless the site routes by them
        ("https://a.example/post#comments", "https://a.example/post"),
        ("https://a.example/#/post/1", "https://a.example/#/post/1"),
        ("https://a.example/#!/post/1", "https://a.example/#!/post/1"),
        # nothing usable
        ("javascript:alert(1)", None),
        ("mailto:me@a.example", None),
        ("/relative/without/base", None),
        ("https://a.example:99999/x", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_normalize_link(url: str | None, expected: str | None) -> None:
    assert normalize_link(url) == expected


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("/p/1", "https://h.example/blog/", "https://h.example/p/1"),
        ("p/1", "https://h.example/blog/", "https://h.example/blog/p/1"),
        ("../p/1", "https://h.example/blog/feed/", "https://h.example/blog/p/1"),
        ("//cdn.example/x", "https://h.example/", "https://cdn.example/x"),
        ("https://other.example/x", "https://h.example/", "https://other.example/x"),
        ("p/1", "http%3A//h.example/blog/", "http://h.example/blog/p/1"),  # broken base
        ("", "https://h.example/", None),
    ],
)
def test_normalize_link_resolves_against_a_base(url: str, base: str, expected: str) -> None:
    assert normalize_link(url, base) == expected


def test_normalizing_twice_changes_nothing() -> None:
    for url in ("HTTP://A.example//x%7e/caf%c3%a9?utm_source=1&b=2#x", "http%3A//a.example/100%"):
        once = normalize_link(url)
        assert once is not None and normalize_link(once) == once


def test_repair_leaves_good_urls_alone() -> None:
    assert repair("https://a.example/x?y=1") == "https://a.example/x?y=1"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://www.a.example/post/", "https://a.example/post"),
        ("https://a.example/post/index.html", "https://a.example/post"),
        ("https://a.example/p?b=2&a=1", "https://a.example/p?a=1&b=2&utm_source=x"),
        ("https://a.example/post#comments", "https://a.example/post"),
    ],
)
def test_canonical_url_matches_the_same_article(a: str, b: str) -> None:
    assert canonical_url(a) == canonical_url(b)


def test_canonical_url_of_a_normalized_link_skips_normalizing_again() -> None:
    raw = "HTTP://WWW.Example.com//a/../b/index.html?utm_source=x&id=2#frag"
    link = normalize_link(raw)
    assert link is not None
    assert canonical_url(link, normalized=True) == canonical_url(raw)


def test_canonical_url_keeps_different_articles_apart() -> None:
    assert canonical_url("https://a.example/#/post/1") != canonical_url(
        "https://a.example/#/post/2"
    )
    assert canonical_url("https://a.example/p?id=1") != canonical_url("https://a.example/p?id=2")


@pytest.mark.parametrize(
    ("url", "site"),
    [
        ("https://karpathy.github.io/feed.xml", "github.io"),
        ("https://colah.github.io/rss.xml", "github.io"),
        ("https://jalammar.substack.com/feed", "substack.com"),
        ("http://Foo.Blogspot.com./feeds/posts/default", "blogspot.com"),
        ("https://www.bbc.co.uk/news/rss.xml", "bbc.co.uk"),
        ("https://blog.abc.net.au/feed", "abc.net.au"),
        ("https://medium.com/feed/@someone", "medium.com"),
        ("https://blog.example.co/feed", "example.co"),
        ("http://127.0.0.2:8900/feed/1.xml", "127.0.0.2"),
        ("http://127.0.0.3:8900/feed/1.xml", "127.0.0.3"),
        ("http://[::1]:8900/feed.xml", "::1"),
        ("http://localhost:8900/feed.xml", "localhost"),
        ("not a url", ""),
    ],
)
def test_site_of_groups_a_platforms_blogs(url: str, site: str) -> None:
    assert site_of(url) == site


def test_site_of_a_broken_url_is_the_url() -> None:
    assert site_of("http://[not a host/") == "http://[not a host/"
