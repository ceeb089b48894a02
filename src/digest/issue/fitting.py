"""How much of a week fits the size budget (no I/O): which layout level, and how many of the
compact lines that name a folded blog's other posts.

Every post is named if the budget allows it: the richest level at which the items and every
other post's line fit. Past that (a week of thousands of posts), the richest level whose items
fit, then as many lines as the rest of the budget holds, trimmed from the end of the issue
(the rest counted as "and K more"). Sizes are of the raw template output; the renderer checks
the inlined size and asks for a smaller cut when inlining grew more than guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from digest.issue.compose import LEVELS, Grouped, Layout, arrange

LAST = len(LEVELS) - 1
SAMPLE = 200  # posts whose titles and links guess a line's size
LINE_MARKUP = 75  # raw bytes of a line's markup in lines.html.j2, besides its title and link
# Lines fill this share of the room left: a guess that overshoots costs another inlining
# (premailer: ~40 ms for a busy week's 90 KB), one that falls short a line or two.
FILL = 0.97


@dataclass(frozen=True)
class Cut:
    """A layout level (an index into LEVELS) and the most compact lines shown (None: all)."""

    level: int
    lines: int | None


class Sizes:
    """Raw sizes of one week's layouts, each rendered once (``raw_size`` renders one)."""

    def __init__(self, grouped: Grouped, raw_size: Callable[[Layout], int]) -> None:
        self.grouped = grouped
        self.raw_size = raw_size
        self._raw: dict[Cut, int] = {}
        self._room: dict[int, int] = {}
        self._per_line: float | None = None

    def layout(self, cut: Cut) -> Layout:
        return arrange(self.grouped, LEVELS[cut.level], lines=cut.lines)

    def raw(self, cut: Cut) -> int:
        if cut not in self._raw:
            layout = self.layout(cut)
            self._raw[cut] = self.raw_size(layout)
            if cut.lines == 0:
                self._room[cut.level] = layout.unlisted
        return self._raw[cut]

    def room(self, level: int) -> int:
        """The lines this level could list: the posts it shows no item for."""
        self.raw(Cut(level, 0))
        return self._room[level]

    def choose(self, raw_budget: float) -> Cut:
        """The first guess: everything named, at the richest level where that fits; else the
        richest level whose items fit, with the lines that fit after them."""
        if self.room(0) == 0:
            return (
                Cut(0, None) if self.raw(Cut(0, 0)) <= raw_budget else self._items_first(raw_budget)
            )
        # Level 0 lists the fewest lines: if even those can't fit, no level names everything.
        if self.per_line() * self.room(0) <= raw_budget:
            for level in range(len(LEVELS)):
                bare = self.raw(Cut(level, 0))
                if bare + self.per_line() * self.room(level) <= raw_budget:
                    return Cut(level, None)
        return self._items_first(raw_budget)

    def smaller(self, cut: Cut, raw_budget: float) -> Cut:
        """A smaller cut than ``cut`` for ``raw_budget``: fewer lines, then a poorer level."""
        lines = self.room(cut.level) if cut.lines is None else cut.lines
        if lines > 0:
            fewer = min(self._lines_for(cut.level, raw_budget), lines - max(1, lines // 20))
            return Cut(cut.level, max(0, fewer))
        if cut.level == LAST:
            return cut
        return Cut(cut.level + 1, self._lines_for(cut.level + 1, raw_budget))

    def smallest(self, cut: Cut) -> bool:
        return cut.level == LAST and (cut.lines == 0 or self.room(LAST) == 0)

    def per_line(self) -> float:
        """Raw bytes a line adds, guessed from the week's titles and links (no rendering: the
        renderer's check corrects a guess too long)."""
        if self._per_line is None:
            posts = [p for s in self.grouped.sections for b in s.blogs for p in b][:SAMPLE]
            texts = sum(len(p.title) + len(p.link or "") for p in posts)
            self._per_line = LINE_MARKUP + texts / max(1, len(posts))
        return self._per_line

    def _items_first(self, raw_budget: float) -> Cut:
        for level in range(len(LEVELS)):
            if self.raw(Cut(level, 0)) <= raw_budget:
                return Cut(level, self._lines_for(level, raw_budget))
        return Cut(LAST, 0)

    def _lines_for(self, level: int, raw_budget: float) -> int:
        spare = raw_budget - self.raw(Cut(level, 0))
        if spare <= 0 or self.room(level) == 0:
            return 0
        return min(self.room(level), int(FILL * spare / self.per_line()))
