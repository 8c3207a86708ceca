"""Helpers for the integration tests of buildx's docker-container and remote drivers.

Not a test file: tests import it. The set-up itself is ``scripts/buildkit-up`` (BuildKit
built from ``../shared/buildkit``, the image ``localhost:5000/mirror/buildkit:<version>``
for the docker-container driver, host ``buildkitd`` nodes for the remote driver); this
module runs it and reads what it made.

    info = ensure_buildkit()                     # once per session; skips only when not root
    amd, arm = start_nodes([["linux/amd64"], ["linux/arm64", "linux/arm/v7"]])
    with remote_builder("t-fleet", amd, arm) as name:   # one builder, two nodes
        ...  # docker buildx build --builder NAME / mab build --builder NAME
    assert any("linux/arm64" in r.platforms for r in arm.history())
    stop_nodes()

Each ``Node`` keeps its own record of what it built (``history()``: BuildKit's build
history API through ``buildctl debug histories``; ``log_text()``: the daemon's log), so a
test can prove where a platform was built from the node itself, not from mab's report.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILDKIT_UP = REPO / "scripts" / "buildkit-up"
ETC_DIR = Path("/etc/mab-engine")
STATE_FILE = ETC_DIR / "buildkit-up.json"  # written by scripts/buildkit-up
RUN_DIR = Path("/run/mab-buildkit")
STATE_DIR = Path("/var/lib/mab-buildkit")
LOG_DIR = Path("/var/log/mab-engine")
BUILDCTL = "buildctl"  # linked into /usr/local/bin by scripts/buildkit-up


@dataclass(frozen=True)
class BuildKitInfo:
    """What ``scripts/buildkit-up`` set up (from /etc/mab-engine/buildkit-up.json)."""

    version: str
    image: str
    container_config: Path
    buildkitd: Path
    buildctl: Path


@dataclass
class _Session:
    """ensure_buildkit()'s result for this pytest process: the set-up runs once."""

    info: BuildKitInfo | None = None
    error: str | None = None


_session = _Session()


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _run(cmd: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def _buildkit_up(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run scripts/buildkit-up; a failure fails the test with its output (never a skip)."""
    proc = _run([str(BUILDKIT_UP), "--quiet", *args], timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/buildkit-up {' '.join(args)} failed (exit {proc.returncode}):\n"
            f"{proc.stdout}{proc.stderr}",
            pytrace=False,
        )
    return proc


def ensure_buildkit() -> BuildKitInfo:
    """Build/install BuildKit and its image with scripts/buildkit-up, once per session.

    Skips (LOUDLY) only when not root: the set-up starts daemons and writes under /opt,
    /etc, /run and /var. In CI (CI=true) even that is a failure, as in conftest.py.
    """
    if _session.info is not None:
        return _session.info
    if _session.error is not None:
        pytest.fail(_session.error, pytrace=False)
    if os.geteuid() != 0:
        reason = (
            "!!! BUILDKIT DRIVER TESTS NOT RUN: scripts/buildkit-up needs root (it starts "
            "buildkitd daemons and installs under /opt/mab-engine). Run the tests as root. !!!"
        )
        if _in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    try:
        _buildkit_up()
    except pytest.fail.Exception as exc:  # remember it: the next test fails at once
        _session.error = str(exc)
        raise
    data: dict[str, Any] = json.loads(STATE_FILE.read_text())
    _session.info = BuildKitInfo(
        version=str(data["version"]),
        image=str(data["image"]),
        container_config=Path(data["container_config"]),
        buildkitd=Path(data["buildkitd"]),
        buildctl=Path(data["buildctl"]),
    )
    return _session.info


@dataclass(frozen=True)
class BuildRecord:
    """One build in a node's own history (BuildKit's build history API)."""

    ref: str
    frontend: str
    frontend_attrs: dict[str, str]
    exporters: tuple[str, ...]
    exporter_response: dict[str, str]
    created_at: float | None
    completed_at: float | None
    error: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def platforms(self) -> tuple[str, ...]:
        """The platforms the build was asked for (frontend attribute ``platform``)."""
        value = self.frontend_attrs.get("platform", "")
        return tuple(p.strip() for p in value.split(",") if p.strip())

    @property
    def image_digest(self) -> str | None:
        """The digest of the image (or index) the build exported, if it exported one: what
        the exporter answered (a build of several platforms pushes an index of them),
        else the build's result."""
        pushed = self.exporter_response.get("containerimage.digest")
        if pushed:
            return pushed
        result = self.raw.get("Result") or {}
        digest = (result.get("ResultDeprecated") or {}).get("digest")
        if digest is None:
            digests = [d.get("digest") for d in (result.get("Results") or {}).values()]
            digest = next((d for d in digests if d), None)
        return None if digest is None else str(digest)

    @property
    def result_platforms(self) -> tuple[str, ...]:
        """The platforms the build produced a result for (its per-platform results)."""
        return tuple(sorted(str(p) for p in self.raw.get("Results") or {}))

    @property
    def ok(self) -> bool:
        return self.error is None and self.completed_at is not None


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, dict):
        return None
    return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9


