"""What a run produced: per platform and per target, for the summary table and --report."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mab.platforms import Platform


class JobStatus(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    BUILT = "built"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TargetStatus(StrEnum):
    PUBLISHED = "published"
    UNTAGGED = "built, not tagged"
    FAILED = "failed"
    VERIFIED = "verified"


@dataclass
class PlatformResult:
    target: str
    platform: Platform
    status: JobStatus = JobStatus.QUEUED
    pushed_digest: str | None = None  # what buildx pushed (may be a per-platform index)
    image_digest: str | None = None  # the platform image manifest inside the final index
    compressed_size: int | None = None
    layers: int | None = None
    duration: float | None = None
    error: str | None = None
    cached_steps: int | None = None
    steps: int | None = None
    builder: str | None = None
    build_ref: str | None = None  # BUILDER/NODE/ID in `docker buildx history`

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": str(self.platform),
            "builder": self.builder,
            "build_ref": self.build_ref,
            "cached_steps": self.cached_steps,
            "steps": self.steps,
            "status": str(self.status),
            "pushed_digest": self.pushed_digest,
            "digest": self.image_digest,
            "compressed_size": self.compressed_size,
            "layers": self.layers,
            "duration_s": None if self.duration is None else round(self.duration, 2),
            "error": self.error,
        }


@dataclass
class TargetResult:
    name: str
    repository: str
    tags: tuple[str, ...]
    platforms: list[PlatformResult] = field(default_factory=list)
    status: TargetStatus = TargetStatus.FAILED
    index_digest: str | None = None
    error: str | None = None
    held: dict[str, str] = field(default_factory=dict)  # floating tag -> why not moved

    @property
    def ok(self) -> bool:
        return self.status in (TargetStatus.PUBLISHED, TargetStatus.VERIFIED, TargetStatus.UNTAGGED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "repository": self.repository,
            "tags": list(self.tags),
            "status": str(self.status),
            "index_digest": self.index_digest,
            "not_moved": dict(self.held),
            "error": self.error,
            "platforms": [p.to_dict() for p in self.platforms],
        }


@dataclass
class RunReport:
    command: str
    registry: str
    targets: list[TargetResult] = field(default_factory=list)
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "registry": self.registry,
            "ok": self.ok,
            "duration_s": round(self.duration, 2),
            "targets": [t.to_dict() for t in self.targets],
        }
