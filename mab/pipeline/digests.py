"""Digest files: how a split build (one CI job per platform) hands its images to the merge.

``mab build --push-by-digest --digests-out DIR`` writes one small JSON file per target and
platform, ``TARGET@linux-arm64.json``; ``mab merge --digests DIR`` reads them all (CI
artifacts from several jobs land in one folder) and publishes each complete target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mab.errors import UsageError
from mab.platforms import Platform, PlatformValueError


@dataclass(frozen=True)
class DigestRecord:
    target: str
    platform: Platform
    repository: str
    digest: str

    @property
    def filename(self) -> str:
        return f"{self.target}@{self.platform.slug}.json"

    def to_json(self) -> str:
        data = {
            "target": self.target,
            "platform": str(self.platform),
            "repository": self.repository,
            "digest": self.digest,
        }
        return json.dumps(data, indent=2) + "\n"


def write(records: list[DigestRecord], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for record in records:
        path = folder / record.filename
        path.write_text(record.to_json(), encoding="utf-8")
        paths.append(path)
    return paths


def read(folder: Path) -> list[DigestRecord]:
    """Every digest file under *folder* (recursively: CI tools may keep artifact folders)."""
    if not folder.is_dir():
        raise UsageError(f"--digests: {folder} is not a folder")
    records: dict[tuple[str, Platform], DigestRecord] = {}
    for path in sorted(folder.rglob("*@*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            record = DigestRecord(
                target=str(data["target"]),
                platform=Platform.parse(str(data["platform"])),
                repository=str(data["repository"]),
                digest=str(data["digest"]),
            )
        except (OSError, ValueError, KeyError, PlatformValueError) as exc:
            raise UsageError(f"{path}: not a mab digest file ({exc})") from None
        if not record.digest.startswith("sha256:"):
            raise UsageError(f"{path}: digest '{record.digest}' is not sha256:...")
        key = (record.target, record.platform)
        if key in records and records[key].digest != record.digest:
            raise UsageError(
                f"{path}: a second, different digest for {record.target} {record.platform}"
            )
        records[key] = record
    if not records:
        raise UsageError(f"--digests: no TARGET@PLATFORM.json files in {folder}")
    return list(records.values())
