"""The two rich consoles. Results (tables, lists) go to stdout through ``out``, so they
can be piped and redirected; progress, warnings and errors go to stderr through ``err``
(as docker, buildx and git do). JSON and rendered Dockerfiles are written to stdout as
plain text. Colour only on a terminal; rich honours ``NO_COLOR``."""

from __future__ import annotations

import os
import sys

from rich.console import Console

from mab.config.defaults import in_ci


def _width(stream: object) -> int | None:
    # Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; logs are wider.
    tty = getattr(stream, "isatty", lambda: False)()
    return None if tty or os.environ.get("COLUMNS") else 160


err = Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))
out = Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))


def live_display() -> bool:
    """Animate progress only on a real terminal outside CI; elsewhere print one line per event."""
    return err.is_terminal and not in_ci()
