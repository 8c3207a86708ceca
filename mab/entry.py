"""The ``mab`` console script: imports the CLI inside a guard of its own, so Ctrl-C while
Python is still importing (pydantic, rich, httpx take a few hundred ms) exits 130 with
one line instead of a KeyboardInterrupt traceback. Imports nothing heavy itself.

It also ends the process without Python's module teardown once the command is done:
freeing pydantic's, rich's and typer's module state took 0.1-0.2 s of every run here,
a sixth of an unchanged ``mab build`` (issue 11). atexit handlers (the run's scratch
folder) still run and stdout and stderr are flushed first; while any other non-daemon
thread is alive the exit is the ordinary one, which waits for it.

What the import loaded is moved out of the garbage collector's sight (``gc.freeze``):
module state lives until the process ends anyway, and a big builds.yaml (2,000 targets)
makes enough objects that every full collection walked all of it again.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
import threading


def main() -> None:
    try:
        from mab.cli.main import main as run  # noqa: PLC0415 - the guarded import is the point
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    gc.freeze()
    try:
        run()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    exit_now(code)


def exit_now(code: object) -> None:
    """Exit with *code* as ``SystemExit`` would (None: 0, an int, else printed and 1),
    skipping the interpreter's teardown when nothing else is running."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        sys.stderr.write(f"{code}\n")
        status = 1
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()[1:]):
        raise SystemExit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: mab plan | head
            stream.flush()
    os._exit(status)
