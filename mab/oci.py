"""The one model of OCI manifests, indexes and descriptors in mab.

Everything that reads or writes a manifest speaks these types: the engine adapter (what
``imagetools inspect`` shows), the registry client (the exact bytes a registry serves),
publishing (the index mab assembles), verification and the registry queries. The JSON
surface is the OCI image spec's (and Docker's schema 2, which has the same shape).

BuildKit marks an attestation manifest inside an index with the annotation
``vnd.docker.reference.type: attestation-manifest`` (and, older, the platform
``unknown/unknown``); ``vnd.docker.reference.digest`` names the image it describes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mab.platforms import Platform

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
# What mab asks a registry for: every index and image manifest kind it understands.
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))

REF_TYPE = "vnd.docker.reference.type"
REF_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_TYPE = "attestation-manifest"
CREATED = "org.opencontainers.image.created"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short_digest(digest: str | None) -> str:
    """``sha256:`` and the first 12 hex digits, as docker shows image ids."""
    return digest[:19] if digest else "-"


def platform_json(platform: Platform) -> dict[str, str]:
    """The ``platform`` object of a descriptor."""
    out = {"architecture": platform.arch, "os": platform.os}
    if platform.variant:
        out["variant"] = platform.variant
    return out


def platform_string(platform: Mapping[str, Any] | None) -> str | None:
    """``os/arch[/variant]`` as written, unknown platforms included (``unknown/unknown``)."""
    if not platform:
        return None
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(p) for p in parts if p)


def _platform(data: Mapping[str, Any] | None) -> Platform | None:
    if not data:
        return None
    return Platform.from_oci(data.get("os"), data.get("architecture"), data.get("variant"))


@dataclass(frozen=True)
class Descriptor:
    """One entry of an index (or a manifest's config or layer)."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    # the platform as the registry wrote it (``unknown/unknown`` for attestations)
    platform_text: str | None = None
    # the JSON it was read from: written back unchanged, so fields mab does not model
    # (artifactType, os.version ...) survive and an index re-assembled from it keeps its digest
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Descriptor:
        raw_platform = data.get("platform")
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=str(data.get("digest", "")),
            size=int(data.get("size", 0)),
            platform=_platform(raw_platform),
            annotations={str(k): str(v) for k, v in (data.get("annotations") or {}).items()},
            platform_text=platform_string(raw_platform),
            raw=data,
        )

    def to_json(self) -> dict[str, Any]:
        if self.raw is not None:
            return dict(self.raw)
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            out["platform"] = platform_json(self.platform)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @property
    def is_attestation(self) -> bool:
        if self.annotations.get(REF_TYPE) == ATTESTATION_TYPE:
            return True
        return (self.platform is not None and self.platform.os == "unknown") or (
            self.platform_text or ""
        ).startswith("unknown")

    @property
    def attests(self) -> str | None:
        """The digest of the image an attestation manifest describes."""
        return self.annotations.get(REF_DIGEST) if self.is_attestation else None


@dataclass(frozen=True)
class Manifest:
    """The exact bytes a registry serves for a reference, with their digest and type.

    The digest is of these bytes: re-serialising the JSON would change it."""

    digest: str
    media_type: str
    data: bytes

    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or "manifests" in self._document

    @property
    def _document(self) -> dict[str, Any]:
        try:
            document = json.loads(self.data)
        except ValueError:
            return {}
        return document if isinstance(document, dict) else {}

    @property
    def manifests(self) -> tuple[Descriptor, ...]:
        """An index's entries (attestations included); empty for an image manifest."""
        return tuple(Descriptor.from_json(m) for m in self._document.get("manifests") or [])

    @property
    def images(self) -> tuple[Descriptor, ...]:
        """An index's platform images (attestation entries set aside)."""
        return tuple(d for d in self.manifests if not d.is_attestation)

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return tuple(Descriptor.from_json(m) for m in self._document.get("layers") or [])

    @property
    def config(self) -> Descriptor | None:
        config = self._document.get("config")
        return Descriptor.from_json(config) if config else None

    @property
    def annotations(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self._document.get("annotations") or {}).items()}

    @property
    def compressed_size(self) -> int:
        """The sum of the layer sizes an image manifest declares."""
        return sum(layer.size for layer in self.layers)

    def descriptor(self, platform: Platform | None = None) -> Descriptor:
        """This manifest as an index entry."""
        return Descriptor(self.media_type, self.digest, len(self.data), platform)


@dataclass(frozen=True)
class RemoteManifest:
    """What the registry serves for a reference, as the engine's ``imagetools inspect``
    reads it: an index, or a single image manifest (no entries)."""

    ref: str
    digest: str
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    @classmethod
    def from_json(cls, ref: str, data: Mapping[str, Any]) -> RemoteManifest:
        """From buildx's ``{{json .Manifest}}``: the descriptor fields plus the document's."""
        return cls(
            ref=ref,
            digest=str(data.get("digest", "")),
            media_type=str(data.get("mediaType", "")),
            manifests=tuple(Descriptor.from_json(m) for m in data.get("manifests") or []),
            annotations={str(k): str(v) for k, v in (data.get("annotations") or {}).items()},
        )

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def images(self) -> tuple[Descriptor, ...]:
        """Index entries that are platform images (attestation entries set aside)."""
        return tuple(d for d in self.manifests if not d.is_attestation)


def index_bytes(manifests: Iterable[Descriptor], annotations: Mapping[str, str]) -> bytes:
    """An OCI image index over *manifests*, serialised compactly (its digest is of these
    bytes, so the same entries always give the same index digest)."""
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [m.to_json() for m in manifests],
    }
    if annotations:
        document["annotations"] = dict(annotations)
    return json.dumps(document, separators=(",", ":")).encode()


# cosign's tag-based scheme: the signature (attestations, SBOM) of manifest sha256:<hex> is
# stored in the same repository under the tag sha256-<hex>.sig (.att, .sbom).
COSIGN_SUFFIXES = ("sig", "att", "sbom")
_COSIGN_TAG = re.compile(r"^sha256-([0-9a-f]{64})\.(sig|att|sbom)$")


def cosign_tag(digest: str, suffix: str = "sig") -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>.sig``."""
    return f"{digest.replace(':', '-', 1)}.{suffix}"


def cosign_subject(tag: str) -> tuple[str, str] | None:
    """(the digest a cosign tag is about, its kind: sig, att or sbom), or None."""
    match = _COSIGN_TAG.match(tag)
    return (f"sha256:{match.group(1)}", match.group(2)) if match else None
