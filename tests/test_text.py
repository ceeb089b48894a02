"""Plain text from feed HTML: text.html_to_text (a post's prose too), plain_to_text, feed_text."""

from __future__ import annotations

import pytest

from digest.text import (
    cut_at_word,
    feed_text,
    html_to_text,
    one_line,
    page_words,
    plain_to_text,
    reading_minutes,
    word_count,
)


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>Hello <b>world</b></p>", "Hello world"),
        ("<p>One</p><p>Two</p>", "One\nTwo"),
        ("Line<br>break", "Line\nbreak"),
        ("<p>Hi <script>alert(1)</script>there</p>", "Hi there"),
        ("<style>p { color: red }</style><p>Styled</p>", "Styled"),
        ("<p>a<noscript>no</noscript><iframe src=x></iframe><svg><text>s</text></svg>b</p>", "ab"),
        ("<p>x<!-- a comment -->y</p>", "xy"),
        ("Tom &amp; Jerry &mdash; &#x2F;&#47; &nbsp;ok", "Tom & Jerry — // ok"),
        ("Tom &amp;amp; Jerry", "Tom & Jerry"),  # escaped twice
        ("R&D; and AT&T;", "R&D and AT&T"),  # feedparser's repair of a bare "&"
        ("&lt;p&gt;Escaped &lt;em&gt;twice&lt;/em&gt;&lt;/p&gt;", "Escaped twice"),
        (
            "&lt;p&gt;Twice, with &lt;script&gt;x()&lt;/script&gt;a script&lt;/p&gt;",
            "Twice, with a script",
        ),
        (
            "<p>A <code>Vec&lt;T&gt;</code> of <code>#include &lt;map&gt;</code></p>",
            "A Vec<T> of #include <map>",
        ),
        ("<pre>if a &lt; b &amp;&amp; c &gt; d</pre>", "if a < b && c > d"),
        ("<p>  lots \t of\u00a0 space  </p>\n\n\n<p>next</p>", "lots of space\nnext"),
        ("plain text only", "plain text only"),
        ("", ""),
        ("   ", ""),
        ("<div><p></p></div>", ""),
        ("Intro<p>Body</p>Outro", "Intro\nBody\nOutro"),  # blocks never run into the text
        ("<p>one<p>two", "one\ntwo"),  # unclosed paragraphs
        ("<ul><li>a</li><li>b</li></ul>", "a\nb"),
        ("<!-- only a comment -->", ""),
        ("<p>a\u200bb zero\u2009width</p>", "a b zero width"),
        ("<p>x</p><?php echo 1 ?><p>y</p>", "x\ny"),
        ("<param name=p>kept <pre>code</pre>", "kept\ncode"),  # <param> is not <p>
    ],
)
def test_html_to_text(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<h2>Introduction</h2><p>Differential privacy is</p>", "Differential privacy is"),
        ("<p>a hard-wrapped\nparagraph</p><p>next</p>", "a hard-wrapped paragraph\nnext"),
        ("<figure><img><figcaption>Figure 1</figcaption></figure><p>x</p>", "x"),
        ("<p>cite<d-cite key=k></d-cite> and<d-footnote>note</d-footnote> on</p>", "cite and on"),
        ("<p>x<sup class=footnote-ref><a href='#fn1'>1</a></sup> y</p>", "x y"),
        ("<p>x<sup><a href='#fn1'>1</a></sup> and 2<sup>10</sup></p>", "x and 210"),
        ("<p class='button-wrapper'><a class='button'>Share</a></p><p>x</p>", "x"),
        ("<div class='subscription-widget'><p>Subscribe!</p></div><p>x</p>", "x"),
        ("<nav id='TableOfContents'><a href='#a'>A</a></nav><p>x</p>", "x"),
        ("<ul><li><a href='#a'>Part A</a></li><li><a href='#b'>B</a></li></ul><p>x</p>", "x"),
        ("<ul><li><a href='https://a.example/'>A</a></li><li>b</li></ul>", "A\nb"),  # kept
        # A wrapper whose class looks like furniture holds the post: it stays.
        ("<div class='post toc-enabled'><p>" + "word " * 20 + "</p></div>", ("word " * 20).strip()),
        ("<h2>Only a heading</h2>", "Only a heading"),  # nothing else: better than nothing
    ],
)
def test_article_text_is_the_prose(markup: str, text: str) -> None:
    assert html_to_text(markup, article=True) == text


def test_html_to_text_survives_broken_markup() -> None:
    assert html_to_text("<p>unclosed <b>bold <i>and <a href='x'>link") == "unclosed bold and link"
    assert html_to_text("</p></div>stray closers") == "stray closers"
    assert isinstance(html_to_text("<<<>>>"), str)  # no crash is the point


