"""Layouts into email parts: Jinja2 templates, premailer's inlining, the size budget."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from premailer import Premailer

from digest.errors import RenderError
from digest.issue.compose import (
    LEVELS,
    NO_RANKING,
    Grouped,
    Layout,
    Ranking,
    Window,
    arrange,
    group,
)
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
INLINE_GROWTH = 1.55  # inlined HTML / template output, measured on the packaged templates


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
            preheader = cut_at_word(context["in_this_issue"], PREHEADER_CHARS)
            context.update(subject=subject, preheader=preheader)
            html = self.env.get_template("digest.html.j2").render(context)
            text = self.env.get_template("digest.txt.j2").render(context)
        except jinja2.TemplateError as e:
            where = f"{e.filename}:{e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else ""
            raise RenderError(f"template error {where}: {e}".replace(" :", ":")) from e
        return RenderedEmail(subject, inline_css(html), text.strip() + "\n", context["preheader"])

    def fit(
        self,
        posts: Sequence[StoredPost],
        meta: IssueMeta,
        budget: int,
        sections: frozenset[str] | None = None,
        ranking: Ranking = NO_RANKING,
    ) -> tuple[Layout, RenderedEmail]:
        """The richest layout whose inlined HTML stays under ``budget`` bytes."""
        grouped = group(posts, sections, ranking)
        # Inlining is the slow step: pick the level from raw template sizes (inlining grows
        # them by a steady factor), inline once, and step down only if the guess was short.
        ratio = INLINE_GROWTH
        start = 0
        while True:
            start = self._first_fitting(grouped, meta, budget / ratio, start)
            layout = arrange(grouped, LEVELS[start])
            rendered = self.render(layout, meta)
            size = _size(rendered)
            if size <= budget or start == len(LEVELS) - 1:
                return layout, rendered
            ratio = size / self._raw_size(layout, meta)
            start += 1

    def _first_fitting(
        self, grouped: Grouped, meta: IssueMeta, raw_budget: float, start: int
    ) -> int:
        for i in range(start, len(LEVELS) - 1):
            if self._raw_size(arrange(grouped, LEVELS[i]), meta) <= raw_budget:
                return i
        return len(LEVELS) - 1

    def _raw_size(self, layout: Layout, meta: IssueMeta) -> int:
        context = self._context(layout, meta)
        context.update(subject="", preheader="")
        return len(self.env.get_template("digest.html.j2").render(context).encode())

    def _context(self, layout: Layout, meta: IssueMeta) -> dict[str, Any]:
        """What the templates see; "in_this_issue" is the preheader template's line (the
        counts per section and the picks' titles), shown under the title too."""
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
        }
        line = self.env.get_template("preheader.txt.j2").render(context)
        context["in_this_issue"] = " ".join(line.split())
        return context

    def _day(self, value: datetime) -> str:
        local = value.astimezone(self.timezone)
        return f"{local:%a} {local.day} {local:%b}"

    def _date_range(self, window: Window) -> str:
        return date_range(window.start, window.end, self.timezone)


def date_range(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    """An issue's window as the issue says it (and the archive, and the welcome email):
    "8–15 August 2026", "29 August – 5 September 2026", "26 December 2026 – 2 January 2027"."""
    start, end = start.astimezone(zone), end.astimezone(zone)
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}–{end.day} {end:%B %Y}"
    if start.year == end.year:
        return f"{start.day} {start:%B} – {end.day} {end:%B %Y}"
    return f"{start.day} {start:%B %Y} – {end.day} {end:%B %Y}"


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
