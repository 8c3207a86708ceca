"""Publishing one target whose platform images are all in the registry by digest.

Order, so that a failure at any step leaves every tag published before the run where it
was, and no tag ever points at a partial index:

1. assemble the image index from the platform digests and write it by digest (no tag);
2. write it under the immutable tags (full version, sha, date, ...);
3. verify what the registry serves (``imagetools inspect``): platforms, digest, labels,
   annotations;
4. only then move the floating tags, one by one, each re-read to confirm it resolves to
   the new index. Semver floating tags move only when this version is the highest of
   their line among the tags already in the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mab.engine.base import Engine
from mab.errors import PublishError
from mab.oci import OCI_INDEX, Descriptor, digest_of, index_bytes
from mab.pipeline.verify import VerifiedIndex, verify_refs
from mab.planning.plan import TargetPlan
from mab.planning.tags import should_move
from mab.platforms import Platform
from mab.registry.base import Registry, RegistryFactory, split_repository


@dataclass
class Published:
    index_digest: str
    verified: VerifiedIndex
    written: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # floating tag -> why it did not move


def assemble_index(
    client: Registry,
    repo: str,
    images: Sequence[tuple[Platform, str]],
    annotations: dict[str, str],
) -> bytes:
    """An OCI image index over per-platform images already in *repo*. A per-platform index
    (image plus attestation, as BuildKit pushes with provenance) is flattened into it."""
    manifests: list[Descriptor] = []
    for platform, digest in images:
        manifest = client.get_manifest(repo, digest)
        if manifest.is_index:
            manifests.extend(manifest.manifests)
        else:
            manifests.append(manifest.descriptor(platform))
    return index_bytes(manifests, annotations)


def publish(
    engine: Engine,
    target: TargetPlan,
    images: Sequence[tuple[Platform, str]],
    *,
    on_retry: Callable[[str], None] | None = None,
    on_step: Callable[[str], None] | None = None,
    registries: RegistryFactory,
) -> Published:
    step = on_step or (lambda message: None)
    host, repo = split_repository(target.repository)
    with registries(host, on_retry=on_retry) as client:
        data = assemble_index(client, repo, images, dict(target.annotations))
        digest = digest_of(data)
        client.put_manifest(repo, digest, data, OCI_INDEX)
        step(f"index {digest} written by digest")
        written: list[str] = []
        for tag in target.immutable_tags:
            client.put_manifest(repo, tag.name, data, OCI_INDEX)
            written.append(tag.name)
        refs = [f"{target.repository}:{t}" for t in written] or [f"{target.repository}@{digest}"]
        verified = verify_refs(engine, target, refs, digest)
        step(f"verified {', '.join(written) or digest}")
        result = Published(digest, verified, written)
        existing = client.list_tags(repo)
        for tag in target.floating_tags:
            move, why = should_move(tag, existing)
            if not move:
                result.held[tag.name] = why
                step(f"{tag.name} not moved: {why}")
                continue
            client.put_manifest(repo, tag.name, data, OCI_INDEX)
            now = client.head_manifest(repo, tag.name)
            if now != digest:
                raise PublishError(
                    f"{target.repository}:{tag.name} resolves to {now} right after it was "
                    f"moved to {digest}"
                )
            written.append(tag.name)
            step(f"{tag.name} moved to {digest[:19]}")
    return result
