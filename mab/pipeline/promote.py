"""Promotion: give an already published index new tags, optionally in another registry,
without rebuilding. Within one repository the index bytes are written under the new tags,
so the digest is the same by construction; elsewhere ``imagetools create`` copies blobs
and index (a carbon copy keeps the digest where the registry allows). Verified like a
build: declared platforms and every new tag on one index (the labels are those of the
build being promoted, not of the checkout running the promotion).

Signatures and attestations follow the image: attestations live in the index, so they are
copied with it; cosign's signature tags (``sha256-<hex>.sig``) of the index and its
platform images are copied to another repository, and when the target signs, the
signatures are verified at the destination (mab.pipeline.gates)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mab.engine.base import Engine
from mab.errors import PublishError, UsageError
from mab.oci import Manifest
from mab.pipeline.gates import verify_copy
from mab.pipeline.verify import verify_refs
from mab.planning.plan import TargetPlan
from mab.planning.tags import sanitise
from mab.registry.base import RegistryFactory, split_repository
from mab.signing import Cosign, SignerFactory, copy_signatures


@dataclass(frozen=True)
class Promotion:
    source_ref: str
    source_digest: str
    refs: tuple[str, ...]
    digest: str
    signatures: tuple[str, ...] = ()  # signature/attestation tags copied with it
    verified_signatures: bool = False  # checked at the destination with the public key

    @property
    def digest_kept(self) -> bool:
        return self.digest == self.source_digest


def promote(
    engine: Engine,
    target: TargetPlan,
    source: str,
    to: Sequence[str],
    *,
    registries: RegistryFactory,
    to_registry: str | None = None,
    signers: SignerFactory = Cosign,
) -> Promotion:
    if not to:
        raise UsageError("name at least one new tag with --to")
    bad = [t for t in to if sanitise(t) != t]
    if bad:
        raise UsageError(f"invalid tag(s): {', '.join(bad)} (use [A-Za-z0-9_.-], max 128)")
    host, repo = split_repository(target.repository)
    reference = source if source.startswith("sha256:") else source.lstrip(":")
    source_ref = f"{target.repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"
    dest_repository = f"{to_registry.rstrip('/')}/{target.name}" if to_registry else None
    copied: list[str] = []
    with registries(host) as registry:
        manifest = registry.get_manifest(repo, reference)
        if dest_repository is None or dest_repository == target.repository:
            dest_repository = target.repository
            for tag in to:
                registry.put_manifest(repo, tag, manifest.data, manifest.media_type)
        else:
            engine.copy_index(
                f"{target.repository}@{manifest.digest}", [f"{dest_repository}:{t}" for t in to]
            )
            dest_host, dest_repo = split_repository(dest_repository)
            with registries(dest_host) as dest:
                copied = copy_signatures(
                    registry, repo, dest, dest_repo, [manifest.digest, *_children(manifest)]
                )
    refs = tuple(f"{dest_repository}:{t}" for t in to)
    verified = verify_refs(engine, target, list(refs), labels=False)
    if dest_repository == target.repository and verified.digest != manifest.digest:
        raise PublishError(f"{refs[0]} resolves to {verified.digest}, not {manifest.digest}")
    dest_host, dest_repo = split_repository(dest_repository)
    with registries(dest_host) as dest:
        problems = verify_copy(
            dest,
            dest_repo,
            verified.digest,
            repository=dest_repository,
            plan=target.gates,
            signers=signers,
        )
    if problems:
        raise PublishError(
            f"promoted to {', '.join(refs)}, but at the destination: " + "; ".join(problems),
            hint="the source may be unsigned (published before signing: was configured); "
            "sign it with cosign sign --key ..., or rebuild",
        )
    return Promotion(
        source_ref,
        manifest.digest,
        refs,
        verified.digest,
        tuple(copied),
        target.gates.signing is not None,
    )


def _children(manifest: Manifest) -> list[str]:
    return [d.digest for d in manifest.manifests]
