"""The ``mab`` console script: imports the CLI inside a guard of its own, so Ctrl-C while
Python is still importing (pydantic, rich, httpx take a few hundred ms) exits 130 with
one line instead of a KeyboardInterrupt traceback. Imports nothing heavy itself."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from mab.cli.main import main as run  # noqa: PLC0415 - the guarded import is the point
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    run()
