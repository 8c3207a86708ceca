"""The engine adapter: the one module that imports python-on-whales (and so drives docker).

``DockerEngine`` implements ``mab.engine.base.Engine``. Everything else in mab speaks in
mab's own types (``BuildRequest``, ``oci.RemoteManifest`` ...) and mab's own errors:
python-on-whales exceptions are caught here and translated, with the useful tail of the
docker CLI's stderr kept and the rest dropped. Each docker CLI call is echoed (redacted)
through ``mab.proc``'s echo hook, so ``--verbose`` shows what to rerun by hand.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pydantic
from python_on_whales import DockerClient, DockerException
from python_on_whales.client_config import ClientNotFoundError
from python_on_whales.utils import run as _run

from mab import proc
from mab.engine.base import (
    BuilderInfo,
    BuildOutcome,
    BuildRequest,
    EngineInfo,
    RunResult,
    count_steps,
)
from mab.errors import BuildError, EngineError, MabError, PublishError, RegistryError
from mab.oci import RemoteManifest
from mab.registry.credentials import login_failure
from mab.scratch import scratch

# A worker label only BuildKit's containerd worker sets (moby/buildkit worker/label): with
# the docker driver, dockerd's BuildKit runs one exactly when dockerd uses the containerd
# image store (the classic store's worker is dockerd's own).
_CONTAINERD_WORKER = "org.mobyproject.buildkit.worker.containerd.namespace"


class _LsNode(pydantic.BaseModel):
    """A node in ``docker buildx ls --format json``."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    endpoint: str | None = pydantic.Field(None, alias="Endpoint")
    status: str | None = pydantic.Field(None, alias="Status")
    platforms: list[str] | None = pydantic.Field(None, alias="Platforms")
    labels: dict[str, str] | None = pydantic.Field(None, alias="Labels")


class _LsBuilder(pydantic.BaseModel):
    """A line of ``docker buildx ls --format json``: one builder, whether it is the
    current one, and the error buildx met asking it (e.g. the engine down)."""

    name: str = pydantic.Field(alias="Name")
    driver: str = pydantic.Field("", alias="Driver")
    current: bool = pydantic.Field(False, alias="Current")
    err: str = pydantic.Field("", alias="Err")
    nodes: list[_LsNode] | None = pydantic.Field(None, alias="Nodes")


def _listed_builders(text: str) -> list[_LsBuilder]:
    try:
        return [_LsBuilder.model_validate_json(line) for line in text.splitlines() if line]
    except pydantic.ValidationError as exc:
        raise EngineError(
            f"docker buildx ls: unexpected output from buildx ({exc.error_count()} errors)"
        ) from exc


def _builder_info(builder: Any) -> BuilderInfo:
    platforms: list[str] = []
    status = "unknown"
    containerd = False
    for node in builder.nodes or []:
        platforms.extend(node.platforms or [])
        status = node.status or status
        containerd = containerd or _CONTAINERD_WORKER in (node.labels or {})
    endpoint = os.environ.get("DOCKER_HOST", "unix://")
    return BuilderInfo(
        name=str(builder.name),
        driver=str(builder.driver),
        platforms=tuple(dict.fromkeys(platforms)),
        status=status,
        local=builder.driver in ("docker", "docker-container") and endpoint.startswith("unix://"),
        containerd_worker=containerd,
    )


def _create_argv(
    name: str,
    driver: str,
    endpoint: str | None,
    driver_opts: Mapping[str, str],
    platforms: list[str],
    *,
    config: Path | None = None,
) -> list[str]:
    """The docker CLI command ``create_builder`` runs (the docker driver's: amounts to)."""
    if driver == "docker":
        host = endpoint or "unix:///var/run/docker.sock"
        return ["docker", "context", "create", name, "--docker", f"host={host}"]
    argv = ["docker", "buildx", "create", "--name", name, "--driver", driver]
    argv += [f"--driver-opt={k}={v}" for k, v in driver_opts.items()]
    argv += [f"--platform={p}" for p in platforms]
    argv += [f"--buildkitd-config={config}"] if config is not None else []
    return argv + ([endpoint] if endpoint else [])


