"""The one rich console. Human-facing output (progress, tables, errors) goes to stderr;
machine output (JSON, rendered Dockerfiles) goes to stdout, written by the CLI."""

from __future__ import annotations

import os
import sys

from rich.console import Console

# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; logs are wider.
_WIDTH = None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 160

console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def live_display() -> bool:
    """Animate progress only on a real terminal outside CI; elsewhere print one line per event."""
    return console.is_terminal and not in_ci()
