"""Publishing one target whose platform images are all in the registry by digest.

Order, so that a failure at any step leaves every tag published before the run where it
was, and no tag ever points at a partial or unverified index:

1. assemble the image index from the platform digests and write it by digest (no tag);
2. verify what the registry serves for that digest (``imagetools inspect``): platforms,
   labels, annotations; then the publish gates sign the index and its images and check
   signatures and attestations (mab.pipeline.gates, which also ran the smoke tests and
   scans before step 1);
3. refuse when an immutable tag (full version, sha, date, literal) already names another
   index, unless ``force``: a release is never silently replaced;
4. write the immutable tags, each read back (HEAD) to confirm it resolves to the index;
5. move the floating tags, one by one, each read back. Semver floating tags move only
   when this version is the highest of their line among the tags in the registry;
6. converge: list the tags again and point every semver floating tag at the highest
   release of its line, so a slow concurrent run cannot leave ``latest`` on an older
   release.

A failure after the first tag was written says exactly which tags were written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from semver import Version

from mab.engine.base import Engine
from mab.errors import MabError, PublishError
from mab.oci import OCI_INDEX, Descriptor, Manifest, digest_of, index_bytes
from mab.pipeline.gates import Gates
from mab.pipeline.inputs import INPUTS, TargetInputs
from mab.pipeline.results import Reporter
from mab.pipeline.verify import VerifiedIndex, verify_refs
from mab.planning.plan import TargetPlan
from mab.planning.tags import highest_release, should_move
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
    inputs: TargetInputs | None = None,
) -> bytes:
    """An OCI image index over per-platform images already in *repo*. A per-platform index
    (image plus attestation, as BuildKit pushes with provenance) is flattened into it.
    With *inputs*, each platform image's entry and the index carry their input digest."""
    manifests: list[Descriptor] = []
    for platform, digest in images:
        manifest = client.get_manifest(repo, digest)
        entries = manifest.manifests if manifest.is_index else (manifest.descriptor(platform),)
        recorded = inputs.platforms.get(platform) if inputs else None
        for entry in entries:
            image = not entry.is_attestation and entry.platform == platform
            manifests.append(_annotated(entry, {INPUTS: recorded}) if recorded and image else entry)
    if inputs is not None and inputs.combined is not None:
        annotations = {**annotations, INPUTS: inputs.combined}
    return index_bytes(manifests, annotations)


def _annotated(entry: Descriptor, extra: dict[str, str]) -> Descriptor:
    merged = {**entry.annotations, **extra}
    raw = {**entry.raw, "annotations": merged} if entry.raw is not None else None
    return replace(entry, annotations=merged, raw=raw)


def publish(
    engine: Engine,
    target: TargetPlan,
    images: Sequence[tuple[Platform, str]],
    *,
    registries: RegistryFactory,
    on_retry: Callable[[str], None] | None = None,
    on_step: Callable[[str], None] | None = None,
    force: bool = False,
    inputs: TargetInputs | None = None,
    gates: Gates | None = None,
) -> Published:
    step = on_step or (lambda message: None)
    host, repo = split_repository(target.repository)
    with registries(host, on_retry=on_retry) as client:
        try:
            data = assemble_index(client, repo, images, dict(target.annotations), inputs)
            digest = digest_of(data)
            client.put_manifest(repo, digest, data, OCI_INDEX)
            step(f"index {digest} written by digest")
            verified = verify_refs(engine, target, [f"{target.repository}@{digest}"], digest)
            step(f"verified {digest[:19]}")
            if gates is not None:  # sign, then check signatures and attestations (issue 12)
                gates.check_index(client, repo, digest)
        except MabError as exc:
            raise PublishError(f"{exc.message}; {written_account([])}", exc.hint) from exc
        tagger = _Tagger(client, repo, target, data, Published(digest, verified), step)
        try:
            tagger.refuse_overwrite(force)
            tagger.write_all()
        except MabError as exc:
            account = written_account(tagger.result.written)
            raise PublishError(f"{exc.message}; {account}", exc.hint) from exc
    return tagger.result


def written_account(written: Sequence[str]) -> str:
    """What a failed publish leaves behind, for its error message."""
    if not written:
        return "no tag was written or moved"
    return (
        f"tags written before the failure: {', '.join(written)}; the others keep their old images"
    )


def _image_set(index: Manifest) -> frozenset[tuple[str, str]]:
    """An index's platform images as (platform, manifest digest), attestations aside."""
    return frozenset((str(d.platform), d.digest) for d in index.images)


