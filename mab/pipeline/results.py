"""What a run produced: per platform and per target, for the summary table and --report;
and the Reporter seam that hears about it as it happens."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from mab.planning.plan import Job
from mab.platforms import Platform


def human_size(size: int | None) -> str:
    """1536 -> '1.5 KiB' (binary units, as registries and docker report)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


class JobStatus(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    BUILT = "built"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNCHANGED = "unchanged"  # its inputs match the published image: not built


class TargetStatus(StrEnum):
    PUBLISHED = "published"
    UNTAGGED = "built, not tagged"
    FAILED = "failed"
    VERIFIED = "verified"
    UNCHANGED = "unchanged"  # published before with the same inputs: nothing built or pushed


@dataclass
class GateOutcome:
    """One publish gate's result (test, scan, sign, signature, attestations) for one
    platform image or for the index, with the first lines of what the gate said."""

    gate: str
    ok: bool
    output: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "ok": self.ok, "output": list(self.output)}


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
    gates: list[GateOutcome] = field(default_factory=list)  # in the order they ran

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
            "gates": [g.to_dict() for g in self.gates],
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
    gates: list[GateOutcome] = field(default_factory=list)  # the index's (sign, signature)

    @property
    def ok(self) -> bool:
        return self.status in (
            TargetStatus.PUBLISHED,
            TargetStatus.VERIFIED,
            TargetStatus.UNTAGGED,
            TargetStatus.UNCHANGED,
        )

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
            "gates": [g.to_dict() for g in self.gates],
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


class Reporter(Protocol):
    """Receives progress events; the CLI's implementation draws them with rich."""

    def notice(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_log(self, job: Job, line: str) -> None: ...
    def job_finished(self, job: Job, result: PlatformResult) -> None: ...
    def target_finished(self, result: TargetResult) -> None: ...


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM, with what it had done by then: the targets
    published before the signal stay published, the others got no tag."""

    def __init__(self, report: RunReport, exit_code: int) -> None:
        super().__init__("interrupted")
        self.report = report
        self.exit_code = exit_code
