"""A real browser for the tests: Debian's Chromium driven headless by Playwright (the system
browser: nothing is downloaded at run time), and axe-core (from the npm registry, installed by
scripts/test into .venv/axe) to check a page's accessibility.

Without Chromium, Playwright or axe-core the tests that need them skip, each with a line that
says what is missing (pytest -ra prints it)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Headless, and quiet: without the background-networking flags Chromium dials Google's
# services at start, which a closed network refuses (and CI's is closed).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parent.parent
# scripts/test installs axe-core here and exports the path; read at import, because the tests'
# own fixture clears DIGEST_* variables before each test.
AXE = Path(os.environ.get("DIGEST_TEST_AXE", REPO / ".venv/axe/node_modules/axe-core/axe.min.js"))
# Read at import for the same reason: where screenshots go, when set.
SHOTS = os.environ.get("DIGEST_TEST_SHOTS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A Chromium context (one per test module: starting Chromium costs about a second)."""
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="browser test skipped: Playwright is not installed"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser test skipped: no Chromium at {CHROMIUM} (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="digest-chromium-")  # an empty --user-data-dir
    # bypass_csp: our pages allow no script at all; the checks inject axe-core past that.
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, bypass_csp=True
        )
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def axe_violations(page: Any, *, impacts: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (all of them, or only those of the given
    impacts, e.g. ("serious", "critical")). Skips the test when axe-core is not installed."""
    if not AXE.exists():
        pytest.skip(f"accessibility check skipped: no axe-core at {AXE} (scripts/test installs it)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document)).violations")
    violations = [dict(v) for v in result]
    if impacts:
        violations = [v for v in violations if v.get("impact") in impacts]
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violation: its rule, impact and the first offending nodes (for asserts)."""
    lines = []
    for v in violations:
        targets = [" ".join(map(str, n.get("target", []))) for n in v.get("nodes", [])[:3]]
        lines.append(f"{v['id']} ({v.get('impact')}): {v.get('help')} at {targets}")
    return "\n".join(lines)


def assert_accessible(
    page: Any, what: str, *, schemes: tuple[str, ...] = ("light", "dark")
) -> None:
    """No axe-core violation on the page in each colour scheme."""
    for scheme in schemes:
        page.emulate_media(color_scheme=scheme)
        found = axe_violations(page)
        assert not found, f"{what} ({scheme}):\n{describe(found)}"
    page.emulate_media(color_scheme="light")


def shoot(page: Any, name: str, widths: tuple[int, ...] = (375, 1280)) -> None:
    """The page at each width, full length, into $DIGEST_TEST_SHOTS (when set)."""
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    for width in widths:
        page.set_viewport_size({"width": width, "height": 800})
        page.screenshot(path=f"{SHOTS}/{name}-{width}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
