"""The engine adapter: the one module that talks to python-on-whales (and so to docker).

Everything else in mab speaks in mab's own types (``BuildRequest``, ``RemoteIndex`` ...)
and mab's own errors. python-on-whales exceptions are caught here and translated, with
the useful tail of the docker CLI's stderr kept and the rest dropped.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
from python_on_whales import DockerClient, DockerException
from python_on_whales.client_config import ClientNotFoundError
from python_on_whales.utils import run as _run

from mab.errors import BuildError, EngineError, MabError, PublishError, RegistryError
from mab.platforms import Platform

INDEX_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
ATTESTATION_REF_TYPE = "vnd.docker.reference.type"


@dataclass(frozen=True)
class BuildRequest:
    """One platform image to build and push by digest into *repository*."""

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


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None
    annotations: Mapping[str, str]

    @property
    def is_attestation(self) -> bool:
        if self.annotations.get(ATTESTATION_REF_TYPE) == "attestation-manifest":
            return True
        return self.platform is not None and self.platform.os == "unknown"


@dataclass(frozen=True)
class RemoteManifest:
    """What the registry serves for a reference: an index, or a single image manifest."""

    ref: str
    digest: str
    media_type: str
    manifests: tuple[Descriptor, ...]
    layer_sizes: tuple[int, ...]
    annotations: Mapping[str, str]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def images(self) -> tuple[Descriptor, ...]:
        """Index entries that are platform images (attestation entries set aside)."""
        return tuple(d for d in self.manifests if not d.is_attestation)


@dataclass(frozen=True)
class BuilderInfo:
    name: str
    driver: str
    platforms: tuple[str, ...]
    status: str
    local: bool = False  # its BuildKit runs on this machine (docker driver, local socket)

    @property
    def pushes_by_digest(self) -> bool:
        """buildx's docker driver cannot push by digest; every other driver can."""
        return self.driver != "docker"


def _tail(text: str | None, lines: int = 15) -> str:
    if not text:
        return ""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _first_error_line(text: str | None) -> str:
    """The most telling line of docker's stderr: the last 'ERROR'/'error' line, else the last."""
    if not text:
        return "no output"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.lower().startswith(("error", "failed")):
            return line
    return lines[-1] if lines else "no output"


