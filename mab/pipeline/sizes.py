"""Image sizes, read from the registry (one GET per image), and the size-budget gate."""

from __future__ import annotations

from mab.errors import MabError
from mab.pipeline.results import Reporter, TargetResult, human_size
from mab.pipeline.verify import VerifiedIndex
from mab.planning.plan import TargetPlan
from mab.registry.base import RegistryFactory, split_repository


def over_budget(target: TargetPlan, result: TargetResult) -> str | None:
    """Why *target* breaks its size budget, or None (also None when sizes are unknown)."""
    if target.size_budget is None:
        return None
    over = [
        f"{r.platform} is {human_size(r.compressed_size)}"
        for r in result.platforms
        if r.compressed_size is not None and r.compressed_size > target.size_budget
    ]
    if not over:
        return None
    return f"over the size budget of {human_size(target.size_budget)} (compressed): " + ", ".join(
        over
    )


def try_fill_sizes(
    registries: RegistryFactory,
    target: TargetPlan,
    result: TargetResult,
    reporter: Reporter,
) -> None:
    """Sizes are for the report and the size budget: failing to read them is a warning."""
    try:
        fill_sizes(registries, target, result, None)
    except MabError as exc:
        reporter.warning(f"{target.name}: could not read image sizes: {exc.message}")


def fill_sizes(
    registries: RegistryFactory,
    target: TargetPlan,
    result: TargetResult,
    verified: VerifiedIndex | None,
) -> None:
    """Record each platform image's manifest digest, compressed size and layer count
    (straight from the registry: one GET per image)."""
    host, repo = split_repository(target.repository)
    with registries(host) as client:
        for r in result.platforms:
            digest = r.pushed_digest
            image = verified.image_for(r.platform) if verified is not None else None
            digest = image.digest if image is not None else digest
            if digest is None:
                continue
            manifest = client.get_manifest(repo, digest)
            if manifest.is_index:  # per-platform index: image + attestation
                entry = next((m for m in manifest.images if m.platform == r.platform), None)
                if entry is None:
                    continue
                digest = entry.digest
                manifest = client.get_manifest(repo, digest)
            r.image_digest = digest
            r.compressed_size = manifest.compressed_size
            r.layers = len(manifest.layers)
