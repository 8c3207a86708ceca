"""Verification: read back what the registry serves and compare it with the plan.

A target passes when every tag resolves to one and the same image index whose platform
entries (attestation entries set aside) are exactly the declared platforms, once each.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from mab.engine import Descriptor, Engine, RemoteManifest
from mab.errors import VerifyError
from mab.plan import TargetPlan
from mab.platforms import Platform


@dataclass(frozen=True)
class VerifiedIndex:
    digest: str
    images: tuple[Descriptor, ...]

    def image_for(self, platform: Platform) -> Descriptor | None:
        return next((d for d in self.images if d.platform == platform), None)


def check_index(target: TargetPlan, manifests: dict[str, RemoteManifest]) -> VerifiedIndex:
    """Pure check of what was read for each ref of *target*; raises VerifyError."""
    expected = set(target.declared_platforms)
    digests = {ref: m.digest for ref, m in manifests.items()}
    first: RemoteManifest | None = None
    for ref in target.refs:
        manifest = manifests.get(ref)
        if manifest is None:
            raise VerifyError(f"{ref}: not found in the registry")
        if not manifest.is_index:
            raise VerifyError(
                f"{ref}: is a single image ({manifest.media_type}), not an image index"
            )
        counts = Counter(d.platform for d in manifest.images)
        dupes = sorted(str(p) for p, n in counts.items() if n > 1)
        if dupes:
            raise VerifyError(f"{ref}: platform listed more than once: {', '.join(dupes)}")
        found = {p for p in counts if p is not None}
        if found != expected:
            missing = ", ".join(sorted(str(p) for p in expected - found)) or "none"
            extra = ", ".join(sorted(str(p) for p in found - expected)) or "none"
            raise VerifyError(
                f"{ref}: platforms differ from builds.yaml "
                f"(missing: {missing}; unexpected: {extra})"
            )
        first = first or manifest
    if len(set(digests.values())) != 1 or first is None:
        listing = ", ".join(f"{ref} -> {d[:19]}" for ref, d in digests.items())
        raise VerifyError(f"{target.name}: tags resolve to different indexes ({listing})")
    return VerifiedIndex(digest=first.digest, images=first.images)


def verify_target(engine: Engine, target: TargetPlan) -> VerifiedIndex:
    """Inspect every ref of *target* with ``imagetools inspect`` and check it."""
    return check_index(target, {ref: engine.inspect(ref) for ref in target.refs})
