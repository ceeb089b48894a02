"""Layouts into email parts: Jinja2 templates, premailer's inlining, the size budget."""

from __future__ import annotations

import functools
import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup
from premailer import Premailer

from digest.config import DEFAULT_SUBJECT
from digest.errors import RenderError
from digest.issue.compose import NO_RANKING, Grouped, Layout, Ranking, Window, group
from digest.issue.fitting import Sizes
from digest.issue.inline import Inline
from digest.text import cut_at_word
from digest.types import (
    PREFERENCES_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
    RenderedEmail,
    StoredPost,
)

PACKAGE_TEMPLATES = Path(__file__).parents[1] / "templates"
TEXT_WIDTH = 78
PREHEADER_CHARS = 140
# After the preheader, invisible characters up to this many, so an inbox's preview line ends
# with it instead of running on into the issue's first words ("Read it on the web ...").
PREHEADER_ROOM = 150
PADDING = "&#8199;&#847;"  # a figure space and a combining grapheme joiner: invisible
LEAD_CHARS = 60  # {lead} in the subject: the first pick's title, cut at a word
EDGE = timedelta(minutes=1)  # a window's first or last minute of a day doesn't name the day
# Inlined HTML / template output, measured on the packaged templates: 1.64 on bench/preview.py's
# busy week (94,042 / 57,362 bytes), whose first guess then fits and is inlined once.
INLINE_GROWTH = 1.64


@dataclass(frozen=True)
class IssueMeta:
    """What the templates show besides the posts."""

    title: str
    number: int
    window: Window
    base_url: str
    timezone: ZoneInfo
    unsubscribe_url: str = UNSUBSCRIBE_PLACEHOLDER
    preferences_url: str = PREFERENCES_PLACEHOLDER
    health: tuple[str, ...] = ()  # feed health lines: previews only, never subscribers' copies
    intro: Inline | None = None  # the curator's (`digest intro`)
    subject_template: str = DEFAULT_SUBJECT  # newsletter.subject
    signup: bool = False  # the sign-up form is open: "Forwarded this? Subscribe"
    postal_address: str = ""  # newsletter.postal_address, in the footer when set
    web: bool = False  # the web version: the web's footer, no personal links
    desk: bool = False  # the curator's desk: each post's element carries data-post

    @property
    def web_url(self) -> str:
        return f"{self.base_url}/issues/{self.number}"


