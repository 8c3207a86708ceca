"""Reading a registry for people: repositories, tags with what they point at, and one
image (index or manifest) with its platforms, sizes, created times and annotations.

Everything goes through mab's registry client (mab.registry.client), so auth, TLS trust and
retries are the same as for pushes. ``mab registry ls/tags/inspect`` print these; ``mab
clean`` and ``mab registry rm`` decide from them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from mab.config.defaults import default_registry
from mab.errors import RegistryError, UsageError
from mab.oci import CREATED, REF_DIGEST, Descriptor, Manifest, cosign_subject, platform_string
from mab.registry.client import RegistryClient


@dataclass(frozen=True)
class Ref:
    host: str
    repo: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.host}/{self.repo}@{self.digest}"
        return f"{self.host}/{self.repo}:{self.tag or 'latest'}"


def _looks_like_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def split_registry(text: str) -> tuple[str, str]:
    """``localhost:5000/demo`` -> (``localhost:5000``, ``demo``); a bare path gets the
    default registry."""
    text = text.strip().rstrip("/")
    first, _, rest = text.partition("/")
    if _looks_like_host(first):
        return first, rest
    return default_registry().split("/", 1)[0], text


def parse_ref(text: str, *, want_reference: bool = True) -> Ref:
    """``HOST/REPO[:TAG|@DIGEST]``; without a host, the default registry's."""
    body, at, digest = text.strip().partition("@")
    tag: str | None = None
    if "/" in body:
        head, _, last = body.rpartition("/")
        if ":" in last:
            last, _, tag = last.partition(":")
        host, repo = split_registry(f"{head}/{last}")
    else:  # a bare repository of the default registry, maybe with a tag
        repo, _, tag_text = body.partition(":")
        if ("." in repo or repo == "localhost") and (not tag_text or tag_text.isdigit()):
            repo = ""  # a registry host alone
        host, tag = default_registry().split("/", 1)[0], tag_text or None
    if not repo:
        raise UsageError(f"'{text}' names no repository (write HOST/REPO[:TAG|@sha256:...])")
    if at and not digest.startswith("sha256:"):
        raise UsageError(f"'{text}': a digest is sha256:<64 hex digits>")
    if not want_reference and (tag or at):
        raise UsageError(f"'{text}': give a repository, without a tag or digest")
    return Ref(host, repo, tag, digest or None)


@contextmanager
def client(host: str) -> Iterator[RegistryClient]:
    with RegistryClient(host) as registry:
        yield registry


# --- tags ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagInfo:
    tag: str
    digest: str
    media_type: str
    kind: str  # "index" or "manifest"
    platforms: tuple[str, ...]
    children: tuple[str, ...] = ()  # digests an index references (attestations included)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["platforms"] = list(self.platforms)
        data["children"] = list(self.children)
        return data


def describe(tag: str, manifest: Manifest, registry: RegistryClient, repo: str) -> TagInfo:
    if manifest.is_index:
        entries = manifest.manifests
        platforms = tuple(
            e.platform_text for e in entries if not e.is_attestation and e.platform_text
        )
        children = tuple(e.digest for e in entries if e.digest)
        return TagInfo(tag, manifest.digest, manifest.media_type, "index", platforms, children)
    config = _config_of(registry, repo, manifest)
    platform = platform_string(config)
    return TagInfo(
        tag,
        manifest.digest,
        manifest.media_type,
        "manifest",
        (platform,) if platform else (),
    )


def list_tags(registry: RegistryClient, repo: str) -> list[TagInfo]:
    """Every tag of *repo* with the index or manifest it points at."""
    cache: dict[str, Manifest] = {}
    out: list[TagInfo] = []
    for tag in sorted(registry.list_tags(repo)):
        try:
            manifest = registry.get_manifest(repo, tag)
        except RegistryError as exc:
            if "manifest unknown" in exc.message:
                continue  # deleted between the listing and now
            raise
        cache.setdefault(manifest.digest, manifest)
        out.append(describe(tag, cache[manifest.digest], registry, repo))
    return out


