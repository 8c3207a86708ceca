"""Verification: read back what the registry serves and compare it with the plan.

Every ref checked must be an image index whose platform entries (attestation entries set
aside) are exactly the declared platforms, once each; the refs a run wrote must resolve
to one and the same index; the images must carry the planned labels and the index the
planned annotations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from mab.engine.base import Engine
from mab.errors import VerifyError
from mab.oci import CREATED, Descriptor, RemoteManifest
from mab.planning.plan import TargetPlan
from mab.platforms import Platform


@dataclass(frozen=True)
class VerifiedIndex:
    digest: str
    images: tuple[Descriptor, ...]

    def image_for(self, platform: Platform) -> Descriptor | None:
        return next((d for d in self.images if d.platform == platform), None)


def check_manifest(target: TargetPlan, ref: str, manifest: RemoteManifest | None) -> None:
    expected = set(target.declared_platforms)
    if manifest is None:
        raise VerifyError(f"{ref}: not found in the registry")
    if not manifest.is_index:
        raise VerifyError(f"{ref}: is a single image ({manifest.media_type}), not an image index")
    counts = Counter(d.platform for d in manifest.images)
    dupes = sorted(str(p) for p, n in counts.items() if n > 1)
    if dupes:
        raise VerifyError(f"{ref}: platform listed more than once: {', '.join(dupes)}")
    found = {p for p in counts if p is not None}
    if found != expected:
        missing = ", ".join(sorted(str(p) for p in expected - found)) or "none"
        extra = ", ".join(sorted(str(p) for p in found - expected)) or "none"
        raise VerifyError(
            f"{ref}: platforms differ from builds.yaml (missing: {missing}; unexpected: {extra})"
        )


def check_index(
    target: TargetPlan,
    manifests: Mapping[str, RemoteManifest],
    same: Sequence[str] | None = None,
    digest: str | None = None,
) -> VerifiedIndex:
    """Pure check of what was read for each ref; raises VerifyError.

    *same*: the refs that must resolve to one index (default: all of *manifests*' refs in
    the target's order); *digest*: the index they must resolve to, when known.
    """
    refs = list(same) if same is not None else list(manifests) or list(target.refs)
    for ref in dict.fromkeys([*manifests, *refs]):  # each ref read, and each required, once
        check_manifest(target, ref, manifests.get(ref))
    digests = {ref: manifests[ref].digest for ref in refs}
    if len(set(digests.values())) != 1:
        listing = ", ".join(f"{ref} -> {d[:19]}" for ref, d in digests.items())
        raise VerifyError(f"{target.name}: tags resolve to different indexes ({listing})")
    first = manifests[refs[0]]
    if digest is not None and first.digest != digest:
        raise VerifyError(f"{refs[0]}: resolves to {first.digest[:19]}, expected {digest[:19]}")
    missing = {k: v for k, v in target.annotations if first.annotations.get(k) != v}
    if missing:
        raise VerifyError(f"{refs[0]}: index annotations missing or different: {sorted(missing)}")
    return VerifiedIndex(digest=first.digest, images=first.images)


def check_labels(target: TargetPlan, ref: str, labels: Mapping[str, Mapping[str, str]]) -> None:
    """Every platform image under *ref* carries the target's planned labels."""
    for platform, found in labels.items():
        wrong = sorted(k for k, v in target.labels if found.get(k) != v)
        if wrong:
            raise VerifyError(f"{ref} ({platform}): labels missing or different: {wrong}")


def verify_refs(
    engine: Engine,
    target: TargetPlan,
    refs: Sequence[str],
    digest: str | None = None,
    *,
    labels: bool = True,
) -> VerifiedIndex:
    """Inspect *refs* with ``imagetools inspect`` and check them; with *labels*, also the
    planned labels and annotations (a promotion keeps those of the build it promotes)."""
    if not labels:
        target = replace(target, labels=(), annotations=())
    # One buildx process per ref, asked at once (each takes ~0.2 s to start and ask); the
    # first one also reads the image configs' labels.
    first, *others = refs

    def ask_first() -> tuple[RemoteManifest, dict[str, dict[str, str]]]:
        return engine.inspect_labeled(first) if labels else (engine.inspect(first), {})

    with ThreadPoolExecutor(max_workers=len(refs)) as pool:
        head = pool.submit(ask_first)
        rest = {ref: pool.submit(engine.inspect, ref) for ref in others}
        manifest, found = head.result()
        read = {first: manifest, **{ref: f.result() for ref, f in rest.items()}}
        verified = check_index(target, read, refs, digest)
        if labels:
            check_labels(target, first, found)
    return verified


def verify_target(engine: Engine, target: TargetPlan) -> tuple[VerifiedIndex, dict[str, str]]:
    """``mab verify``: the immutable tags must agree on one index; each floating tag must be
    a valid index too, but may point at another one (a backport does not move latest).
    Returns the verified index and, per floating tag pointing elsewhere, its digest."""
    # The creation time is this run's clock unless the source pins it (git commit time,
    # SOURCE_DATE_EPOCH): a later check can only ask that it is there.
    created = CREATED
    target = replace(
        target,
        labels=tuple((k, v) for k, v in target.labels if k != created),
        annotations=tuple((k, v) for k, v in target.annotations if k != created),
    )
    immutable = [f"{target.repository}:{t.name}" for t in target.immutable_tags]
    floating = [f"{target.repository}:{t.name}" for t in target.floating_tags]
    if not immutable:  # nothing pins one index: every tag must agree
        immutable, floating = floating, []
    verified = verify_refs(engine, target, immutable)
    elsewhere: dict[str, str] = {}
    for ref in floating:
        manifest = engine.inspect(ref)
        check_manifest(target, ref, manifest)
        if manifest.digest != verified.digest:
            elsewhere[ref] = manifest.digest
    return verified, elsewhere
