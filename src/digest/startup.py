"""A command's start-up without cyclic garbage collections.

Start-up is imports: every object they make lives as long as the process, yet the collector
walks them again and again as they pile up (150 collections before a warm poll's first
request, 80-150 ms of its start-up on the loaded 2-core machine). The CLI pauses
collections as it starts; the command resumes them once its code is loaded, freezing what
the imports made so that no later collection walks it again.
"""

from __future__ import annotations

import gc

_paused = False


def pause_collections() -> None:
    """No cyclic collections until resume_collections() (a no-op if they are off already)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collections() -> None:
    """Freeze every object made so far (no collection walks them again) and collect again;
    a no-op unless pause_collections() turned them off (a library caller, the tests)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
