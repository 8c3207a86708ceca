"""The engine adapter: the one module that talks to python-on-whales (and so to docker).

Everything else in mab speaks in mab's own types (``BuildRequest``, ``RemoteIndex`` ...)
and mab's own errors. python-on-whales exceptions are caught here and translated, with
the useful tail of the docker CLI's stderr kept and the rest dropped.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pydantic
from python_on_whales import DockerClient, DockerException
from python_on_whales.client_config import ClientNotFoundError
from python_on_whales.utils import run as _run

from mab.errors import BuildError, EngineError, MabError, PublishError, RegistryError
from mab.platforms import Platform
from mab.registry.credentials import login_failure

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
    cache_from: tuple[Mapping[str, str], ...] = ()
    cache_to: Mapping[str, str] | None = None
    # buildx's docker driver is addressed by docker context, not --builder
    docker_context: str | None = None
    # buildx --secret specs: references (id=ID,src=FILE / id=ID,env=NAME), never values
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildOutcome:
    digest: str
    cached_steps: int  # Dockerfile steps BuildKit answered from cache
    steps: int  # Dockerfile steps in the build
    build_ref: str = ""  # BUILDER/NODE/ID, as `docker buildx history` knows it


_STEP_RE = re.compile(r"^#(\d+) \[[^\]]*?\b\d+/\d+\]")
_CACHED_RE = re.compile(r"^#(\d+) CACHED\b")


def count_steps(log: list[str]) -> tuple[int, int]:
    """(cached, total) Dockerfile steps in a BuildKit plain-progress log."""
    steps = {m.group(1) for line in log if (m := _STEP_RE.match(line))}
    cached = {m.group(1) for line in log if (m := _CACHED_RE.match(line))}
    return len(steps & cached), len(steps)


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


def _builder_info(builder: Any) -> BuilderInfo:
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
        local=builder.driver in ("docker", "docker-container") and endpoint.startswith("unix://"),
    )


def _tail(text: str | None, lines: int = 15) -> str:
    if not text:
        return ""
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _first_error_line(text: str | None) -> str:
    """The most telling line of docker's stderr: the last 'ERROR'/'error' line, else the last.

    A registry's error list (``errors:`` then one ``code: message`` line each, as buildx
    prints a 4xx body) is folded into that line: the header alone says nothing."""
    if not text:
        return "no output"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if not line.lower().startswith(("error", "failed")):
            continue
        if line.lower() == "errors:":
            before = lines[index - 1] if index else ""
            head = before if before.lower().startswith(("error", "failed")) else "registry error"
            details = "; ".join(lines[index + 1 : index + 4])
            return f"{head}: {details}" if details else head
        return line
    return lines[-1] if lines else "no output"


def _checks_unavailable(stderr: str) -> str:
    if "frontend.lint" in stderr:
        return (
            "buildx build checks unavailable: this builder's Dockerfile frontend has none "
            "(they need Dockerfile 1.8+, in BuildKit 0.15+ / Docker Engine 27+; buildx could "
            "not fetch the docker/dockerfile image instead)"
        )
    reason = _first_error_line(stderr).removeprefix("ERROR: ")
    return f"buildx build checks unavailable: {reason}"


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

    def uses_containerd_store(self, context: str | None = None) -> bool:
        """Whether the engine (of docker *context*, default the current) stores images in
        containerd, which buildx's docker driver needs for multi-platform work."""
        docker = DockerClient(context=context) if context else self._docker
        with self._translate(f"docker info{f' (context {context})' if context else ''}"):
            info = docker.info()
        for pair in info.driver_status or []:
            if len(pair) == 2 and pair[0] == "driver-type" and "containerd" in pair[1]:
                return True
        return False

    def builders(self) -> list[BuilderInfo]:
        """Every buildx builder this client knows, with what its nodes report."""
        with self._translate("cannot list buildx builders"):
            found = self._docker.buildx.list()
        return [_builder_info(b) for b in found]

    def create_builder(
        self,
        name: str,
        driver: str,
        endpoint: str | None,
        driver_opts: Mapping[str, str],
        platforms: list[str],
    ) -> None:
        """Create a builder: a docker context for the docker driver (buildx names docker
        driver builders after contexts), else ``docker buildx create``."""
        with self._translate(f"cannot create builder '{name}'", EngineError):
            if driver == "docker":
                host = endpoint or "unix:///var/run/docker.sock"
                self._docker.context.create(name, docker={"host": host})
            else:
                self._docker.buildx.create(
                    endpoint,
                    name=name,
                    driver=driver,
                    driver_options=dict(driver_opts),
                    platforms=platforms,
                )

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
        return _builder_info(builder)

    # --- build --------------------------------------------------------------------------

    def build(
        self,
        request: BuildRequest,
        on_line: Callable[[str], None],
        oci_layout: Path | None = None,
    ) -> BuildOutcome:
        """Build one platform image; return its manifest digest and the cache hits.

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
                docker = (
                    DockerClient(context=request.docker_context)
                    if request.docker_context
                    else self._docker
                )
                stream: Iterator[str] = docker.buildx.build(
                    request.context,
                    file=request.dockerfile,
                    platforms=[str(request.platform)],
                    build_args=dict(request.build_args),
                    build_contexts=dict(request.build_contexts),
                    labels=dict(request.labels),
                    target=request.stage,
                    builder=request.builder,
                    cache=not request.no_cache,
                    cache_from=[dict(c) for c in request.cache_from] or None,
                    cache_to=dict(request.cache_to) if request.cache_to else None,
                    output=output,
                    metadata_file=metadata,
                    secrets=list(request.secrets),
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
                cached, steps = count_steps(log)
                ref = str(meta.get("buildx.build.ref", ""))
                return BuildOutcome(str(meta["containerimage.digest"]), cached, steps, ref)
            except (OSError, ValueError, KeyError) as exc:
                raise BuildError(
                    f"build of {request.platform} finished but buildx wrote no image digest"
                ) from exc

    # --- build checks (buildx --call=check) -----------------------------------------------

    def build_checks(
        self,
        dockerfile: Path,
        context: Path,
        build_args: Mapping[str, str] | None = None,
        build_contexts: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """BuildKit's own Dockerfile checks (``buildx build --call=check,format=json``):
        its JSON, ``{"warnings": [{"ruleName", "description", "url", "detail",
        "location": {"ranges": [{"start": {"line"}}]}}], ...}``. Nothing is built.

        Raises EngineError when the builder cannot run them: the checks need the Dockerfile
        frontend 1.8 or newer; an older BuildKit (dockerd 26's, for one) makes buildx
        fetch ``docker/dockerfile`` from Docker Hub, which fails offline.
        """
        args = [
            *self._docker.buildx.docker_cmd,
            "buildx",
            "build",
            "--call=check,format=json",
            "--progress=quiet",
            "--file",
            str(dockerfile),
        ]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in (build_contexts or {}).items():
            args += ["--build-context", f"{key}={value}"]
        args.append(str(context))
        try:
            out = _run(args, return_stderr=False)
        except DockerException as exc:
            out = exc.stdout or ""  # exit 1 with the JSON on stdout: warnings were found
            if not out.lstrip().startswith("{"):
                raise EngineError(_checks_unavailable(exc.stderr or "")) from exc
        except ClientNotFoundError as exc:
            raise EngineError("buildx build checks unavailable: no docker CLI") from exc
        try:
            data: dict[str, Any] = json.loads(out)
        except ValueError as exc:
            raise EngineError("buildx build checks wrote no JSON") from exc
        return data

    # --- registry side, through buildx imagetools ----------------------------------------

    def image_labels(self, ref: str) -> dict[str, dict[str, str]]:
        """Config labels of every platform image under *ref*, by platform string."""
        cmd = self._docker.buildx.imagetools.docker_cmd
        args = [*cmd, "buildx", "imagetools", "inspect", ref, "--format", "{{json .Image}}"]
        with self._translate(f"cannot read image configs of {ref}", RegistryError):
            data = json.loads(_retrying(lambda: _run(args, return_stderr=False)))
        if "config" in data:  # a single image, not an index
            data = {"": data}
        return {
            str(p): dict((img.get("config") or {}).get("Labels") or {}) for p, img in data.items()
        }

    def copy_index(self, source: str, targets: list[str]) -> None:
        """Copy an image index, blobs included, to other refs (``imagetools create`` with
        one source: a carbon copy, so the digest is kept). Works across registries."""
        with self._translate(f"cannot copy {source}", PublishError):
            _retrying(
                lambda: self._docker.buildx.imagetools.create(sources=[source], tags=list(targets)),
                also=_COPY_RACE,
            )

    def inspect(self, ref: str) -> RemoteManifest:
        """Read what the registry serves for *ref* (``imagetools inspect``). buildx's JSON
        ``.Manifest`` has the digest, media type, entries with their platforms and
        annotations, and the index's annotations: one call answers everything checked."""
        cmd = self._docker.buildx.imagetools.docker_cmd
        args = [*cmd, "buildx", "imagetools", "inspect", ref, "--format", "{{json .Manifest}}"]
        with self._translate(f"cannot inspect {ref}", RegistryError):
            desc = json.loads(_retrying(lambda: _run(args, return_stderr=False)))
        manifests = tuple(
            Descriptor(
                media_type=str(m.get("mediaType", "")),
                digest=str(m.get("digest", "")),
                size=int(m.get("size", 0)),
                platform=(
                    Platform.from_oci(
                        m["platform"].get("os"),
                        m["platform"].get("architecture"),
                        m["platform"].get("variant"),
                    )
                    if m.get("platform")
                    else None
                ),
                annotations=dict(m.get("annotations") or {}),
            )
            for m in desc.get("manifests") or []
        )
        return RemoteManifest(
            ref=ref,
            digest=str(desc.get("digest", "")),
            media_type=str(desc.get("mediaType", "")),
            manifests=manifests,
            annotations=dict(desc.get("annotations") or {}),
        )


_TRANSIENT = re.compile(
    r"\b(500|502|503|504|429)\b|too many requests|connection refused|connection reset|"
    r"unexpected EOF|i/o timeout|TLS handshake timeout|server misbehaving",
    re.IGNORECASE,
)

# ``imagetools create`` copies an index's platform manifests in parallel, so a blob two
# platforms share (a base layer) is mounted or uploaded twice at once, and the same child
# manifest is PUT twice. Under load, distribution then answers a PUT with "blob unknown to
# registry" / "provided digest did not match uploaded content" (seen here 3 times in 120
# copies). The copy is idempotent and a second run finds the blobs linked, so retry it.
_COPY_RACE = re.compile(r"blob unknown|digest did not match uploaded content", re.IGNORECASE)

T = TypeVar("T")


def _retrying(
    call: Callable[[], T],
    attempts: int = 4,
    sleep: Callable[[float], None] = time.sleep,
    also: re.Pattern[str] | None = None,
) -> T:
    """Retry a docker CLI call whose stderr shows a transient registry error (bounded);
    *also* names more errors that are transient for this call."""
    for attempt in range(attempts):
        try:
            return call()
        except DockerException as exc:
            stderr = exc.stderr or ""
            transient = _TRANSIENT.search(stderr) or (also is not None and also.search(stderr))
            if attempt + 1 >= attempts or not transient:
                raise
            sleep(random.uniform(0, 0.5 * 2**attempt))  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable")


REGISTRY_IMAGE = "registry:2"


def run_registry_container(engine: Engine, port: int, data: Path) -> None:
    """Fallback for the embedded registry when no registry binary is installed."""
    with engine._translate(f"cannot start {REGISTRY_IMAGE} on port {port}", RegistryError):
        engine._docker.run(
            REGISTRY_IMAGE,
            detach=True,
            name=f"mab-registry-{port}",
            publish=[(f"127.0.0.1:{port}", 5000)],
            volumes=[(str(data), "/var/lib/registry")],
            envs={"REGISTRY_STORAGE_DELETE_ENABLED": "true"},
            restart="unless-stopped",
        )


# --- registry login and the dev registry's container (mab login, mab registry up) ---------


def docker_login(engine: Engine, server: str, username: str, password: str) -> str:
    """``docker login`` with the password on stdin: never in the argument list, which
    other users can read in ``ps``. docker stores it where it stores every login
    (config.json or its credential helper). Returns docker's last line ("Login Succeeded").

    Not ``DockerClient.login``: it also uses ``--password-stdin``, but lets docker's
    stderr through uncaptured, so a failure could not be turned into one line with a fix.
    """
    args = [*engine._docker.docker_cmd, "login", "--username", username, "--password-stdin"]
    try:
        out, err = _run([*args, server], input=password.encode(), return_stderr=True)
    except ClientNotFoundError:
        raise EngineError(
            "the docker CLI was not found on PATH",
            hint="install the docker client (mab logs in through it)",
        ) from None
    except DockerException as exc:
        raise login_failure(server, username, exc.stderr or "", password) from None
    lines = [line for line in f"{out}\n{err}".splitlines() if line.strip()]
    return lines[-1] if lines else "Login Succeeded"


def docker_logout(engine: Engine, server: str) -> None:
    with engine._translate(f"docker logout {server}", RegistryError):
        engine._docker.logout(server)


REGISTRY_MOUNT = "/mab"


def run_registry_server(engine: Engine, name: str, port: int, folder: Path) -> str:
    """``mab registry up`` without a registry binary: the registry image, its state folder
    mounted at /mab (config.yml names paths there). Returns the container id."""
    with engine._translate(f"cannot start {REGISTRY_IMAGE} on port {port}", RegistryError):
        container = engine._docker.run(
            REGISTRY_IMAGE,
            [f"{REGISTRY_MOUNT}/config.yml"],
            detach=True,
            name=name,
            publish=[(f"127.0.0.1:{port}", 5000)],
            volumes=[(str(folder), REGISTRY_MOUNT)],
        )
    return str(getattr(container, "id", container))


def remove_container(engine: Engine, name: str) -> None:
    with engine._translate(f"cannot remove container {name}", RegistryError):
        engine._docker.container.remove(name, force=True)


def registry_gc_in_container(engine: Engine, folder: Path) -> str:
    """``registry garbage-collect`` in the registry image, on the mounted state folder."""
    with engine._translate("registry garbage-collect", RegistryError):
        return str(
            engine._docker.run(
                REGISTRY_IMAGE,
                ["garbage-collect", f"{REGISTRY_MOUNT}/config.yml"],
                remove=True,
                volumes=[(str(folder), REGISTRY_MOUNT)],
            )
        )
