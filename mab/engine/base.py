"""The engine seam: what mab asks of a Docker engine with buildx, as a Protocol, and the
value types that cross it.

The pipeline receives an ``Engine`` and never constructs one. The real one is
``mab.engine.whales.DockerEngine`` (the only module that imports python-on-whales);
unit tests pass a fake that mypy checks against this Protocol. Importing this module
loads neither python-on-whales nor the docker CLI.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mab.oci import RemoteManifest
from mab.platforms import Platform


@dataclass(frozen=True)
class BuildRequest:
    """One platform image to build and push by digest into *repository*; with *also*,
    more platforms of the same target in the same build (one buildx call, whose result
    is an index over them all)."""

    context: Path
    dockerfile: Path
    platform: Platform
    repository: str
    build_args: Mapping[str, str] = field(default_factory=dict)
    build_contexts: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    stage: str | None = None
    builder: str | None = None
    no_cache: bool = False
    cache_from: tuple[Mapping[str, str], ...] = ()
    cache_to: Mapping[str, str] | None = None
    # buildx's docker driver is addressed by docker context, not --builder
    docker_context: str | None = None
    # buildx --secret specs: references (id=ID,src=FILE / id=ID,env=NAME), never values
    secrets: tuple[str, ...] = ()
    # mab build --load: load the image into the local engine's image store under
    # *load_names* (REGISTRY/TARGET:TAG) instead of pushing it by digest
    load: bool = False
    load_names: tuple[str, ...] = ()
    # BuildKit attestations: provenance None (buildx's default), "false", "min" or "max";
    # an SBOM, made by *sbom_generator* (None: BuildKit's default generator image)
    provenance: str | None = None
    sbom: bool = False
    sbom_generator: str | None = None
    also: tuple[Platform, ...] = ()

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return (self.platform, *self.also)

    @property
    def platform_list(self) -> str:
        """The platforms as buildx's ``--platform`` takes them (and errors name them)."""
        return ",".join(str(p) for p in self.platforms)


@dataclass(frozen=True)
class BuildOutcome:
    digest: str  # the image's manifest (or index: attestations, several platforms)
    cached_steps: int  # Dockerfile steps BuildKit answered from cache
    steps: int  # Dockerfile steps in the build
    build_ref: str = ""  # BUILDER/NODE/ID, as `docker buildx history` knows it
    # a build of several platforms: (cached, total) steps of each, by platform string
    platform_steps: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class BuilderInfo:
    name: str
    driver: str
    platforms: tuple[str, ...]
    status: str
    local: bool = False  # its BuildKit runs on this machine (docker driver, local socket)
    # docker driver: its BuildKit worker says it runs on containerd (the image store
    # multi-platform work needs); False when it does not say, so `docker info` is asked
    containerd_worker: bool = False

    @property
    def pushes_by_digest(self) -> bool:
        """buildx's docker driver cannot push by digest; every other driver can."""
        return self.driver != "docker"


_STEP_RE = re.compile(r"^#(\d+) \[([^\]]*?)\b\d+/\d+\]")
_CACHED_RE = re.compile(r"^#(\d+) CACHED\b")
# A blob BuildKit fetches for a step: "#7 sha256:<hex> 109B / 109B 0.0s done", "#7 extracting
# sha256:<hex> 0.0s done".
_BLOB_RE = re.compile(r"^#(\d+) (?:extracting )?sha256:[0-9a-f]{64}\b")


