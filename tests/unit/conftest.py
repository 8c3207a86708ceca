from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A folder with two build contexts: app/ (with a Dockerfile) and goapp/."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "goapp").mkdir()
    return tmp_path


@pytest.fixture
def write_config(project_dir: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = project_dir / "builds.yaml"
        path.write_text(text)
        return path

    return write
