"""A fake engine for fast unit tests of the pipeline's decisions (never proof on its own:
tests/integration runs the same paths on a real dockerd, BuildKit and registry)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from mab.engine import BuilderInfo, BuildRequest, Descriptor, RemoteManifest
from mab.errors import BuildError
from mab.platforms import Platform

INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE = "application/vnd.oci.image.manifest.v1+json"


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class FakeEngine:
    def __init__(
        self,
        fail: Callable[[BuildRequest], bool] = lambda r: False,
        platforms: tuple[str, ...] = ("linux/amd64", "linux/arm64", "linux/arm/v7"),
        driver: str = "docker-container",
        containerd: bool = True,
    ) -> None:
        self.fail = fail
        self.offered = platforms
        self.driver = driver
        self.containerd = containerd
        self.builds: list[BuildRequest] = []
        self.blobs: dict[str, RemoteManifest] = {}  # repo@digest -> manifest
        self.tags: dict[str, str] = {}  # repo:tag -> digest
        self.indexes_created: list[tuple[list[str], list[str]]] = []

    def server_version(self) -> str:
        return "fake"

    def uses_containerd_store(self) -> bool:
        return self.containerd

    def builder(self, name: str | None) -> BuilderInfo:
        return BuilderInfo(name or "default", self.driver, self.offered, "running")

    def build(
        self, request: BuildRequest, on_line: Callable[[str], None], oci_layout: object = None
    ) -> str:
        assert oci_layout is None, "the fake stands for a builder that pushes by digest"
        self.builds.append(request)
        on_line(f"#1 building {request.platform}")
        if self.fail(request):
            raise BuildError(f"build of {request.platform} failed: exit code 1", hint="#5 ERROR")
        digest = digest_of(f"{request.repository}/{request.platform}")
        self.blobs[f"{request.repository}@{digest}"] = RemoteManifest(
            ref=digest,
            digest=digest,
            media_type=IMAGE,
            manifests=(),
            layer_sizes=(100, 23),
            annotations={},
        )
        return digest

    def create_index(
        self, sources: list[str], tags: list[str], annotations: Mapping[str, str] | None = None
    ) -> None:
        self.indexes_created.append((sources, tags))
        repo = sources[0].split("@")[0]
        entries = []
        for source in sources:
            digest = source.split("@")[1]
            platform = next(
                Platform.parse(str(b.platform))
                for b in self.builds
                if digest_of(f"{b.repository}/{b.platform}") == digest
            )
            entries.append(Descriptor(IMAGE, digest, 500, platform, {}))
        index_digest = digest_of(",".join(sources))
        self.blobs[f"{repo}@{index_digest}"] = RemoteManifest(
            ref=index_digest,
            digest=index_digest,
            media_type=INDEX,
            manifests=tuple(entries),
            layer_sizes=(),
            annotations={},
        )
        for tag in tags:
            self.tags[tag] = index_digest

    def inspect(self, ref: str) -> RemoteManifest:
        from mab.errors import RegistryError

        if "@" in ref:
            if ref not in self.blobs:
                raise RegistryError(f"cannot inspect {ref}: not found")
            return self.blobs[ref]
        if ref not in self.tags:
            raise RegistryError(f"cannot inspect {ref}: not found")
        repo = ref.rsplit(":", 1)[0]
        return self.blobs[f"{repo}@{self.tags[ref]}"]
