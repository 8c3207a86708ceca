"""A fake engine and an in-memory registry sharing one store, for fast unit tests of the
pipeline's decisions. Never proof on its own: tests/integration runs the same paths on a
real dockerd, BuildKit and distribution registry, checked with crane.

Both are checked by mypy against the seams they stand in for (``mab.engine.base.Engine``,
``mab.registry.base.Registry`` / ``RegistryFactory``): see the assignments at the end."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Self

from mab.engine.base import (
    BuilderInfo,
    BuildOutcome,
    BuildRequest,
    Engine,
    EngineInfo,
    RunResult,
)
from mab.errors import BuildError, EngineError, RegistryError
from mab.oci import INDEX_TYPES, Descriptor, Manifest, RemoteManifest, index_bytes
from mab.pipeline.results import PlatformResult, Reporter, TargetResult
from mab.planning.plan import Job
from mab.registry.base import Pushed, Registry, RegistryFactory

INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass
class Store:
    """repo -> digest -> (media type, bytes); repo -> tag -> digest; image labels."""

    blobs: dict[str, dict[str, tuple[str, bytes]]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    fail_put_tag: Callable[[str, str], bool] = lambda repo, tag: False
    list_hook: Callable[[str], None] = lambda repo: None  # runs before each tag listing

    def tag_of(self, ref: str) -> tuple[str, str]:
        repo, _, tag = ref.rpartition(":")
        return repo, tag


class FakeRegistry:
    def __init__(self, store: Store, host: str, **_: Any) -> None:
        self.store = store
        self.host = host

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _repo(self, repo: str) -> str:
        return f"{self.host}/{repo}"

    def get_manifest(self, repo: str, reference: str) -> Manifest:
        full = self._repo(repo)
        digest = self.store.tags.get(full, {}).get(reference, reference)
        if digest not in self.store.blobs.get(full, {}):
            raise RegistryError(f"{full}:{reference}: manifest unknown")
        media, data = self.store.blobs[full][digest]
        return Manifest(digest, media, data)

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        full = self._repo(repo)
        digest = digest_of(data)
        if not reference.startswith("sha256:") and self.store.fail_put_tag(full, reference):
            raise RegistryError(f"registry {self.host}: PUT failed after 5 attempts: 503")
        self.store.blobs.setdefault(full, {})[digest] = (media_type, data)
        if not reference.startswith("sha256:"):
            self.store.tags.setdefault(full, {})[reference] = digest
        return digest

    def head_manifest(self, repo: str, reference: str) -> str | None:
        try:
            return self.get_manifest(repo, reference).digest
        except RegistryError:
            return None

    def list_tags(self, repo: str) -> list[str]:
        self.store.list_hook(self._repo(repo))
        return sorted(self.store.tags.get(self._repo(repo), {}))

    def push_layout(self, layout: Path, repo: str) -> Pushed:
        """Store the layout's one manifest and its blobs (signatures copied by promote)."""
        top = json.loads((layout / "index.json").read_text())["manifests"][0]
        blobs = layout / "blobs" / "sha256"
        stored = self.store.blobs.setdefault(self._repo(repo), {})
        for path in blobs.iterdir():
            blob = ("application/octet-stream", path.read_bytes())
            stored.setdefault(f"sha256:{path.name}", blob)
        stored[top["digest"]] = (top["mediaType"], (blobs / top["digest"][7:]).read_bytes())
        return Pushed(top["digest"], top["mediaType"], int(top["size"]), 0, 0)

    def get_blob(self, repo: str, digest: str) -> bytes:
        found = self.store.blobs.get(self._repo(repo), {}).get(digest)
        if found is None:
            raise RegistryError(f"{self._repo(repo)}@{digest}: blob unknown")
        return found[1]