def test_html_to_text_limit_cuts_at_a_word() -> None:
    assert html_to_text("<p>" + "word " * 100 + "</p>", limit=23) == "word word word word…"


def test_plain_text_is_not_parsed_as_html() -> None:
    assert plain_to_text("Vec<T> in Rust & a < b") == "Vec<T> in Rust & a < b"
    assert plain_to_text("AT&amp;T") == "AT&T"
    assert feed_text("Vec<T>", "text/plain") == "Vec<T>"
    assert feed_text("Vec<T> <b>bold</b>", "text/html") == "Vec bold"
    assert feed_text("<p>xhtml</p>", "application/xhtml+xml") == "xhtml"
    assert feed_text("<p>no type</p>", None) == "no type"


def test_one_line_and_word_count() -> None:
    assert one_line(" a\n b\t\tc ") == "a b c"
    assert word_count("one two\nthree") == 3
    assert reading_minutes(0) == 1
    assert reading_minutes(231) == 2


def test_cut_at_word() -> None:
    assert cut_at_word("short", 10) == "short"
    assert cut_at_word("alpha beta gamma delta", 12) == "alpha beta…"
    assert cut_at_word("alpha, beta gamma", 7) == "alpha…"  # trailing punctuation goes
    assert cut_at_word("x" * 20, 10) == "x" * 10 + "…"  # no space: a hard cut


def test_tag_soup_nested_past_the_parsers_limit_keeps_its_text() -> None:
    # Every unclosed tag nests: libxml2 drops what lies deeper than its limit.
    assert html_to_text("<div>" * 3000 + "deep text" + "</div>" * 3000) == "deep text"
    soup = "<b>" * 5000 + "unclosed <script>evil()</script>soup <style>p{}"
    assert html_to_text(soup) == "unclosed soup"


def test_nothing_but_scripts_or_comments_is_no_text() -> None:
    for markup in ("<script>alert(1)", "<!-- note", "<img src=x alt=y>", "<p></p>"):
        assert html_to_text(markup) == ""


def test_page_words_counts_the_article_not_the_page_around_it() -> None:
    page = (
        b"<!doctype html><html><head><title>Not counted</title><script>var a = 1;</script>"
        b"</head><body><nav>Home About Archive</nav><header>Site banner</header>"
        b"<article><header><h1>Title</h1></header><p>one two three</p><p>four five</p>"
        b"<footer>Tags: a b</footer></article><article><p>related</p></article>"
        b"<aside>Sidebar words</aside><footer>Copyright</footer></body></html>"
    )
    assert page_words(page) == 5


def test_page_words_falls_back_to_main_then_the_body() -> None:
    assert page_words(b"<body><nav>x y</nav><main><p>a b c</p></main><p>d</p></body>") == 3
    assert page_words(b"<body><div role='main'>a b</div><p>c</p></body>") == 2
    assert page_words(b"<body><nav>menu</nav><div>a b c d</div></body>") == 4


def test_page_words_reads_the_declared_charset_and_survives_garbage() -> None:
    latin = "<html><head><meta charset='iso-8859-1'></head><body><main>café crème</main>"
    assert page_words(latin.encode("latin-1")) == 2
    assert page_words(b"") == 0
    assert page_words(b"\x00\xff\xfe") in (0, 1)
    assert page_words(b"<" * 10_000) >= 0


def test_invisible_format_characters_are_stripped_but_scripts_and_emoji_keep_theirs() -> None:
    from digest.text import html_to_text, one_line, strip_invisible

    assert one_line("Invoice \u202eexe.txt\u202c ready") == "Invoice exe.txt ready"
    assert one_line("\u2066isolated\u2069 and so\u00adft and \ufeffBOM\u200e") == (
        "isolated and soft and BOM"
    )
    assert html_to_text("<p>Hello\u202e world</p>") == "Hello world"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji, joined
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # a ZWNJ inside a word
    wales = "\U0001f3f4\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f"
    for kept in (family, persian, wales, "\u0600\u0661\u0662"):
        assert strip_invisible(kept) == kept
    assert strip_invisible("a \u200d b\u200c") == "a  b"  # joiners joining nothing
    assert strip_invisible("tag\U000e0041\U000e0042") == "tag"  # tags outside a flag


def test_every_format_character_is_either_stripped_or_kept_on_purpose() -> None:
    import unicodedata

    from digest.text import strip_invisible

    kept = {0x200C, 0x200D, *range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2}
    kept |= {0x110BD, 0x110CD, *range(0x13430, 0x13440), *range(0x1BCA0, 0x1BCA4)}
    kept |= set(range(0x1D173, 0x1D17B))
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) == "Cf" and code not in kept:
            assert strip_invisible(f"a{char}b") == "ab", f"U+{code:04X}"
