"""The one place mab runs a program other than docker (docker goes through
``mab.engine.whales``), in the foreground (``call``, ``run``) or detached for good
(``spawn_detached``).

Arguments are passed as a list (no shell). Output is captured. Secrets go in on stdin,
never in the argument list.

``echo``: under ``--verbose`` every process mab runs (here, and the docker CLI calls the
engine adapter makes) is printed once as ``+ command``, redacted and shell-quoted, so a
user can rerun a failing call by hand (as cibuildwheel's ``call()`` does).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from mab.secrets import redact

_echo: Callable[[str], None] | None = None


def set_echo(printer: Callable[[str], None] | None) -> None:
    """Send ``+ command`` lines to *printer* from now on (None: stop)."""
    global _echo  # noqa: PLW0603 - one switch for the whole process, set by the CLI
    _echo = printer


def echo(argv: Sequence[str]) -> None:
    """Print ``+ argv`` (redacted) when echoing is on."""
    if _echo is not None:
        _echo("+ " + redact(shlex.join(str(a) for a in argv)))


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
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run *argv*; its exit code is the caller's to judge. Without *stdin* the program
    reads nothing (it never inherits mab's terminal). *env*: its whole environment (a
    secret a program reads from a variable goes in here, never in *argv*); default mab's."""
    echo(argv)
    environment = dict(env) if env is not None else None
    try:
        if stdin is None:
            return subprocess.run(
                list(argv),
                cwd=cwd,
                env=environment,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        return subprocess.run(
            list(argv),
            cwd=cwd,
            env=environment,
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
    echo(argv)
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


def parent_death_prefix() -> list[str]:
    """A command prefix that makes the program get SIGTERM when mab dies, SIGKILL
    included (Linux ``prctl(PR_SET_PDEATHSIG)`` through util-linux's ``setpriv``). The
    docker CLI passes SIGTERM on to buildx, which cancels the build: no build runs on
    for nobody. Empty where setpriv is missing."""
    if not sys.platform.startswith("linux"):
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def terminate_children(sig: int = signal.SIGTERM) -> list[int]:
    """Send *sig* to this process's direct children in its own session (the docker and
    buildx calls of a run), not to servers it started detached (the embedded registry has
    a session of its own). Linux (/proc); elsewhere nothing. Returns the pids signalled."""
    me, session = os.getpid(), os.getsid(0)
    hit: list[int] = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
            pid = int(entry.parent.name)
            if int(fields[1]) != me or os.getsid(pid) != session:  # fields[1]: ppid
                continue
            os.kill(pid, sig)
            hit.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return hit