def _build_argv(request: BuildRequest, output: Mapping[str, str], metadata: Path) -> list[str]:
    """The ``docker buildx build`` command python-on-whales runs for *request*, for the
    echo (build args are echoed: they are not secret; secrets are ids and references)."""
    argv = ["docker"]
    if request.docker_context:
        argv += ["--context", request.docker_context]
    argv += ["buildx", "build", "--progress=plain", f"--platform={request.platform_list}"]
    if request.builder:
        argv.append(f"--builder={request.builder}")
    argv += ["--file", str(request.dockerfile)]
    if request.stage:
        argv.append(f"--target={request.stage}")
    argv += [f"--build-arg={k}={v}" for k, v in request.build_args.items()]
    argv += [f"--build-context={k}={v}" for k, v in request.build_contexts.items()]
    argv += [f"--label={k}={v}" for k, v in request.labels.items()]
    argv += [f"--secret={s}" for s in request.secrets]
    if request.no_cache:
        argv.append("--no-cache")
    argv += ["--cache-from=" + _csv(c) for c in request.cache_from]
    if request.cache_to:
        argv.append("--cache-to=" + _csv(request.cache_to))
    argv += [f"--tag={name}" for name in request.load_names]
    argv += _attestation_argv(request)
    argv += ["--output=" + _csv(output), f"--metadata-file={metadata}", str(request.context)]
    return argv


def _attestations(request: BuildRequest) -> dict[str, Any]:
    """python-on-whales' ``buildx.build`` keywords for the request's attestations:
    provenance (``--provenance=false|mode=MODE``) and an SBOM (``--attest
    type=sbom,generator=IMAGE``, or ``--sbom=true`` for BuildKit's default generator).
    None for ``--load``: the docker exporter stores no attestations."""
    if request.load:
        return {}
    out: dict[str, Any] = {}
    if request.provenance == "false":
        out["provenance"] = False
    elif request.provenance is not None:
        out["provenance"] = {"mode": request.provenance}
    if request.sbom and request.sbom_generator:
        out["attest"] = {"type": "sbom", "generator": request.sbom_generator}
    elif request.sbom:
        out["sbom"] = True
    return out


def _attestation_argv(request: BuildRequest) -> list[str]:
    """The flags ``_attestations`` amounts to, for the echo."""
    argv = []
    for key, value in _attestations(request).items():
        text = _csv(value) if isinstance(value, dict) else str(value).lower()
        argv.append(f"--{key}={text}")
    return argv


def _csv(spec: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in spec.items())


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


def _client(context: str | None = None) -> DockerClient:
    """A docker client whose every call ends when mab does (see proc.parent_death_prefix)."""
    prefix = proc.parent_death_prefix()
    if not prefix:
        return DockerClient(context=context)
    return DockerClient(context=context, client_call=[*prefix, "docker"])


def _no_cli() -> EngineError:
    return EngineError(
        "the docker CLI was not found on PATH",
        hint="install the docker client (mab drives the engine through it)",
    )


