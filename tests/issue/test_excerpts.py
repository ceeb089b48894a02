"""Excerpts open with the first sentence of prose and end at a sentence: the shapes of real
feeds (al-folio, Substack, Hugo, a link blog), reproduced in tests/data/excerpts/."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.ingest.parse import parse_feed
from digest.issue.excerpts import excerpt

DATA = Path(__file__).resolve().parents[1] / "data" / "excerpts"
NOW = datetime(2026, 4, 1, tzinfo=UTC)


def excerpts_of(name: str, words: int = 55) -> dict[str, str]:
    feed = parse_feed((DATA / name).read_bytes(), "https://feeds.example/feed", now=NOW)
    return {post.title: excerpt(post.text, post.title, words) for post in feed.posts}


def test_al_folio_posts_open_with_their_prose() -> None:
    got = excerpts_of("alfolio.atom")
    assert got["Private training, step by step"].startswith("Differential privacy is a way")
    assert "inputs. We train" in got["Private training, step by step"]  # no " ." left by a cite
    assert got["Flow matching, drawn"].startswith("The first part of this post")
    assert got["Learning dynamics, a primer"] == (
        "The dynamics of learning describe how a network's parameters change during training. "
        "They are nonlinear even for linear activations. Simulations show the geometry of the "
        "loss."
    )  # the footnote and the "Empirical studies" heading are gone
    assert got["Spectral bias in generative models"].startswith("We usually see images")


def test_substack_posts_skip_buttons_widgets_and_captions() -> None:
    got = excerpts_of("substack.rss")
    assert got["Attention, step by step"] == (
        "Attention lets a model relate positions in a sequence. This post builds it from "
        "scratch. First, the limits of recurrent models."
    )
    assert got["Rewards and discounting"] == (
        "Imagine you are new to a city and looking for dinner. Each meal teaches you something."
    )


def test_hugo_and_link_blog_shapes() -> None:
    got = excerpts_of("hugo.atom")
    control = got["Control characters in my terminal"]
    assert control.startswith("Hello! I’ve been thinking about the terminal a lot and yesterday I")
    assert "table of contents" not in control and "a table of ASCII" not in control
    assert got["Rules that terminal programs follow"] == (
        "Everything that happens in the terminal is some combination of: Your operating "
        "system’s job; Your shell’s job; The job of whatever program you happen to be running "
        "(like top). The first two are known quantities."
    )
    link_post = got["Incident Report: CVE-2026-LGTM"]  # its title again, then its text
    assert link_post == "A hypothetical incident report by Andrew Nesbitt."
    assert got["Inference optimization"].startswith("Large models are expensive to run.")
    assert got["Quoting Timothy B. Lee"] == (
        "“This is like saying there is no learning curve to being a manager.” — Timothy B. Lee"
    )


@pytest.mark.parametrize(
    ("text", "first"),
    [
        # Posts stored before headings were dropped at parse time: glued no more.
        ("Introduction\nDifferential privacy is a framework.", "Differential privacy is"),
        ("Background\nThe dynamics of learning.", "The dynamics of"),
        ("TL;DR\nWe made it faster.", "We made it"),
        ("1. Introduction\nWe made it faster.", "We made it"),
        ("What is Calibration\nCalibration makes sure.", "Calibration makes sure."),
        ("All authors contributed equally to this work.\nThe first part.", "The first part."),
        ("*Equal contribution\nThe first part.", "The first part."),
        ("Special thanks to John for feedback.\nTest time compute helps.", "Test time compute"),
        ("[Updated on 2023-01-24: add a section.]\nLarge models are costly.", "Large models"),
        ("Originally published on May 1, 2021.\nThese are the books.", "These are the books."),
        ("Originally published on May 1, 2021. The list is short.", "The list is short."),
        ("(EDIT: better numbers exist. See below.)\nI often read papers.", "I often read"),
        ("Note: use the front matter.\nThis theme renders math.", "This theme renders"),
        ("Subscribe now\nShare\nThe post starts here.", "The post starts here."),
        ("Thanks for reading X! Subscribe for free.\nThe post.", "The post."),
        ("Figure 1: a cat.\nCats are great.", "Cats are great."),
        ("Photo by Someone on Unsplash\nCats are great.", "Cats are great."),
        ("(Image source: Smith 2020)\nCats are great.", "Cats are great."),
        ("Table of contents\nCats are great.", "Cats are great."),
        ("Here's a quick table of contents:\nCats are great.", "Cats are great."),
        ("By Jane Doe\nCats are great.", "Cats are great."),
        ("12 min read\nCats are great.", "Cats are great."),
        ("My Post Title\nCats are great.", "Cats are great."),  # the title again
        ("Release: My Post Title\nCats are great.", "Cats are great."),
    ],
)
def test_what_comes_before_the_prose_is_skipped(text: str, first: str) -> None:
    assert excerpt(text, "My Post Title", 55).startswith(first)


def test_prose_that_looks_like_furniture_stays() -> None:
    assert excerpt("Like many people, I read feeds.", "t", 55) == "Like many people, I read feeds."
    assert excerpt("Just a\nfew words.", "t", 55) == "Just a few words."  # hard-wrapped
    assert excerpt("lol", "t", 55) == "lol"  # a one-line note is its own excerpt
    assert excerpt("Introduction", "t", 55) == "Introduction"  # nothing else to show


def test_an_excerpt_ends_at_a_sentence_when_one_is_near() -> None:
    first = " ".join(["word"] * 44) + " end."
    assert excerpt(first + " " + " ".join(["more"] * 40), "t", 55) == first
    no_stop = " ".join(f"w{i}" for i in range(100))
    assert excerpt(no_stop, "t", 55) == " ".join(f"w{i}" for i in range(55)) + "…"


def test_abbreviations_and_initials_are_not_sentence_ends() -> None:
    text = "Good (1965) and I. J. Good wrote et al. " + "x " * 30 + "then stop. " + "y " * 40
    out = excerpt(text, "t", 55)
    assert out.endswith("then stop.")


def test_a_later_heading_ends_the_excerpt_or_is_dropped() -> None:
    long = " ".join(["word"] * 30) + "."
    assert excerpt(f"{long}\nThe Problem\nMore text here.", "t", 55) == long
    assert excerpt("Short intro.\nThe Problem\nMore text.", "t", 55) == "Short intro. More text."


def test_blocks_without_a_stop_are_not_glued() -> None:
    out = excerpt("The video is here:\nVideo Link\nAs an experiment, I did it.", "t", 55)
    assert out == "The video is here: Video Link. As an experiment, I did it."
    block = "This paragraph ends before a code sample, with no stop at the end of it"
    assert excerpt(f"{block}\nNew sentence here.", "t", 55) == f"{block}. New sentence here."


def test_a_word_that_starts_with_a_mark_keeps_its_space() -> None:
    text = "It is in the file .git/HEAD , next to .gitignore ; it costs .5 cents ."
    assert (
        excerpt(text, "t", 55)
        == "It is in the file .git/HEAD, next to .gitignore; it costs .5 cents."
    )


def test_notes_in_brackets_are_skipped_closed_or_not() -> None:
    # Lil'Log's summaries: "[Updated on …]", "[Updated on …]." and one never closed.
    notes = (
        "[Updated on 2020-01-09: add a new section on Contrastive Predictive Coding].\n"
        "[Updated on 2021-05-26: P-tuning and Prompt Tuning, in two new sections.]\n"
        "[Updated on 2020-11-12: add an example on closed-book factual QA using OpenAI API.\n"
    )
    prose = "A model that can answer any question can lead to many useful applications."
    assert excerpt(notes + prose, "t", 55) == prose
    assert excerpt(notes, "t", 55) == ""  # nothing but notes: no excerpt rather than notes


def test_a_tldr_list_is_kept_as_a_list() -> None:
    text = (
        "I have loved three things in product managers.\ntldr;\nTalk with customers\n"
        "Develop and share a vision\nEvangelize\nAs a product manager, you talk to customers."
    )
    assert excerpt(text, "t", 55) == (
        "I have loved three things in product managers. tldr; Talk with customers; Develop and "
        "share a vision; Evangelize. As a product manager, you talk to customers."
    )


def test_tex_blocks_and_zero_words() -> None:
    assert excerpt(r"$$ \def\E#1{x} $$ Real words.", "t", 55) == "Real words."
    assert excerpt("anything", "t", 0) == ""


def test_the_weeks_real_shapes() -> None:
    """The quirks of the list's real feeds (tests/data/week/): code blocks, quotations, notes
    never closed, a sentence a few words past the limit, a feed that gives only a link."""
    from datetime import UTC, datetime

    from digest.ingest.parse import parse_feed
    from tests.week_helpers import FEEDS, WEEK_DATA, fill

    now = datetime(2026, 8, 15, tzinfo=UTC)
    got = {}
    for _folder, _title, name in FEEDS:
        text = fill((WEEK_DATA / name).read_text(), now, "https://site.example")
        for entry in parse_feed(text.encode(), f"https://site.example/{name}", now=now).posts:
            got[entry.title] = excerpt(entry.text, entry.title, 55)
    # A quotation keeps its marks, its attribution after it.
    assert got["Quoting Timothy B. Lee"].startswith("“This is like saying there's no learning")
    assert got["Quoting Timothy B. Lee"].endswith(
        "to do.” — Timothy B. Lee, on the idea that LLMs take no skill and have no learning curve"
    )
    assert got["Quoting Dean W. Ball"].startswith("“This is a bad state of affairs.")
    assert got["Quoting Dean W. Ball"].endswith("margins compress.”")
    assert (
        "One person commented: “There are so many pieces"
        in got['What\'s involved in getting a "modern" terminal setup?']
    )
    # Code never opens an excerpt, nor the sentence that leads to it; later, it ends one.
    assert got["datasette-tailscale 0.1a0"].startswith("This starts a localhost Datasette server")
    assert got["Writing a web server from scratch: 1. HTTP and sockets"].startswith(
        "And say we'd like"
    )
    assert got["Implementing a simple jq clone in Go, and basics of Go memory profiling"].endswith(
        "do filters, mapping, etc."
    )
    assert "<html>" not in " ".join(got.values()) and "$ cat" not in " ".join(got.values())
    # The sentence that ends a few words past the limit ends the excerpt whole.
    assert got["Bliki: WaterfallProcess"].endswith(
        "breaking down a large effort into phases based on activity."
    )
    # A note never closed is skipped; a feed that gives only the post's link has no excerpt.
    assert got["Scaling Laws, Carefully"].startswith("Scaling laws are one of the most critical")
    assert got["0042: consulting lessons, there are no strings on me, buttons"] == ""
    assert got["Harness Engineering for Self-Improvement"].startswith(
        "The concept of recursive self-improvement"
    )
