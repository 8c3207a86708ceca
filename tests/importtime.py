"""Run ``python -m mab ARGS`` under ``-X importtime``: what a command loads decides how
fast it starts (issue 11). Shared by the unit start-up tests and the skip integration test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_importtime(
    *args: str, cwd: Path, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """(the finished run, the modules imported) of ``mab ARGS`` run in *cwd*, after
    checking it ran."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return done, modules
