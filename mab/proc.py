"""The one place mab runs a program other than docker (docker goes through engine.py),
in the foreground (``call``, ``run``) or detached for good (``spawn_detached``).

Arguments are passed as a list (no shell). Output is captured. Secrets go in on stdin,
never in the argument list.
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


class ProgramNotFound(ProcessFailed):
    """The program is not on PATH."""


class ProcessTimedOut(ProcessFailed):
    """The program did not finish in time (it was killed)."""


def call(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run *argv*; its exit code is the caller's to judge. Without *stdin* the program
    reads nothing (it never inherits mab's terminal)."""
    try:
        if stdin is None:
            return subprocess.run(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        return subprocess.run(
            list(argv),
            cwd=cwd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ProgramNotFound(argv, None, f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise ProcessTimedOut(argv, None, f"timed out after {timeout:.0f}s") from None


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 60.0,
) -> str:
    """Run *argv* and return its stdout; a non-zero exit raises ProcessFailed."""
    done = call(argv, cwd=cwd, stdin=stdin, timeout=timeout)
    if done.returncode != 0:
        raise ProcessFailed(argv, done.returncode, done.stderr)
    return done.stdout


def spawn_detached(argv: Sequence[str], log: Path) -> int:
    """Start *argv* in its own session, outliving mab, with its output appended to *log*;
    return its pid. For servers mab starts and leaves running (the local registry)."""
    with log.open("ab") as out:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ProgramNotFound(argv, None, f"{argv[0]} not found") from None
    return process.pid