@dataclass
class _Tagger:
    """Writes one target's tags onto its verified index (steps 3 to 6 above)."""

    client: Registry
    repo: str
    target: TargetPlan
    data: bytes
    result: Published
    step: Callable[[str], None]

    @property
    def digest(self) -> str:
        return self.result.index_digest

    def refuse_overwrite(self, force: bool) -> None:
        for tag in self.target.immutable_tags:
            now = self.client.head_manifest(self.repo, tag.name)
            if now is not None and now != self.digest and not force and not self._adopt(now):
                raise PublishError(
                    f"{self.target.repository}:{tag.name} already names another index "
                    f"({now[:19]}), not this build's ({self.digest[:19]}): an immutable tag "
                    "is not overwritten",
                    hint="bump the version (or the tag rule), or pass --force to overwrite it",
                )

    def _adopt(self, digest: str) -> bool:
        """Whether the index an immutable tag names is this build's release: the very same
        platform images and the planned annotations, only the attestation entries differ
        (BuildKit's provenance records a build id and times, so two builds of one source
        never agree there). Then that index is kept and every tag is written onto it: a
        rerun, or a merge job run again, is not refused, and the release does not move."""
        existing = self.client.get_manifest(self.repo, digest)
        if not existing.is_index or _image_set(existing) != _image_set(
            Manifest(self.digest, OCI_INDEX, self.data)
        ):
            return False
        if any(existing.annotations.get(k) != v for k, v in self.target.annotations):
            return False
        self.step(
            f"{digest[:19]} already published has these very images (only attestations "
            f"differ): kept, rather than {self.digest[:19]}"
        )
        self.data = existing.data
        self.result.index_digest = existing.digest
        self.result.verified = VerifiedIndex(existing.digest, existing.images)
        return True

    def write_all(self) -> None:
        immutable = self.target.immutable_tags
        for tag in immutable:
            self._put_and_confirm(tag.name)
        if immutable:
            self.step(f"{', '.join(t.name for t in immutable)} -> {self.digest[:19]}")
        self.write_floating()

    def write_floating(self) -> None:
        existing = self.client.list_tags(self.repo)
        for tag in self.target.floating_tags:
            move, why = should_move(tag, existing)
            if not move:
                self.result.held[tag.name] = why
                self.step(f"{tag.name} not moved: {why}")
                continue
            if self.client.head_manifest(self.repo, tag.name) == self.digest:
                self.result.written.append(tag.name)  # already there: nothing to write
                continue
            self._put_and_confirm(tag.name)
            self.step(f"{tag.name} moved to {self.digest[:19]}")
        self._converge()

    def _put_and_confirm(self, tag: str) -> None:
        self.client.put_manifest(self.repo, tag, self.data, OCI_INDEX)
        now = self.client.head_manifest(self.repo, tag)
        if now != self.digest:
            raise PublishError(
                f"{self.target.repository}:{tag} resolves to {now} right after it was moved "
                f"to {self.digest}"
            )
        self.result.written.append(tag)

    def _converge(self) -> None:
        """Point each semver floating tag at the highest release of its line, read again
        after this run wrote its tags: a concurrent run of a higher version that wrote
        the tag before this one's slow write would otherwise lose it for good."""
        tags = [t for t in self.target.floating_tags if t.line is not None and t.version]
        if not tags:
            return
        existing = self.client.list_tags(self.repo)
        for tag in tags:
            highest = highest_release(tag, existing)
            if highest is None or tag.version is None:
                continue
            if highest[0] <= Version.parse(tag.version):
                continue  # this run's version is the highest: its write stands
            should = self.client.head_manifest(self.repo, highest[1])
            if should is None or self.client.head_manifest(self.repo, tag.name) == should:
                continue
            manifest = self.client.get_manifest(self.repo, should)
            self.client.put_manifest(self.repo, tag.name, manifest.data, manifest.media_type)
            if tag.name in self.result.written:
                self.result.written.remove(tag.name)
            self.result.held[tag.name] = f"{highest[0]} is higher (set back to {highest[1]})"
            self.step(f"{tag.name} set back to {highest[1]}: {highest[0]} is higher")


def republish_floating(
    target: TargetPlan,
    index: Manifest,
    registries: RegistryFactory,
    reporter: Reporter,
) -> Published:
    """The floating tags of an unchanged target, onto the index it already has: they move
    (or stay) by the same rules as after a build."""
    host, repo = split_repository(target.repository)
    published = Published(index.digest, VerifiedIndex(index.digest, index.images))
    with registries(host, on_retry=reporter.warning) as client:
        tagger = _Tagger(
            client,
            repo,
            target,
            index.data,
            published,
            lambda message: reporter.notice(f"[{target.name}] {message}"),
        )
        try:
            tagger.write_floating()
        except MabError as exc:
            account = written_account(published.written)
            raise PublishError(f"{exc.message}; {account}", exc.hint) from exc
    return published