class DockerEngine:
    """Docker engine + buildx, driven through python-on-whales."""

    def __init__(self, docker: DockerClient | None = None) -> None:
        self._docker = docker or _client()

    @contextmanager
    def _translate(self, what: str, error: type[MabError] = EngineError) -> Iterator[None]:
        try:
            yield
        except ClientNotFoundError:
            raise _no_cli() from None
        except DockerException as exc:
            raise error(f"{what}: {_first_error_line(exc.stderr)}") from exc
        except pydantic.ValidationError as exc:
            raise EngineError(
                f"{what}: unexpected output from docker ({exc.error_count()} errors)"
            ) from exc

    # --- engine and builder -------------------------------------------------------------

    def server_version(self) -> str:
        try:
            proc.echo(["docker", "version"])
            version = self._docker.version()
        except ClientNotFoundError:
            raise _no_cli() from None
        except DockerException as exc:
            raise EngineError(
                f"cannot reach the Docker engine: {_first_error_line(exc.stderr)}",
                hint="start dockerd (on a machine without one: sudo scripts/engine-up); "
                "mab doctor checks the whole set-up",
            ) from exc
        server = version.server
        return str(server.version) if server is not None and server.version else "unknown"

    def uses_containerd_store(self, context: str | None = None) -> bool:
        """Whether the engine (of docker *context*, default the current) stores images in
        containerd, which buildx's docker driver needs for multi-platform work."""
        docker = _client(context=context) if context else self._docker
        proc.echo(["docker", *(["--context", context] if context else []), "info"])
        with self._translate(f"docker info{f' (context {context})' if context else ''}"):
            info = docker.info()
        for pair in info.driver_status or []:
            if len(pair) == 2 and pair[0] == "driver-type" and "containerd" in pair[1]:
                return True
        return False

    def builders(self) -> list[BuilderInfo]:
        """Every buildx builder this client knows, with what its nodes report."""
        proc.echo(["docker", "buildx", "ls"])
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
        *,
        config: Path | None = None,
    ) -> None:
        """Create a builder: a docker context for the docker driver (buildx names docker
        driver builders after contexts), else ``docker buildx create`` with its driver
        options (a remote's TLS files by absolute path) and buildkitd config, run as
        echoed (python-on-whales' ``buildx.create`` knows only the older ``--config``)."""
        argv = _create_argv(name, driver, endpoint, driver_opts, platforms, config=config)
        with self._translate(f"cannot create builder '{name}'", EngineError):
            proc.echo(argv)
            if driver == "docker":
                host = endpoint or "unix:///var/run/docker.sock"
                self._docker.context.create(name, docker={"host": host})
            else:
                _run([*self._docker.docker_cmd, *argv[1:]])

    def builder(self, name: str | None) -> BuilderInfo:
        # One `buildx ls --format json` (python-on-whales' inspect runs `buildx inspect`,
        # then that very ls: two processes of 0.3 s), asked without bootstrapping: a
        # running builder answers at once, and a remote one whose BuildKit is down says
        # "inactive" in 0.2 s, where bootstrapping it would wait 20 s for the connection
        # before failing. Others (a docker-container builder not started yet) are
        # bootstrapped. A builder buildx cannot reach (the engine down) carries the error.
        shown = name or "current"
        argv = ["buildx", "ls", "--format", "json"]
        proc.echo(["docker", *argv])
        try:
            with self._translate(f"cannot use buildx builder '{shown}'"):
                text = _run([*self._docker.docker_cmd, *argv], return_stderr=False)
        except EngineError:
            # buildx itself missing or broken says so (asked only now: 0.25 s each run)
            self.buildx_version()
            raise
        listed = _listed_builders(str(text))
        builder = next((b for b in listed if (b.name == name if name else b.current)), None)
        if builder is None:
            known = ", ".join(b.name for b in listed) or "none"
            raise EngineError(
                f"cannot use buildx builder '{shown}': buildx has no builder of that name "
                f"(it has: {known})",
                hint="create it (docker buildx create --name NAME ...), or name one of "
                "those in builds.yaml or --builder",
            )
        if builder.err:
            raise EngineError(
                f"cannot use buildx builder '{shown}': {_first_error_line(builder.err)}",
                hint="`mab doctor` checks the whole set-up",
            )
        info = _builder_info(builder)
        if info.status == "running":
            return info
        if info.driver == "remote":
            where = ", ".join(str(n.endpoint) for n in builder.nodes or []) or "its endpoint"
            raise EngineError(
                f"builder '{info.name}' (remote driver) does not answer at {where}: its "
                f"BuildKit is down or unreachable ({info.status})",
                hint="start that BuildKit (or check the network and TLS files to it), then "
                f"run again; `docker buildx inspect --bootstrap {info.name}` says why",
            )
        proc.echo(["docker", "buildx", "inspect", "--bootstrap", *([name] if name else [])])
        with self._translate(f"cannot use buildx builder '{shown}'"):
            started = self._docker.buildx.inspect(name, bootstrap=True)
        return _builder_info(started)

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
        if request.load:  # mab build --load: the docker exporter, named by the tags
            output = {"type": "docker"}
        elif oci_layout is None:
            output = {
                "type": "image",
                "name": request.repository,
                "push-by-digest": "true",
                "name-canonical": "true",
                "push": "true",
            }
        else:
            output = {"type": "oci", "tar": "false", "dest": str(oci_layout)}
        with scratch("mab-meta-") as tmp:
            metadata = Path(tmp) / "metadata.json"
            log: list[str] = []
            try:
                docker = (
                    _client(context=request.docker_context)
                    if request.docker_context
                    else self._docker
                )
                proc.echo(_build_argv(request, output, metadata))
                stream: Iterator[str] = docker.buildx.build(
                    request.context,
                    file=request.dockerfile,
                    platforms=[str(p) for p in request.platforms],
                    build_args=dict(request.build_args),
                    build_contexts=dict(request.build_contexts),
                    labels=dict(request.labels),
                    target=request.stage,
                    builder=request.builder,
                    cache=not request.no_cache,
                    cache_from=[dict(c) for c in request.cache_from] or None,
                    cache_to=dict(request.cache_to) if request.cache_to else None,
                    output=output,
                    tags=list(request.load_names),
                    metadata_file=metadata,
                    secrets=list(request.secrets),
                    progress="plain",
                    stream_logs=True,
                    **_attestations(request),
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
                        f"\nno emulator ran {request.platform_list} code: register QEMU for it "
                        "(sudo scripts/engine-up here, or docker run --privileged --rm "
                        "tonistiigi/binfmt --install all)"
                    )
                first = _first_error_line(detail)
                if _LOST.search(first):
                    builder = request.builder or request.docker_context or "current"
                    first = (
                        f"builder '{builder}' was lost: its BuildKit closed the connection "
                        f"or does not answer ({first.removeprefix('ERROR: ')})"
                    )
                raise BuildError(
                    f"build of {request.platform_list} failed: {first}", hint=detail
                ) from exc
            try:
                meta: dict[str, Any] = json.loads(metadata.read_text())
                cached, steps = count_steps(log)
                ref = str(meta.get("buildx.build.ref", ""))
                several = request.platforms if request.also else ()
                each = {str(p): count_steps(log, str(p)) for p in several}
                return BuildOutcome(str(meta["containerimage.digest"]), cached, steps, ref, each)
            except (OSError, ValueError, KeyError) as exc:
                raise BuildError(
                    f"build of {request.platform_list} finished but buildx wrote no image digest"
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
        proc.echo(args)
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

    def inspect_labeled(self, ref: str) -> tuple[RemoteManifest, dict[str, dict[str, str]]]:
        """What ``inspect`` reads, and the config labels of every platform image under
        *ref* by platform string, from one ``imagetools inspect`` (one buildx process costs
        ~0.2 s to start and ask; verification needs both answers for the same ref)."""
        data = self._imagetools_json(ref, '{"manifest":{{json .Manifest}},"image":{{json .Image}}}')
        images = data.get("image") or {}
        if "config" in images:  # a single image, not an index
            images = {"": images}
        labels = {
            str(p): dict((img.get("config") or {}).get("Labels") or {}) for p, img in images.items()
        }
        return RemoteManifest.from_json(ref, data["manifest"]), labels

    def copy_index(self, source: str, targets: list[str]) -> None:
        """Copy an image index, blobs included, to other refs (``imagetools create`` with
        one source: a carbon copy, so the digest is kept). Works across registries."""
        proc.echo(
            ["docker", "buildx", "imagetools", "create", *(f"--tag={t}" for t in targets), source]
        )
        with self._translate(f"cannot copy {source}", PublishError):
            _retrying(
                lambda: self._docker.buildx.imagetools.create(sources=[source], tags=list(targets)),
                also=_COPY_RACE,
            )

    def inspect(self, ref: str) -> RemoteManifest:
        """Read what the registry serves for *ref* (``imagetools inspect``). buildx's JSON
        ``.Manifest`` has the digest, media type, entries with their platforms and
        annotations, and the index's annotations: one call answers everything checked."""
        return RemoteManifest.from_json(ref, self._imagetools_json(ref, "{{json .Manifest}}"))

    def _imagetools_json(self, ref: str, template: str) -> Any:
        """``imagetools inspect REF --format TEMPLATE``, echoed, retried, its JSON parsed."""
        cmd = self._docker.buildx.imagetools.docker_cmd
        args = [*cmd, "buildx", "imagetools", "inspect", ref, "--format", template]
        proc.echo(args)
        with self._translate(f"cannot inspect {ref}", RegistryError):
            return json.loads(_retrying(lambda: _run(args, return_stderr=False)))

    # --- docker's credential store ------------------------------------------------------

    def login(self, server: str, username: str, password: str) -> str:
        """``docker login`` with the password on stdin: never in the argument list, which
        other users can read in ``ps``. docker stores it where it stores every login
        (config.json or its credential helper). Returns docker's last line ("Login
        Succeeded").

        Not ``DockerClient.login``: it also uses ``--password-stdin``, but lets docker's
        stderr through uncaptured, so a failure could not be turned into one line with a fix.
        """
        args = [*self._docker.docker_cmd, "login", "--username", username, "--password-stdin"]
        proc.echo([*args, server])
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

    def logout(self, server: str) -> None:
        proc.echo([*self._docker.docker_cmd, "logout", server])
        with self._translate(f"docker logout {server}", RegistryError):
            self._docker.logout(server)

    # --- the registry image, where no registry binary is installed ------------------------

    def run_registry(self, name: str, port: int, folder: Path) -> str:
        """Run the distribution registry image on 127.0.0.1:*port* with its state folder
        mounted at /mab (its config.yml names paths there). Returns the container id."""
        proc.echo(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "-p",
                f"127.0.0.1:{port}:5000",
                "-v",
                f"{folder}:{REGISTRY_MOUNT}",
                REGISTRY_IMAGE,
                f"{REGISTRY_MOUNT}/config.yml",
            ]
        )
        with self._translate(f"cannot start {REGISTRY_IMAGE} on port {port}", RegistryError):
            container = self._docker.run(
                REGISTRY_IMAGE,
                [f"{REGISTRY_MOUNT}/config.yml"],
                detach=True,
                name=name,
                publish=[(f"127.0.0.1:{port}", 5000)],
                volumes=[(str(folder), REGISTRY_MOUNT)],
                restart="unless-stopped",
            )
        return str(getattr(container, "id", container))

    def remove_container(self, name: str) -> None:
        proc.echo(["docker", "rm", "-f", name])
        with self._translate(f"cannot remove container {name}", RegistryError):
            self._docker.container.remove(name, force=True)

    def registry_gc(self, folder: Path) -> str:
        """``registry garbage-collect`` in the registry image, on the mounted state folder."""
        command = ["garbage-collect", f"{REGISTRY_MOUNT}/config.yml"]
        proc.echo(
            ["docker", "run", "--rm", "-v", f"{folder}:{REGISTRY_MOUNT}", REGISTRY_IMAGE, *command]
        )
        with self._translate("registry garbage-collect", RegistryError):
            return str(
                self._docker.run(
                    REGISTRY_IMAGE,
                    command,
                    remove=True,
                    volumes=[(str(folder), REGISTRY_MOUNT)],
                )
            )

    # --- mab doctor, mab build --load, mab run -------------------------------------------

    def client_version(self) -> str:
        """The docker CLI's version (``docker --version``: asks no engine)."""
        try:
            args = [*self._docker.docker_cmd, "--version"]
            proc.echo(args)
            text = _run(args, return_stderr=False)
        except (ClientNotFoundError, FileNotFoundError):
            raise _no_cli() from None
        except DockerException as exc:
            raise EngineError(f"docker --version: {_first_error_line(exc.stderr)}") from exc
        match = re.search(r"version\s+([^\s,]+)", text)
        return match.group(1) if match else text.strip()

    def info(self) -> EngineInfo:
        """``docker info``: the server version, image store, data root and CPU."""
        proc.echo(["docker", "info"])
        try:
            info = self._docker.info()
        except ClientNotFoundError:
            raise _no_cli() from None
        except DockerException as exc:
            host = os.environ.get("DOCKER_HOST") or "the default socket"
            raise EngineError(
                f"cannot reach the Docker engine at {host}: {_first_error_line(exc.stderr)}",
                hint="start dockerd (on a machine without one: sudo scripts/engine-up), or "
                "point DOCKER_HOST / docker context at a running engine",
            ) from exc
        except pydantic.ValidationError as exc:
            raise EngineError(
                f"docker info: unexpected output from docker ({exc.error_count()} errors)"
            ) from exc
        containerd = any(
            len(pair) == 2 and pair[0] == "driver-type" and "containerd" in pair[1]
            for pair in info.driver_status or []
        )
        return EngineInfo(
            server_version=str(info.server_version or "unknown"),
            containerd_store=containerd,
            data_root=str(info.docker_root_dir or ""),
            architecture=str(info.architecture or ""),
            os_type=str(info.os_type or "linux"),
        )

    def buildx_version(self) -> str:
        """The buildx plugin's version (``docker buildx version``)."""
        proc.echo(["docker", "buildx", "version"])
        try:
            text = self._docker.buildx.version()
        except ClientNotFoundError:
            raise _no_cli() from None
        except DockerException as exc:
            raise EngineError(
                "the docker buildx plugin is missing or broken: " + _first_error_line(exc.stderr),
                hint="install buildx into ~/.docker/cli-plugins (scripts/engine-up does it "
                "here); mab doctor checks the whole set-up",
            ) from exc
        parts = text.split()
        return parts[1] if len(parts) > 1 else text.strip()

    def image_platform(self, ref: str) -> str | None:
        """The platform (OS/ARCH[/VARIANT]) of image *ref* in the engine's local image
        store, or None when the store has no such image."""
        try:
            args = [*self._docker.docker_cmd, "image", "inspect", "--format", "{{json .}}", ref]
            proc.echo(args)
            data = json.loads(_run(args, return_stderr=False))
        except ClientNotFoundError:
            raise _no_cli() from None
        except DockerException as exc:
            stderr = (exc.stderr or "").lower()
            if "no such image" in stderr or "not found" in stderr:
                return None
            raise EngineError(f"cannot inspect {ref}: {_first_error_line(exc.stderr)}") from exc
        except ValueError as exc:
            raise EngineError(f"docker image inspect {ref} wrote no JSON") from exc
        parts = [data.get("Os") or "linux", data.get("Architecture") or "unknown"]
        if data.get("Variant"):
            parts.append(data["Variant"])
        return "/".join(str(p) for p in parts)

    def run(
        self,
        image: str,
        argv: Sequence[str] = (),
        platform: str | None = None,
        *,
        capture: bool = True,
        quiet: bool = False,
    ) -> RunResult:
        """``docker run --rm`` *image* with *argv* as its command (the image's own when
        empty), for *platform*. With *capture*, its output is returned; without, the
        container shares this process's stdin, stdout and stderr (a TTY when there is one).
        A non-zero exit is returned, not raised: it is the container's answer."""
        options = ["--rm", *([f"--platform={platform}"] if platform else [])]
        if quiet:
            options.append("--quiet")  # no pull progress mixed into the container's output
        if not capture:
            options.append("--interactive")
            if sys.stdin.isatty() and sys.stdout.isatty():
                options.append("--tty")
        try:
            args = [*self._docker.docker_cmd, "run", *options, image, *argv]
            proc.echo(args)
            if capture:
                out, err = _run(args, return_stderr=True)
                return RunResult(0, out, err)
            _run(args, capture_stdout=False, capture_stderr=False, return_stderr=False)
            return RunResult(0)
        except ClientNotFoundError:
            raise _no_cli() from None
        except DockerException as exc:
            return RunResult(exc.return_code, exc.stdout or "", exc.stderr or "")


# buildx's own gRPC connection to BuildKit failing (a remote node killed or unreachable
# mid-build, a builder container stopped): not the build's fault, nor a registry's.
_LOST = re.compile(
    r"code = Unavailable|error reading from server|transport is closing|"
    r"failed to receive status|waiting for connection|context deadline exceeded$",
    re.IGNORECASE,
)

REGISTRY_IMAGE = "registry:2"
REGISTRY_MOUNT = "/mab"  # where the registry container sees its state folder


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