# --- one image ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageEntry:
    """One manifest of an index (or the single manifest of a plain image)."""

    digest: str
    media_type: str
    platform: str | None
    size: int  # compressed: the sum of the layer sizes the manifest declares
    layers: int
    created: str | None
    annotations: dict[str, str] = field(default_factory=dict)
    attestation_for: str | None = None


@dataclass(frozen=True)
class ImageDetails:
    ref: str
    digest: str
    media_type: str
    kind: str
    annotations: dict[str, str]
    images: list[ImageEntry]
    attestations: list[ImageEntry]
    # cosign's signature/attestation tags (sha256-<hex>.sig ...) by the digest they are about
    signatures: dict[str, list[str]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(i.size for i in self.images)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = self.size
        return data


def _config_of(registry: RegistryClient, repo: str, manifest: Manifest) -> dict[str, Any]:
    """An image's config JSON (its platform, created time ...); {} when it has none."""
    config = manifest.config
    if config is None or not config.digest:
        return {}
    try:
        data = json.loads(registry.get_blob(repo, config.digest))
    except (RegistryError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _entry(registry: RegistryClient, repo: str, descriptor: Descriptor) -> ImageEntry:
    manifest = registry.get_manifest(repo, descriptor.digest)
    annotations = {**descriptor.annotations, **manifest.annotations}
    attestation = descriptor.is_attestation
    config = {} if attestation else _config_of(registry, repo, manifest)
    platform = descriptor.platform_text or platform_string(config)
    return ImageEntry(
        digest=descriptor.digest,
        media_type=manifest.media_type,
        platform=None if attestation else platform,
        size=manifest.compressed_size,
        layers=len(manifest.layers),
        created=config.get("created") or annotations.get(CREATED),
        annotations=annotations,
        attestation_for=annotations.get(REF_DIGEST) if attestation else None,
    )


def signatures_of(registry: RegistryClient, repo: str, digests: list[str]) -> dict[str, list[str]]:
    """cosign's tags in *repo* about *digests* (the index and its images), by digest."""
    wanted = set(digests)
    found: dict[str, list[str]] = {}
    for tag in sorted(registry.list_tags(repo)):
        subject = cosign_subject(tag)
        if subject is not None and subject[0] in wanted:
            found.setdefault(subject[0], []).append(tag)
    return found


def inspect(registry: RegistryClient, ref: Ref) -> ImageDetails:
    top = registry.get_manifest(ref.repo, ref.reference)
    annotations = top.annotations
    if top.is_index:
        entries = [_entry(registry, ref.repo, d) for d in top.manifests]
        signed = [top.digest, *(d.digest for d in top.manifests)]
        return ImageDetails(
            ref=str(ref),
            digest=top.digest,
            media_type=top.media_type,
            kind="index",
            annotations=annotations,
            images=[e for e in entries if e.attestation_for is None and e.platform is not None],
            attestations=[
                e for e in entries if e.attestation_for is not None or e.platform is None
            ],
            signatures=signatures_of(registry, ref.repo, signed),
        )
    single = _entry(registry, ref.repo, top.descriptor())
    return ImageDetails(
        ref=str(ref),
        digest=top.digest,
        media_type=top.media_type,
        kind="manifest",
        annotations=annotations,
        images=[single],
        attestations=[],
        signatures=signatures_of(registry, ref.repo, [top.digest]),
    )


def created_of(registry: RegistryClient, repo: str, info: TagInfo) -> str | None:
    """When the image a tag points at was built: the index's created annotation, else the
    config ``created`` of its first platform image (of the manifest itself)."""
    manifest = registry.get_manifest(repo, info.digest)
    stamp = manifest.annotations.get(CREATED)
    if stamp:
        return stamp
    if info.kind == "manifest":
        created = _config_of(registry, repo, manifest).get("created")
        return str(created) if created else None
    for entry in manifest.images:
        child = registry.get_manifest(repo, entry.digest)
        created = _config_of(registry, repo, child).get("created")
        if created:
            return str(created)
    return None