class Engine:
    """Docker engine + buildx, driven through python-on-whales."""

    def __init__(self, docker: DockerClient | None = None) -> None:
        self._docker = docker or DockerClient()

    @contextmanager
    def _translate(self, what: str, error: type[MabError] = EngineError) -> Iterator[None]:
        try:
            yield
        except ClientNotFoundError:
            raise EngineError(
                "the docker CLI was not found on PATH",
                hint="install the docker client (mab drives the engine through it)",
            ) from None
        except DockerException as exc:
            raise error(f"{what}: {_first_error_line(exc.stderr)}") from exc
        except pydantic.ValidationError as exc:
            raise EngineError(
                f"{what}: unexpected output from docker ({exc.error_count()} errors)"
            ) from exc

    # --- engine and builder -------------------------------------------------------------

    def server_version(self) -> str:
        try:
            version = self._docker.version()
        except ClientNotFoundError:
            raise EngineError(
                "the docker CLI was not found on PATH",
                hint="install the docker client (mab drives the engine through it)",
            ) from None
        except DockerException as exc:
            raise EngineError(
                f"cannot reach the Docker engine: {_first_error_line(exc.stderr)}",
                hint="start dockerd (on a machine without one: sudo scripts/engine-up)",
            ) from exc
        server = version.server
        return str(server.version) if server is not None and server.version else "unknown"

    def uses_containerd_store(self) -> bool:
        with self._translate("docker info"):
            info = self._docker.info()
        for pair in info.driver_status or []:
            if len(pair) == 2 and pair[0] == "driver-type" and "containerd" in pair[1]:
                return True
        return False

    def builder(self, name: str | None) -> BuilderInfo:
        try:
            self._docker.buildx.version()
        except DockerException as exc:
            raise EngineError(
                "the docker buildx plugin is missing or broken: " + _first_error_line(exc.stderr),
                hint="install buildx into ~/.docker/cli-plugins (scripts/engine-up does it here)",
            ) from exc
        with self._translate(f"cannot use buildx builder '{name or 'current'}'"):
            builder = self._docker.buildx.inspect(name, bootstrap=True)
        platforms: list[str] = []
        status = "unknown"
        for node in builder.nodes or []:
            platforms.extend(node.platforms or [])
            status = node.status or status
        endpoint = os.environ.get("DOCKER_HOST", "unix://")
        return BuilderInfo(
            name=str(builder.name),
            driver=str(builder.driver),
            platforms=tuple(dict.fromkeys(platforms)),
            status=status,
            local=builder.driver in ("docker", "docker-container")
            and endpoint.startswith("unix://"),
        )

    # --- build --------------------------------------------------------------------------

    def build(
        self,
        request: BuildRequest,
        on_line: Callable[[str], None],
        oci_layout: Path | None = None,
    ) -> str:
        """Build one platform image and return its manifest digest.

        Without *oci_layout*, BuildKit pushes the image by digest (no tag) itself. With it,
        BuildKit writes an OCI layout folder there instead, for mab to upload: the buildx
        ``docker`` driver cannot push by digest. Log lines go to *on_line* as they arrive;
        on failure the BuildError carries the last lines of the log, where BuildKit names
        the failing step.
        """
        output: dict[str, str]
        if oci_layout is None:
            output = {
                "type": "image",
                "name": request.repository,
                "push-by-digest": "true",
                "name-canonical": "true",
                "push": "true",
            }
        else:
            output = {"type": "oci", "tar": "false", "dest": str(oci_layout)}
        with tempfile.TemporaryDirectory(prefix="mab-meta-") as tmp:
            metadata = Path(tmp) / "metadata.json"
            log: list[str] = []
            try:
                stream: Iterator[str] = self._docker.buildx.build(
                    request.context,
                    file=request.dockerfile,
                    platforms=[str(request.platform)],
                    build_args=dict(request.build_args),
                    build_contexts=dict(request.build_contexts),
                    labels=dict(request.labels),
                    target=request.stage,
                    builder=request.builder,
                    cache=not request.no_cache,
                    output=output,
                    metadata_file=metadata,
                    progress="plain",
                    stream_logs=True,
                )  # type: ignore[assignment]
                for line in stream:
                    text = line.rstrip()
                    log.append(text)
                    on_line(text)
            except ClientNotFoundError:
                raise EngineError("the docker CLI was not found on PATH") from None
            except DockerException as exc:
                detail = _tail("\n".join(log) or exc.stderr)
                if "exec format error" in detail:
                    detail += (
                        f"\nno emulator ran {request.platform} code: register QEMU for it "
                        "(sudo scripts/engine-up here, or docker run --privileged --rm "
                        "tonistiigi/binfmt --install all)"
                    )
                raise BuildError(
                    f"build of {request.platform} failed: {_first_error_line(detail)}",
                    hint=detail,
                ) from exc
            try:
                meta: dict[str, Any] = json.loads(metadata.read_text())
                return str(meta["containerimage.digest"])
            except (OSError, ValueError, KeyError) as exc:
                raise BuildError(
                    f"build of {request.platform} finished but buildx wrote no image digest"
                ) from exc

    # --- registry side, through buildx imagetools ----------------------------------------

    def create_index(
        self, sources: list[str], tags: list[str], annotations: Mapping[str, str] | None = None
    ) -> None:
        """Write one image index made of *sources* (repo@digest) under every ref in *tags*."""
        with self._translate("imagetools create", PublishError):
            self._docker.buildx.imagetools.create(
                sources=list(sources), tags=list(tags), annotations=dict(annotations or {})
            )

    def inspect(self, ref: str) -> RemoteManifest:
        """Read what the registry serves for *ref* (``imagetools inspect``)."""
        cmd = self._docker.buildx.imagetools.docker_cmd
        with self._translate(f"cannot inspect {ref}", RegistryError):
            raw = self._docker.buildx.imagetools.inspect(ref)
            args = [*cmd, "buildx", "imagetools", "inspect", ref, "--format", "{{json .Manifest}}"]
            desc = json.loads(_run(args, return_stderr=False))
        manifests = tuple(
            Descriptor(
                media_type=m.media_type or "",
                digest=m.digest or "",
                size=m.size or 0,
                platform=(
                    Platform.from_oci(m.platform.os, m.platform.architecture, m.platform.variant)
                    if m.platform is not None
                    else None
                ),
                annotations=_annotations_of(desc, m.digest),
            )
            for m in raw.manifests or []
        )
        return RemoteManifest(
            ref=ref,
            digest=str(desc.get("digest", "")),
            media_type=raw.media_type or str(desc.get("mediaType", "")),
            manifests=manifests,
            layer_sizes=tuple(layer.size or 0 for layer in raw.layers or []),
            annotations=dict(raw.annotations or {}),
        )


def _annotations_of(desc: Mapping[str, Any], digest: str | None) -> Mapping[str, str]:
    """python-on-whales drops per-entry annotations; buildx's JSON descriptor keeps them."""
    for entry in desc.get("manifests", []) or []:
        if entry.get("digest") == digest:
            return dict(entry.get("annotations") or {})
    return {}


def run_registry_container(engine: Engine, port: int, data: Path) -> None:
    """Fallback for the embedded registry when no registry binary is installed."""
    with engine._translate(f"cannot start registry:2 on port {port}", RegistryError):
        engine._docker.run(
            "registry:2",
            detach=True,
            name=f"mab-registry-{port}",
            publish=[(f"127.0.0.1:{port}", 5000)],
            volumes=[(str(data), "/var/lib/registry")],
            envs={"REGISTRY_STORAGE_DELETE_ENABLED": "true"},
            restart="unless-stopped",
        )