def environment(template_dir: Path | None) -> jinja2.Environment:
    """Templates from ``template_dir`` first (a user's own look), then the packaged ones."""
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None and template_dir.is_dir():
        loaders.append(jinja2.FileSystemLoader(template_dir))
    loaders.append(jinja2.FileSystemLoader(PACKAGE_TEMPLATES))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html.j2", "html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["plural"] = lambda word, n: word if n == 1 else word + "s"
    env.filters["wrap"] = wrap
    return env


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "") -> str:
    """Text in lines of at most ``width``; a word longer than that (a URL) keeps its line."""
    return textwrap.fill(
        " ".join(str(text).split()),
        width=width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


class Renderer:
    """Renders layouts with one template set, in one time zone."""

    def __init__(self, template_dir: Path | None, timezone: ZoneInfo) -> None:
        self.env = environment(template_dir)
        self.timezone = timezone
        self.env.filters["day"] = self._day
        self.env.filters["date_range"] = self._date_range

    def render(self, layout: Layout, meta: IssueMeta) -> RenderedEmail:
        """The subject, inlined HTML and plain text of one layout."""
        try:
            context = self._context(layout, meta)
            subject = " ".join(self.env.get_template("subject.txt.j2").render(context).split())
            preheader = _preheader(layout, meta, context["in_this_issue"])
            padding = Markup(PADDING * max(0, PREHEADER_ROOM - len(preheader)))
            context.update(subject=subject, preheader=preheader, preheader_padding=padding)
            html = self.env.get_template("digest.html.j2").render(context)
            text = self.env.get_template("digest.txt.j2").render(context)
        except jinja2.TemplateError as e:
            where = f"{e.filename}:{e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else ""
            raise RenderError(f"template error {where}: {e}".replace(" :", ":")) from e
        return RenderedEmail(subject, inline_css(html), text.strip() + "\n", preheader)

    def fit(
        self,
        posts: Sequence[StoredPost] | Grouped,
        meta: IssueMeta,
        budget: int,
        sections: frozenset[str] | None = None,
        ranking: Ranking = NO_RANKING,
    ) -> tuple[Layout, RenderedEmail]:
        """The richest layout whose inlined HTML stays under ``budget`` bytes, every post
        named where they fit (issue/fitting.py chooses)."""
        grouped = posts if isinstance(posts, Grouped) else group(posts, sections, ranking)
        sizes = Sizes(grouped, lambda layout: self._raw_size(layout, meta))
        # Inlining is the slow step: choose the layout from raw template sizes (inlining grows
        # them by a steady factor), inline once, and cut more only if the guess was short.
        ratio = INLINE_GROWTH
        cut = sizes.choose(budget / ratio)
        while True:
            layout = sizes.layout(cut)
            rendered = self.render(layout, meta)
            size = _size(rendered)
            if size <= budget or sizes.smallest(cut):
                return layout, rendered
            ratio = size / sizes.raw(cut)
            cut = sizes.smaller(cut, budget / ratio)

    def _raw_size(self, layout: Layout, meta: IssueMeta) -> int:
        context = self._context(layout, meta)
        context.update(subject="", preheader="", preheader_padding="")
        return len(self.env.get_template("digest.html.j2").render(context).encode())

    def _context(self, layout: Layout, meta: IssueMeta) -> dict[str, Any]:
        """What the templates see; "in_this_issue" is the preheader template's line (the
        counts per section and the picks' titles), shown under the title too."""
        lines = layout.lines
        lead = layout.lead.title if layout.lead else (lines[0].title if lines else "")
        context = {
            "title": meta.title,
            "number": meta.number,
            "window": meta.window,
            "picks": layout.picks,
            "sections": layout.sections,
            "post_count": layout.post_count,
            "blog_count": layout.blog_count,
            "base_url": meta.base_url,
            "web_url": meta.web_url,
            "unsubscribe_url": meta.unsubscribe_url,
            "preferences_url": meta.preferences_url,
            "health": meta.health,
            "intro": meta.intro,
            "signup": meta.signup,
            "postal_address": meta.postal_address,
            "web": meta.web,
            "desk": meta.desk,
            "unlisted": layout.unlisted,
            "lead": cut_at_word(lead, LEAD_CHARS),
        }
        fields = {
            "name": meta.title,
            "number": meta.number,
            "lead": context["lead"],
            "posts": layout.post_count,
            "blogs": layout.blog_count,
        }
        context["subject_line"] = meta.subject_template.format_map(fields)
        line = self.env.get_template("preheader.txt.j2").render(context)
        context["in_this_issue"] = " ".join(line.split())
        return context

    def _day(self, value: datetime) -> str:
        local = value.astimezone(self.timezone)
        return f"{local:%a} {local.day} {local:%b}"

    def _date_range(self, window: Window) -> str:
        return date_range(window.start, window.end, self.timezone)


def date_range(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    """The days a window covers, as the issue says them (and the archive, and the welcome
    email): "8–15 August 2026", "29 August – 5 September 2026", "26 December 2026 – 2 January
    2027". A window that starts in a day's last minute (--as-of 2026-08-08 ends at 23:59:59)
    begins the next day, one that ends at midnight ends the day before, and one day is
    "6 December 2026"."""
    first = (start + EDGE).astimezone(zone)
    last = max(first, (end - EDGE).astimezone(zone))
    if first.date() == last.date():
        return f"{last.day} {last:%B %Y}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{last.day} {last:%B %Y}"
    if first.year == last.year:
        return f"{first.day} {first:%B} – {last.day} {last:%B %Y}"
    return f"{first.day} {first:%B %Y} – {last.day} {last:%B %Y}"


def _preheader(layout: Layout, meta: IssueMeta, in_this_issue: str) -> str:
    """What an inbox shows after the subject: the intro's first sentence, else the picks'
    titles, else the "In this issue" line."""
    if meta.intro:
        text = meta.intro.first_sentence
    elif layout.picks:
        text = "; ".join(pick.item.title for pick in layout.picks)
    else:
        text = in_this_issue
    return cut_at_word(text, PREHEADER_CHARS)


@functools.lru_cache(maxsize=8)
def renderer_for(template_dir: Path | None, timezone: ZoneInfo) -> Renderer:
    """One Renderer per template folder and zone: compiling the templates costs ~10 ms a
    render otherwise (Jinja2 still reloads a template whose file changed)."""
    return Renderer(template_dir, timezone)


def inline_css(html: str) -> str:
    """CSS rules moved into style attributes; @media rules stay in <style>."""
    try:
        return str(
            Premailer(
                html,
                remove_classes=False,  # the @media rules left in <style> select by class
                strip_important=False,
                disable_validation=True,
                allow_network=False,
                cssutils_logging_level=logging.CRITICAL,
            ).transform()
        )
    except Exception as e:  # premailer raises anything on bad CSS
        raise RenderError(f"inlining the CSS failed: {e}") from e


def _size(rendered: RenderedEmail) -> int:
    return len(rendered.html.encode())
