"""Templates must work from an installed wheel, not only from a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path


def test_wheel_carries_templates_and_renders_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "mab/templates/go.Dockerfile.j2" in names

    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "builds.yaml").write_text(
        "targets:\n  api: {context: src, template: go, vars: {main: ./cmd/api}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import mab.planning.templates as t; print(t.builtin_dir())"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip() == str(site / "mab" / "templates")
    rendered = subprocess.run(
        [sys.executable, "-m", "mab", "render"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "FROM --platform=$BUILDPLATFORM golang:" in rendered.stdout
    assert "/out/api ./cmd/api" in rendered.stdout
