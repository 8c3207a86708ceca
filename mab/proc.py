"""The one place mab runs a program other than docker (docker goes through engine.py).

Arguments are passed as a list (no shell). Output is captured and returned; a missing
program or a non-zero exit becomes ``ProcessFailed`` for the caller to translate.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


class ProcessFailed(Exception):
    def __init__(self, argv: Sequence[str], code: int | None, stderr: str) -> None:
        super().__init__(f"{argv[0]} exited with {code}: {stderr.strip()[:300]}")
        self.code = code
        self.stderr = stderr


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 60.0,
) -> str:
    """Run *argv* and return its stdout. *stdin* is how secrets are passed, never argv."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ProcessFailed(argv, None, f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise ProcessFailed(argv, None, f"timed out after {timeout:.0f}s") from None
    if done.returncode != 0:
        raise ProcessFailed(argv, done.returncode, done.stderr)
    return done.stdout
