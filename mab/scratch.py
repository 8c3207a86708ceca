"""Scratch folders: every temporary file of one mab process lives under one folder,
``$TMPDIR/mab-run-PID-XXXX/``, removed when the process exits (normally, on an error, on
SIGINT or SIGTERM). A process killed with SIGKILL cannot clean up, so each new run first
removes the folders of mab processes that no longer exist.

Before this, OCI layouts (hundreds of MB per platform image on the docker driver),
buildx metadata and rendered Dockerfiles each had a temp folder of their own, and a
killed run left them all behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

_PREFIX = "mab-run-"
_lock = threading.Lock()
_root: Path | None = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def clean_stale(base: Path | None = None) -> list[Path]:
    """Remove the run folders of mab processes that are gone; returns what it removed."""
    removed: list[Path] = []
    folder = base or Path(tempfile.gettempdir())
    for path in folder.glob(f"{_PREFIX}*"):
        pid_text = path.name[len(_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def run_dir() -> Path:
    """This process's scratch folder (made on first use, removed at exit)."""
    global _root  # noqa: PLW0603 - one folder per process
    with _lock:
        if _root is None or not _root.is_dir():
            clean_stale()
            _root = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
            atexit.register(remove_run_dir)
        return _root


def remove_run_dir() -> None:
    global _root  # noqa: PLW0603 - one folder per process
    with _lock:
        if _root is not None:
            shutil.rmtree(_root, ignore_errors=True)
            _root = None


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A fresh folder under this run's scratch folder, removed when the block ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=run_dir()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
