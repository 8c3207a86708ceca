"""The wheel of this checkout, built once for the packaging tests."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))[
    "project"
]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps .``: the one wheel, named after pyproject's distribution."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
    )
    (built,) = wheels.glob("*.whl")
    # the file name carries the normalised distribution name: mab-build -> mab_build
    name = PROJECT["name"].replace("-", "_")
    assert built.name == f"{name}-{PROJECT['version']}-py3-none-any.whl"
    return built
