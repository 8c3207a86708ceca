"""What a command imports decides how fast it starts (issue 11): `mab plan` and `mab tags`
read no registry, so they must not load httpx, python-on-whales or the doctor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported(*args: str, cwd: Path) -> set[str]:
    """The modules ``mab ARGS`` imports (``python -X importtime``), after checking it ran."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.mark.parametrize("command", [["plan"], ["tags"], ["plan", "--json"], ["--help"]])
def test_offline_commands_load_no_registry_or_engine_stack(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "builds.yaml").write_text(
        "registry: registry.test/team\nplatforms: [linux/amd64, linux/arm64]\n"
        "targets:\n  app: {context: app, tags: ['1.0.0']}\n"
    )
    modules = imported(*command, cwd=tmp_path)
    assert "mab.cli.main" in modules  # the measurement saw mab's own imports
    heavy = {"httpx", "python_on_whales", "mab.doctor", "cryptography", "bcrypt", "mab.signing"}
    assert not modules & heavy