class FakeEngine:
    def __init__(
        self,
        fail: Callable[[BuildRequest], bool] = lambda r: False,
        platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64", "linux/arm/v7"),
        driver: str = "docker-container",
        containerd: bool = True,
        failure: str = "exit code 1",  # what a failing build says
    ) -> None:
        self.fail = fail
        self.failure = failure
        self.offered = platforms
        self.driver = driver
        self.containerd = containerd
        self.builds: list[BuildRequest] = []  # one per platform image built
        self.together: list[BuildRequest] = []  # builds of several platforms, as asked
        self.built: list[str] = []
        self.store = Store()

    def registry(
        self,
        host: str,
        *,
        on_retry: Callable[[str], None] | None = None,
        attempts: int | None = None,
    ) -> Registry:
        """A RegistryFactory serving this engine's store (what RegistryClient is in
        production)."""
        return FakeRegistry(self.store, host)

    def server_version(self) -> str:
        return "fake"

    def uses_containerd_store(self, context: str | None = None) -> bool:
        return self.containerd

    def builder(self, name: str | None) -> BuilderInfo:
        return BuilderInfo(name or "default", self.driver, self.offered, "running")

    def builders(self) -> list[BuilderInfo]:
        return [self.builder(None)]

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
        raise AssertionError("not used by the pipeline")

    def build_checks(
        self,
        dockerfile: Path,
        context: Path,
        build_args: Mapping[str, str] | None = None,
        build_contexts: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        return {"warnings": []}

    def login(self, server: str, username: str, password: str) -> str:
        return "Login Succeeded"

    def logout(self, server: str) -> None:
        return None

    def run_registry(self, name: str, port: int, folder: Path) -> str:
        raise AssertionError("the fake engine runs no containers")

    def remove_container(self, name: str) -> None:
        raise AssertionError("the fake engine runs no containers")

    def registry_gc(self, folder: Path) -> str:
        raise AssertionError("the fake engine runs no containers")

    def build(
        self,
        request: BuildRequest,
        on_line: Callable[[str], None],
        oci_layout: Path | None = None,
    ) -> BuildOutcome:
        assert oci_layout is None, "the fake stands for a builder that pushes by digest"
        if request.also:
            return self._build_several(request, on_line)
        return self._build_one(request, on_line)

    def _build_several(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuildOutcome:
        """Several platforms in one build, as BuildKit does them: one failing platform
        fails the build (nothing is recorded); else each platform's image is built as
        alone (and counted in ``builds``), and an index of them is pushed by digest."""
        singles = [replace(request, platform=p, also=()) for p in request.platforms]
        self.together.append(request)
        on_line(f"#1 building {request.platform_list}")
        failing = [s for s in singles if self.fail(s)]
        if failing:
            raise BuildError(
                f"build of {request.platform_list} failed: {self.failure}", hint="#5 ERROR"
            )
        outcomes = [self._build_one(s, lambda line: None) for s in singles]
        entries: list[Descriptor] = []
        for single, outcome in zip(singles, outcomes, strict=True):
            media, data = self.store.blobs[request.repository][outcome.digest]
            if media == INDEX:  # an image and its attestation: BuildKit lists both
                entries.extend(Descriptor.from_json(m) for m in json.loads(data)["manifests"])
            else:
                entries.append(Descriptor(IMAGE, outcome.digest, len(data), single.platform))
        body = index_bytes(entries, {})
        digest = digest_of(body)
        self.store.blobs[request.repository][digest] = (INDEX, body)
        return BuildOutcome(
            digest,
            sum(o.cached_steps for o in outcomes),
            sum(o.steps for o in outcomes),
            platform_steps={
                str(s.platform): (o.cached_steps, o.steps)
                for s, o in zip(singles, outcomes, strict=True)
            },
        )

    def _build_one(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuildOutcome:
        self.builds.append(request)
        on_line(f"#1 building {request.platform}")
        if self.fail(request):
            raise BuildError(f"build of {request.platform} failed: {self.failure}", hint="#5 ERROR")
        body = json.dumps(
            {
                "mediaType": IMAGE,
                "layers": [{"size": 100}, {"size": 23}],
                "args": dict(request.build_args),
                "p": str(request.platform),
                "repo": request.repository,
                "labels": dict(request.labels),
            },
            sort_keys=True,
        ).encode()
        digest = digest_of(body)
        self.store.blobs.setdefault(request.repository, {})[digest] = (IMAGE, body)
        self.store.labels[digest] = dict(request.labels)
        seen = self.built.count(digest)
        self.built.append(digest)
        return BuildOutcome(digest, cached_steps=2 if seen else 0, steps=2)

    def _resolve(self, ref: str) -> tuple[str, str]:
        if "@" in ref:
            repo, digest = ref.split("@")
        else:
            repo, tag = self.store.tag_of(ref)
            if tag not in self.store.tags.get(repo, {}):
                raise RegistryError(f"cannot inspect {ref}: not found")
            digest = self.store.tags[repo][tag]
        if digest not in self.store.blobs.get(repo, {}):
            raise RegistryError(f"cannot inspect {ref}: not found")
        return repo, digest

    def inspect(self, ref: str) -> RemoteManifest:
        repo, digest = self._resolve(ref)
        media, data = self.store.blobs[repo][digest]
        doc = json.loads(data)
        entries = tuple(Descriptor.from_json(m) for m in doc.get("manifests", []))
        return RemoteManifest(
            ref,
            digest,
            media,
            entries,
            doc.get("annotations") or {},
        )

    def inspect_labeled(self, ref: str) -> tuple[RemoteManifest, dict[str, dict[str, str]]]:
        manifest = self.inspect(ref)
        if manifest.media_type not in INDEX_TYPES:
            return manifest, {"": self.store.labels[manifest.digest]}
        labels = {str(d.platform): self.store.labels[d.digest] for d in manifest.images}
        return manifest, labels

    def copy_index(self, source: str, targets: list[str]) -> None:
        repo, digest = self._resolve(source)
        media, data = self.store.blobs[repo][digest]
        for ref in targets:
            dest, tag = self.store.tag_of(ref)
            self.store.blobs.setdefault(dest, {})[digest] = (media, data)
            self.store.tags.setdefault(dest, {})[tag] = digest
            for m in json.loads(data).get("manifests", []):
                self.store.blobs[dest][m["digest"]] = self.store.blobs[repo][m["digest"]]

    def annotations_of(self, ref: str) -> Mapping[str, str]:
        return self.inspect(ref).annotations

    # --- mab doctor, mab build --load, mab run: set these on an instance to stage a problem
    client: str | None = "28.2.2"  # None: no docker CLI
    reachable: bool = True  # False: the engine does not answer
    architecture: str = "x86_64"
    data_root: str = "/var/lib/docker"
    buildx: str | None = "0.29.1"  # None: no buildx plugin
    local_images: Mapping[str, str] = MappingProxyType({})  # ref -> platform
    run_exit: Mapping[str, int] = MappingProxyType({})  # platform -> exit code of its runs
    run_stderr: str = ""
    ran: tuple[tuple[str, tuple[str, ...], str | None, bool], ...] = ()

    def client_version(self) -> str:
        if self.client is None:
            raise EngineError(
                "the docker CLI was not found on PATH", hint="install the docker client"
            )
        return self.client

    def info(self) -> EngineInfo:
        if not self.reachable:
            raise EngineError(
                "cannot reach the Docker engine at unix:///nonexistent.sock: Cannot connect",
                hint="start dockerd",
            )
        return EngineInfo("26.1.5", self.containerd, self.data_root, self.architecture)

    def buildx_version(self) -> str:
        if self.buildx is None:
            raise EngineError(
                "the docker buildx plugin is missing or broken: unknown command",
                hint="install buildx into ~/.docker/cli-plugins",
            )
        return self.buildx

    def image_platform(self, ref: str) -> str | None:
        loaded = [str(r.platform) for r in self.builds if r.load and ref in r.load_names]
        return loaded[-1] if loaded else self.local_images.get(ref)

    def run(
        self,
        image: str,
        argv: Sequence[str] = (),
        platform: str | None = None,
        *,
        capture: bool = True,
        quiet: bool = False,
    ) -> RunResult:
        self.ran = (*self.ran, (image, tuple(argv), platform, capture))
        code = self.run_exit.get(platform or "", 0)
        if code:
            return RunResult(code, "", self.run_stderr)
        uname = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm/v7": "armv7l"}
        return RunResult(0, uname.get(platform or "linux/amd64", "unknown"), "")


# mypy checks the fakes against the seams here: a missing or mistyped method fails the
# type check, not a test run.
_engine: Engine = FakeEngine()
_registry: Registry = FakeRegistry(Store(), "registry.test")
_factory: RegistryFactory = FakeEngine().registry


class Recorder:
    """A Reporter that keeps every event, for tests to read."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def notice(self, message: str) -> None:
        self.events.append(("notice", message))

    def warning(self, message: str) -> None:
        self.events.append(("warning", message))

    def job_started(self, job: Job) -> None:
        self.events.append(("start", job.key))

    def job_log(self, job: Job, line: str) -> None:
        self.events.append(("log", line))

    def job_finished(self, job: Job, result: PlatformResult) -> None:
        self.events.append(("done", (job.key, result.status)))

    def target_finished(self, result: TargetResult) -> None:
        self.events.append(("target", (result.name, result.status)))


_reporter: Reporter = Recorder()