def _record(raw: dict[str, Any]) -> BuildRecord:
    error = raw.get("error")
    message: str | None = None
    if isinstance(error, dict):
        message = str(error.get("message") or error.get("Message") or error)
    return BuildRecord(
        ref=str(raw.get("Ref", "")),
        frontend=str(raw.get("Frontend", "")),
        frontend_attrs={str(k): str(v) for k, v in (raw.get("FrontendAttrs") or {}).items()},
        exporters=tuple(str(e.get("Type", "")) for e in raw.get("Exporters") or []),
        exporter_response={str(k): str(v) for k, v in (raw.get("ExporterResponse") or {}).items()},
        created_at=_timestamp(raw.get("CreatedAt")),
        completed_at=_timestamp(raw.get("CompletedAt")),
        error=message,
        raw=raw,
    )


@dataclass(frozen=True)
class Node:
    """A host buildkitd started by scripts/buildkit-up (node ``index``)."""

    index: int
    requested_platforms: tuple[str, ...] = ()  # empty: all BuildKit detects

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def socket(self) -> Path:
        return RUN_DIR / self.name / "buildkitd.sock"

    @property
    def address(self) -> str:
        """The endpoint for ``buildx create --driver remote`` and ``buildctl --addr``."""
        return f"unix://{self.socket}"

    @property
    def root(self) -> Path:
        return STATE_DIR / self.name

    @property
    def config_path(self) -> Path:
        return ETC_DIR / f"buildkit-{self.name}.toml"

    @property
    def log_path(self) -> Path:
        return LOG_DIR / f"buildkit-{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return RUN_DIR / self.name / "buildkitd.pid"

    def pid(self) -> int | None:
        """The daemon's pid, if it runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError):
            return None
        return pid if comm == "buildkitd" else None

    def running(self) -> bool:
        return self.pid() is not None and self.buildctl("debug", "workers").returncode == 0

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill the daemon (SIGKILL: a node lost mid-build). start_nodes() brings it back."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, sig)
            for _ in range(50):
                if self.pid() is None:
                    break
                time.sleep(0.1)

    def buildctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return _run([BUILDCTL, "--addr", self.address, *args], timeout=timeout)

    def debug(self, *args: str) -> str:
        """``buildctl debug ARGS`` against this node (e.g. ``workers``, ``info``)."""
        proc = self.buildctl("debug", *args)
        if proc.returncode != 0:
            raise RuntimeError(f"buildctl debug {' '.join(args)} on {self.name}: {proc.stderr}")
        return proc.stdout

    def workers(self) -> list[dict[str, Any]]:
        """The node's workers as BuildKit reports them (id, labels, platforms, ...)."""
        data: list[dict[str, Any]] = json.loads(self.debug("workers", "--format", "{{json .}}"))
        return data

    def platforms(self) -> list[str]:
        """The platforms this node serves, as BuildKit reports them."""
        out = []
        for worker in self.workers():
            for p in worker.get("platforms") or []:
                parts = (p.get("os"), p.get("architecture"), p.get("variant"))
                out.append("/".join(x for x in parts if x))
        return out

    def history(self) -> list[BuildRecord]:
        """Every build this node has a record of, oldest first (``buildctl debug histories``)."""
        out = self.debug("histories", "--format", "{{json .}}")
        records = []
        for line in out.splitlines():
            if not line.strip():
                continue
            event: dict[str, Any] = json.loads(line)
            raw = event.get("record")
            if isinstance(raw, dict):
                records.append(_record(raw))
        return sorted(records, key=lambda r: r.created_at or 0.0)

    def built_platforms(self) -> set[str]:
        """The platforms of every build in this node's history."""
        return {p for record in self.history() for p in record.platforms}

    def log_text(self) -> str:
        """The daemon's log (every start of this node appends to it)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def disk_usage(self) -> str:
        """``buildctl du``: the cache records the node holds."""
        return self.buildctl("du").stdout


def start_nodes(specs: Sequence[Sequence[str]]) -> list[Node]:
    """Start nodes 1..len(specs) (a spec is the node's platforms; empty: all detected).

    A node already running with the same platforms is kept (its history too); one with
    other platforms is restarted. Nodes above len(specs) are left as they are.
    """
    ensure_buildkit()
    args = ["--nodes", str(len(specs))]
    nodes = []
    for i, platforms in enumerate(specs, start=1):
        if isinstance(platforms, str):
            raise TypeError(f"node {i}: give a list of platforms, not the string {platforms!r}")
        if platforms:
            args += ["--node-platforms", f"{i}={','.join(platforms)}"]
        nodes.append(Node(i, tuple(platforms)))
    _buildkit_up(*args, timeout=300)
    return nodes


def stop_nodes() -> None:
    """Stop every node scripts/buildkit-up started (and remove their mab-remote-node* builders)."""
    if os.geteuid() == 0 and BUILDKIT_UP.exists():
        _buildkit_up("--down", timeout=120)


def _docker(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    proc = _run(["docker", *args], timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc


def builder_platforms(name: str) -> list[list[str]]:
    """The platforms of each node of builder NAME, from ``docker buildx inspect``."""
    out = _docker("buildx", "inspect", name).stdout
    return [
        [p.strip().rstrip("*") for p in line.split(":", 1)[1].split(",") if p.strip()]
        for line in out.splitlines()
        if line.startswith("Platforms:")
    ]


def _platform_flag(node: Node) -> list[str]:
    # As scripts/buildkit-up --builders: a restricted node is declared with its platforms
    # (`buildx create --platform`), so buildx routes them to it first.
    return ["--platform", ",".join(node.requested_platforms)] if node.requested_platforms else []


@contextmanager
def remote_builder(name: str, node: Node, *more: Node) -> Iterator[str]:
    """A buildx builder (remote driver) on NODE, with MORE appended as further nodes
    (one builder, several machines: buildx sends each platform to the node serving it);
    bootstrapped, and removed on exit. Node names are NAME-nodeI."""
    _run(["docker", "buildx", "rm", name])  # a leftover from an interrupted run
    try:
        for n, each in enumerate((node, *more)):
            args = ["buildx", "create", "--name", name, "--node", f"{name}-{each.name}"]
            if n == 0:
                args += ["--driver", "remote"]
            else:
                args.append("--append")
            _docker(*args, *_platform_flag(each), each.address)
        _docker("buildx", "inspect", "--bootstrap", name)
        yield name
    finally:
        _run(["docker", "buildx", "rm", name])


@contextmanager
def container_builder(
    name: str, image: str | None = None, config: Path | None = None
) -> Iterator[str]:
    """A buildx builder (docker-container driver, as docker/setup-buildx-action makes one)
    running the buildkit image on the host network with the set-up's buildkitd config;
    bootstrapped, and removed on exit with its container and state volume."""
    info = ensure_buildkit()
    _run(["docker", "buildx", "rm", name])
    try:
        opts = [f"image={image or info.image}", "network=host"]
        _docker(
            *["buildx", "create", "--name", name, "--driver", "docker-container"],
            *[arg for opt in opts for arg in ("--driver-opt", opt)],
            *["--buildkitd-config", str(config or info.container_config)],
        )
        _docker("buildx", "inspect", "--bootstrap", name, timeout=300)
        yield name
    finally:
        _run(["docker", "buildx", "rm", name], timeout=120)
