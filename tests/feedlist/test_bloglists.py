"""The markdown blog lists: their format, and turning entries into feed sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import ConfigError
from digest.feedlist.bloglists import BlogEntry, build_sources, parse_list, read_lists
from digest.types import FeedRules, FeedSource

REPO = Path(__file__).parents[2]

SAMPLE = """# Blogs

Free text above the first section, even bullets:
- like this one, which is not an entry

```
## Not a section
- [Not an entry](https://fenced.example/)
```

## ML

- [Chris Olah](https://colah.github.io/) — feed: https://colah.github.io/rss.xml
  Last post 2019.
  Still worth keeping.
- [Andrej Karpathy](https://karpathy.ai/) — feeds: https://karpathy.bearblog.dev/feed/, <https://karpathy.github.io/feed.xml>
* [Square \\[brackets\\]](<https://brackets.example/>) a note in the line, no feed

### Deep

+ [Deep one](https://deep.example/) - FEED: https://deep.example/atom.xml

## Systems
- [cks](https://utcc.utoronto.ca/~cks/space/blog/) feed: https://utcc.utoronto.ca/~cks/space/blog/?atom
"""


def test_entries_sections_feeds_and_notes() -> None:
    entries = parse_list(SAMPLE, "sample.md")
    assert [e.name for e in entries] == [
        "Chris Olah",
        "Andrej Karpathy",
        "Square [brackets]",
        "Deep one",
        "cks",
    ]
    olah, karpathy, brackets, deep, cks = entries
    assert olah == BlogEntry(
        name="Chris Olah",
        site="https://colah.github.io/",
        section="ML",
        feeds=("https://colah.github.io/rss.xml",),
        notes=("Last post 2019.", "Still worth keeping."),
        origin="sample.md:13",
    )
    assert karpathy.feeds == (
        "https://karpathy.bearblog.dev/feed/",
        "https://karpathy.github.io/feed.xml",
    )
    assert brackets.site == "https://brackets.example/" and brackets.feeds == ()
    assert deep.section == "ML/Deep" and deep.feeds == ("https://deep.example/atom.xml",)
    assert cks.section == "Systems"
    assert cks.feeds == ("https://utcc.utoronto.ca/~cks/space/blog/?atom",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("## ML\n- Chris Olah, https://colah.github.io/\n", r"^x.md:2: a list entry looks like"),
        ("## ML\n\n- [A](ftp://a.example/)\n", r"^x.md:3: the site must be an http\(s\) URL"),
        ("## ML\n- [A](https://a.example/) feed: soon\n", r"^x.md:2: `feed:` is followed by no"),
        ('## ML\n\n\n- [A](https://a.example/) — skip: "(oops"\n', r"^x.md:4: skip: bad regular"),
        ("## ML\n- [A](https://a.example/) — skip: sponsored\n", r"^x.md:2: `skip:` takes a reg"),
        (
            '## ML\n- [A](https://a.example/) — skip: "a" — skip: "b"\n',
            r"^x.md:2: `skip:` is given",
        ),
        ("## ML\n- [A](https://a.example/) — section: cooking\n", r"^x.md:2: section: unknown"),
        ('## ML\n- [A](https://a.example/) — section: ml if "[x"\n', r"^x.md:2: section if: bad"),
        ('## ML\n- [A](https://a.example/) — skip: "a" — later\n', r"^x.md:2: cannot read the"),
    ],
)
def test_malformed_entries_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_list(text, "x.md")


def test_rules_ride_on_an_entry_after_its_feeds() -> None:
    text = (
        "## ML\n"
        '- [Links](https://links.example/) — feed: https://links.example/atom.xml — skip: "(?i)'
        'sponsored|weeknotes" — section: systems if "(?i)databases|sqlite"\n'
        "- [Sys](https://sys.example/) — section: Systems\n"
        '- [Plain](https://plain.example/) - feed: https://plain.example/rss - skip: "a - b"\n'
    )
    links, whole, plain = parse_list(text, "x.md")
    assert links.feeds == ("https://links.example/atom.xml",)
    assert links.rules == FeedRules("(?i)sponsored|weeknotes", "systems", "(?i)databases|sqlite")
    assert whole.rules == FeedRules(section="systems") and whole.feeds == ()
    assert plain.rules == FeedRules(skip="a - b")
    [source] = build_sources([links], lambda _site: None)[0]
    assert source.rules == links.rules


def test_read_lists_reads_every_md_file_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("## Systems\n- [B](https://b.example/)\n")
    (tmp_path / "a.md").write_text("## ML\n- [A](https://a.example/)\n")
    (tmp_path / "notes.txt").write_text("## ML\n- [Ignored](https://c.example/)\n")
    entries = read_lists(tmp_path)
    assert [(e.name, e.section, e.origin) for e in entries] == [
        ("A", "ML", f"{tmp_path / 'a.md'}:2"),
        ("B", "Systems", f"{tmp_path / 'b.md'}:2"),
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no \\*.md file"):
        read_lists(tmp_path / "empty")
    with pytest.raises(ConfigError, match="is not a folder"):
        read_lists(tmp_path / "missing")


def test_build_sources_pins_discovers_once_and_reports_the_rest() -> None:
    entries = parse_list(
        "## ML\n"
        "- [Pinned](https://p.example/) — feeds: https://p.example/a.xml https://p.example/b.xml\n"
        "- [Found](https://found.example/)\n"
        "- [Found again](https://found.example/)\n"
        "- [Lost](https://lost.example/)\n"
        "## Systems\n"
        "- [Pinned twice](https://p2.example/) — feed: https://p.example/a.xml\n",
        "x.md",
    )
    asked: list[str] = []

    def discover(site: str) -> str | None:
        asked.append(site)
        return "https://found.example/feed" if site == "https://found.example/" else None

    sources, unresolved = build_sources(entries, discover)
    assert sorted(asked) == ["https://found.example/", "https://lost.example/"]
    assert sources == [
        FeedSource("https://p.example/a.xml", "Pinned (p.example)", "https://p.example/", "ML"),
        FeedSource("https://p.example/b.xml", "Pinned (p.example)", "https://p.example/", "ML"),
        FeedSource("https://found.example/feed", "Found", "https://found.example/", "ML"),
    ]
    assert unresolved == ["Lost (https://lost.example/)"]


def test_repo_lists_parse_with_karpathy_twice_and_jay_alammar_once() -> None:
    entries = read_lists(REPO / "lists")
    assert len(entries) == 45
    assert all(e.feeds for e in entries)  # everything is pinned: the build needs no network
    assert {e.section for e in entries} == {"ML", "Systems"}
    karpathy = next(e for e in entries if e.name == "Andrej Karpathy")
    assert karpathy.feeds == (
        "https://karpathy.bearblog.dev/feed/",
        "https://karpathy.github.io/feed.xml",
    )
    jay = [e for e in entries if "Alammar" in e.name]
    assert len(jay) == 1
    assert jay[0].feeds == ("https://newsletter.languagemodels.co/feed",)
    assert any("https://jalammar.github.io/feed.xml" in note for note in jay[0].notes)
    sources, unresolved = build_sources(entries, lambda _site: None)
    assert len(sources) == 46 and unresolved == []