_OS_NAMES = frozenset({"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "wasip1"})


def step_platform(label: str) -> str:
    """The target platform a BuildKit step label names: ``linux/amd64->arm64`` (a step on
    the build platform, for arm64) is ``linux/arm64``."""
    source, arrow, target = label.partition("->")
    if not arrow:
        return source
    os_name, _, _ = source.partition("/")
    if target.partition("/")[0] in _OS_NAMES:  # another OS: named in full
        return target
    return f"{os_name}/{target}"  # arm64, arm/v7: the same OS


def count_steps(log: list[str], platform: str | None = None) -> tuple[int, int]:
    """(cached, total) Dockerfile steps in a BuildKit plain-progress log; with
    *platform*, only the steps of that platform in a build of several, which BuildKit
    names ``#12 [linux/arm64 build 2/4] RUN ...``.

    A step is cached when BuildKit logs it ``CACHED``, or when it is not a ``FROM`` and
    BuildKit fetched blobs for it: a result pulled lazily from a remote cache (the
    registry cache after the local one is gone) is logged as blob downloads and ``DONE``,
    often with no ``CACHED`` line. A step that runs fetches no blobs of its own (its
    parents' lazy blobs are logged under the parents); a ``FROM``'s blobs are the base
    image, pulled, not cached."""
    steps: set[str] = set()
    pulled_from: set[str] = set()  # FROM steps: their blobs are the base image
    for line in log:
        m = _STEP_RE.match(line)
        if m and (platform is None or step_platform(m.group(2).split(" ", 1)[0]) == platform):
            steps.add(m.group(1))
            if line[m.end() :].lstrip().startswith("FROM "):
                pulled_from.add(m.group(1))
    cached = {m.group(1) for line in log if (m := _CACHED_RE.match(line))}
    fetched = {m.group(1) for line in log if (m := _BLOB_RE.match(line))} - pulled_from
    return len(steps & (cached | fetched)), len(steps)


class Engine(Protocol):
    """A Docker engine with buildx. Every method raises mab's own errors
    (EngineError, BuildError, RegistryError, PublishError), never the library's."""

    # --- engine and builders ---
    def server_version(self) -> str: ...
    def uses_containerd_store(self, context: str | None = None) -> bool: ...
    def builders(self) -> list[BuilderInfo]: ...
    def builder(self, name: str | None) -> BuilderInfo: ...
    def create_builder(
        self,
        name: str,
        driver: str,
        endpoint: str | None,
        driver_opts: Mapping[str, str],
        platforms: list[str],
        *,
        config: Path | None = None,
    ) -> None: ...

    # --- build ---
    def build(
        self,
        request: BuildRequest,
        on_line: Callable[[str], None],
        oci_layout: Path | None = None,
    ) -> BuildOutcome: ...
    def build_checks(
        self,
        dockerfile: Path,
        context: Path,
        build_args: Mapping[str, str] | None = None,
        build_contexts: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...

    # --- what a registry serves, through buildx imagetools ---
    def inspect(self, ref: str) -> RemoteManifest: ...
    def inspect_labeled(self, ref: str) -> tuple[RemoteManifest, dict[str, dict[str, str]]]: ...
    def copy_index(self, source: str, targets: list[str]) -> None: ...

    # --- docker's credential store ---
    def login(self, server: str, username: str, password: str) -> str: ...
    def logout(self, server: str) -> None: ...

    # --- the registry image, where no registry binary is installed ---
    def run_registry(self, name: str, port: int, folder: Path) -> str: ...
    def remove_container(self, name: str) -> None: ...
    def registry_gc(self, folder: Path) -> str: ...

    # --- mab doctor, mab build --load, mab run ---
    def client_version(self) -> str: ...
    def info(self) -> EngineInfo: ...
    def buildx_version(self) -> str: ...
    def image_platform(self, ref: str) -> str | None: ...
    def run(
        self,
        image: str,
        argv: Sequence[str] = (),
        platform: str | None = None,
        *,
        capture: bool = True,
        quiet: bool = False,  # no pull progress in the output (the publish gates' smoke tests)
    ) -> RunResult: ...


# OCI platforms of the CPU names ``docker info`` (uname -m) reports.
_HOST_PLATFORMS = {
    "x86_64": "linux/amd64",
    "amd64": "linux/amd64",
    "aarch64": "linux/arm64",
    "arm64": "linux/arm64",
    "armv7l": "linux/arm/v7",
    "armv6l": "linux/arm/v6",
    "i386": "linux/386",
    "i686": "linux/386",
    "ppc64le": "linux/ppc64le",
    "s390x": "linux/s390x",
    "riscv64": "linux/riscv64",
    "mips64": "linux/mips64le",
    "loongarch64": "linux/loong64",
}
# Platforms a CPU runs without an emulator, besides its own.
_ALSO_NATIVE = {"linux/amd64": ("linux/386",), "linux/arm64": ("linux/arm/v7", "linux/arm/v6")}


@dataclass(frozen=True)
class EngineInfo:
    """What ``docker info`` says about the engine mab talks to."""

    server_version: str
    containerd_store: bool  # images in containerd (multi-platform with the docker driver)
    data_root: str  # DockerRootDir, on the engine's machine
    architecture: str  # the engine's CPU, as uname -m names it (x86_64, aarch64 ...)
    os_type: str = "linux"

    @property
    def platform(self) -> Platform | None:
        """The engine host's own platform, None for a CPU mab has no name for."""
        text = _HOST_PLATFORMS.get(self.architecture.lower())
        return Platform.parse(text) if text and self.os_type == "linux" else None

    def runs_natively(self, platform: Platform) -> bool:
        """True when the engine's CPU runs *platform* code without an emulator."""
        host = self.platform
        if host is None:
            return False
        return platform == host or str(platform) in _ALSO_NATIVE.get(str(host), ())


@dataclass(frozen=True)
class RunResult:
    """A ``docker run`` that ended: the container's exit code (125-127: docker's own
    failures), and its output when captured."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
