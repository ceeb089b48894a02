"""Commands: (filled in by the issue that owns them)."""

from __future__ import annotations

from digest.cli import cli  # noqa: F401
