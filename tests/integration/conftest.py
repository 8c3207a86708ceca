"""Integration tests: a real dockerd with BuildKit, QEMU, a distribution registry on
localhost:5000, and crane (a verifier no one in this project wrote).

``scripts/test`` (and so CI) sets all of that up first. Where something is missing these
tests are skipped with the reason, except in CI (CI=true), where a missing piece is a
failure: CI must never pass by skipping the tests that prove mab works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .packageserver import STAMP as PACKAGES_STAMP

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "localhost:5000"
MIRRORS = (
    "mirror/busybox:1.35",
    "mirror/golang:1.19-bookworm",
    "mirror/debian-cross:bookworm",
    "mirror/distroless-cc:debian12-nonroot",
    "mirror/rust:1.63-bookworm",
    "mirror/python:3.11-slim-bookworm",
    "mirror/node:18-bookworm-slim",
    "mirror/nginx-unprivileged:1.22",
    "mirror/uv:0.4",
)


def _missing() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker engine answers (run: sudo scripts/engine-up)"
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode != 0:
        return "no buildx plugin (run: sudo scripts/engine-up)"
    if shutil.which("crane") is None:
        return "no crane on PATH (run: sudo scripts/engine-up)"
    try:
        httpx.get(f"http://{REGISTRY}/v2/", timeout=3).raise_for_status()
    except httpx.HTTPError:
        return f"no registry at {REGISTRY} (run: sudo scripts/engine-up)"
    for image in MIRRORS:
        if crane("digest", f"{REGISTRY}/{image}", check=False).returncode != 0:
            return f"mirror image {image} missing (run: scripts/make-mirrors)"
    if not PACKAGES_STAMP.is_file():  # for the template tests' private indexes
        return f"package cache {PACKAGES_STAMP.parent} missing (run: scripts/make-mirrors)"
    return None


@pytest.fixture(scope="session", autouse=True)
def engine_ready() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the engine tests, but: {reason}", pytrace=False)
    pytest.skip(f"engine tests need a real engine: {reason}")


def crane(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["crane", *args], capture_output=True, text=True, check=check)


def crane_json(*args: str) -> Any:
    return json.loads(crane(*args).stdout)


@dataclass
class MabRun:
    code: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_mab(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, report: Path | None = None
) -> MabRun:
    cmd = [sys.executable, "-m", "mab", *args]
    if report is not None:
        cmd += ["--report", str(report)]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=1200,
    )
    data = json.loads(report.read_text()) if report is not None and report.exists() else None
    return MabRun(proc.returncode, proc.stdout, proc.stderr, data)


def platforms_of(index: dict[str, Any]) -> list[str]:
    """Platform entries of an index as crane shows it, attestation entries set aside."""
    out = []
    for entry in index.get("manifests", []):
        annotations = entry.get("annotations") or {}
        if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue
        p = entry["platform"]
        if p.get("os") == "unknown":
            continue
        out.append("/".join(x for x in (p["os"], p["architecture"], p.get("variant")) if x))
    return sorted(out)


@pytest.fixture
def namespace() -> str:
    """A fresh registry path per test, so nothing a test checks can be left from before."""
    return f"{REGISTRY}/t{uuid.uuid4().hex[:10]}"


@dataclass
class DemoRun(MabRun):
    """``mab build`` of the repository's builds.yaml, in a registry path of its own."""

    file: Path = REPO / "builds.yaml"
    registry: str = ""


def demo_copy(folder: Path, registry: str) -> Path:
    """The repository's builds.yaml and examples/ in *folder*, pushing to *registry*: a
    fresh path, so what the tests check was built by this session (an earlier run on the
    same machine left mab-demo's immutable tags, which a build never overwrites)."""
    shutil.copytree(REPO / "examples", folder / "examples")
    text = (REPO / "builds.yaml").read_text()
    lines = [
        f"registry: {registry}" if ln.startswith("registry:") else ln for ln in text.splitlines()
    ]
    path = folder / "builds.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """``mab build`` on the repository's own builds.yaml, once per session."""
    folder = tmp_path_factory.mktemp("demo")
    registry = f"{REGISTRY}/demo{uuid.uuid4().hex[:8]}"
    path = demo_copy(folder, registry)
    report = folder / "report.json"
    run = run_mab("build", "-f", str(path), cwd=folder, report=report)
    yield DemoRun(run.code, run.stdout, run.stderr, run.report, path, registry)
