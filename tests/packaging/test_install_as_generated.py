"""The install line of a generated workflow, run for real.

``mab ci generate`` tells every CI job how to install mab. Here that line is taken from a
generated workflow and run by a shell in a fresh venv, against a local folder holding only
this checkout's wheel (``PIP_NO_INDEX``, ``PIP_FIND_LINKS``: pip finds nothing else), and
the ``mab`` it gives must name the version and distribution that wrote the workflow. That
mab then generates the same line again: what a workflow installs regenerates itself.

The wheel's dependencies come from the package index first, the way a CI job gets them.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import yaml

import mab
from mab.config import install

REPO = Path(__file__).resolve().parents[2]
PROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))[
    "project"
]
BUILDS_YAML = "registry: ghcr.io/acme\ntargets:\n  web: {context: app}\n"


def _project(root: Path) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text("FROM scratch\n")
    (root / "builds.yaml").write_text(BUILDS_YAML)
    return root


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without the checkout on the import path or an active venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return env | extra


def _install_lines(mab_command: list[str], project: Path) -> dict[str, set[str]]:
    """The install command of every job of the GitHub workflow and the GitLab pipeline
    that *mab_command* generates for *project*."""
    found: dict[str, set[str]] = {}
    for provider in ("github", "gitlab"):
        out = subprocess.run(
            [*mab_command, "ci", "generate", provider, "--out", "-"],
            cwd=project,
            env=_clean_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        data: dict[str, Any] = yaml.safe_load(out.stdout)
        if provider == "github":
            found[provider] = {
                step["run"]
                for job in data["jobs"].values()
                for step in job["steps"]
                if step["name"] == "Install mab"
            }
        else:
            found[provider] = {
                line
                for key, job in data.items()
                if key.startswith("build-") or key == "merge"
                for line in job["before_script"]
                if line.startswith("pip install")
            }
    return found


def _venv(venv: Path) -> Path:
    """A fresh venv whose ``pip`` is this Python's pip working on it (``pip --python``):
    ensurepip would take ten seconds to put a pip of its own there."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bin_dir = venv / "bin"
    pip = bin_dir / "pip"
    pip.write_text(
        f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pip "
        f'--python {shlex.quote(str(bin_dir / "python"))} "$@"\n'
    )
    pip.chmod(0o755)
    return bin_dir


def _requirements(wheel: Path) -> list[str]:
    """The wheel's own dependencies (Requires-Dist without an extra)."""
    name = wheel.name.split("-")[0]
    metadata = zipfile.ZipFile(wheel).read(f"{name}-{PROJECT['version']}.dist-info/METADATA")
    return [
        line.split(":", 1)[1].strip()
        for line in metadata.decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]


def test_pyproject_and_mab_agree_on_name_and_version() -> None:
    assert PROJECT["name"] == install.DISTRIBUTION == "mab-build"  # "mab" on PyPI is not ours
    assert list(PROJECT["scripts"]) == ["mab"]  # the command stays mab
    assert PROJECT["version"] == mab.__version__


def test_wheel_installs_the_way_the_generated_workflow_says(wheel: Path, tmp_path: Path) -> None:
    version = PROJECT["version"]
    project = _project(tmp_path / "project")

    lines = _install_lines([sys.executable, "-m", "mab"], project)
    assert lines == {"github": {f"pip install mab-build=={version}"}} | {
        "gitlab": {f"pip install mab-build=={version}"}
    }
    (line,) = lines["github"]
    assert shlex.split(line)[:2] == ["pip", "install"]

    venv = tmp_path / "venv"
    bin_dir = _venv(venv)
    subprocess.run(
        [bin_dir / "pip", "install", "--quiet", *_requirements(wheel)],
        env=_clean_env(),
        capture_output=True,
        check=True,
    )
    # the line as the job's shell runs it, with this venv's pip first on PATH; pip may
    # look only in the folder with the wheel
    install = subprocess.run(
        ["bash", "-euc", line],
        cwd=project,
        env=_clean_env(
            PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(wheel.parent),
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        ),
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    shown = subprocess.run(
        [bin_dir / "mab", "--version"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == f"mab {version} (distribution mab-build)\n"
    where = subprocess.run(
        [
            bin_dir / "python",
            "-c",
            "import importlib.metadata as m, mab; print(mab.__file__); "
            "print(m.version('mab-build')); print([d.metadata['Name'] for d in "
            "m.distributions() if d.metadata['Name'].lower() == 'mab'])",
        ],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert Path(where[0]).is_relative_to(venv)  # the wheel's mab, not the checkout's
    assert where[1:] == [version, "[]"]  # and no PyPI "mab" beside it

    # the installed mab writes the line that installed it
    assert _install_lines([str(bin_dir / "mab")], project) == lines
