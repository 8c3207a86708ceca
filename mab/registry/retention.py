"""Retention: which tags ``mab clean`` deletes, decided from what the registry holds.

Pure decisions (``decide``) over a snapshot of a repository (``TagState``s), so they can
be tested without a registry, plus ``snapshot`` and ``apply`` that read and delete.

Rules, per tag, in order; the first that applies keeps the tag:

1. it matches a ``keep_tags`` pattern (default: semver releases, latest, environments);
2. its image is one of the newest ``keep_last`` versions (distinct digests, newest by
   created time);
3. its created time is unknown (mab never deletes what it cannot date);
4. it is younger than ``older_than_days``.

A tag no rule keeps is still kept when deleting it would take something kept with it:
the distribution API deletes manifests by digest (every tag on that digest goes), so a
tag that shares its digest with a kept tag stays, and so does a manifest that a kept
index references. Deleting an index also deletes the platform manifests (and attestation
manifests) under it that no kept tag or kept index references, so garbage collection can
free their layers; indexes are deleted before their children.

cosign's signature, attestation and SBOM tags (``sha256-<hex>.sig``) follow the image they
are about instead of the rules: deleted with it, kept otherwise.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mab.config.models import DEFAULT_KEEP_TAGS, Retention
from mab.errors import MabError
from mab.oci import cosign_subject
from mab.registry.client import RegistryClient
from mab.registry.query import created_of, list_tags


@dataclass(frozen=True)
class Policy:
    keep_last: int | None = None
    keep_tags: tuple[str, ...] = DEFAULT_KEEP_TAGS
    older_than_days: float | None = None

    @classmethod
    def from_config(cls, retention: Retention) -> Policy:
        return cls(retention.keep_last, tuple(retention.keep_tags), retention.older_than_days)

    def describe(self) -> str:
        parts = []
        if self.keep_last is not None:
            parts.append(f"keep the newest {self.keep_last}")
        parts.append(f"keep tags matching {len(self.keep_tags)} patterns")
        if self.older_than_days is not None:
            parts.append(f"delete only tags older than {self.older_than_days:g} days")
        return "; ".join(parts)


@dataclass(frozen=True)
class TagState:
    """One tag as the registry serves it now."""

    tag: str
    digest: str
    created: datetime.datetime | None
    children: tuple[str, ...] = ()  # manifests an index references; () for a manifest


@dataclass(frozen=True)
class Decision:
    tag: str
    digest: str
    created: datetime.datetime | None
    keep: bool
    reason: str

    def to_dict(self, now: datetime.datetime) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "digest": self.digest,
            "created": self.created.isoformat() if self.created else None,
            "age_days": round(age_days(self.created, now), 2) if self.created else None,
            "action": "keep" if self.keep else "delete",
            "reason": self.reason,
        }


@dataclass
class CleanupPlan:
    repository: str
    policy: Policy
    now: datetime.datetime
    decisions: list[Decision] = field(default_factory=list)
    delete_manifests: list[str] = field(default_factory=list)  # indexes first

    @property
    def deleted_tags(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    @property
    def kept_tags(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "policy": {
                "keep_last": self.policy.keep_last,
                "keep_tags": list(self.policy.keep_tags),
                "older_than_days": self.policy.older_than_days,
            },
            "tags": [d.to_dict(self.now) for d in self.decisions],
            "delete_manifests": list(self.delete_manifests),
        }


def age_days(created: datetime.datetime, now: datetime.datetime) -> float:
    return (now - created).total_seconds() / 86400.0


def parse_time(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 time as images carry it (nanoseconds and ``Z`` allowed), in UTC."""
    if not text:
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    offset = "+00:00" if zone in (None, "Z") else zone
    try:
        stamp = datetime.datetime.fromisoformat(f"{base}.{micro}{offset}")
    except ValueError:
        return None
    if stamp.year < 1980:  # reproducible builds stamp SOURCE_DATE_EPOCH=0: not a real date
        return None
    return stamp.astimezone(datetime.UTC)


def _first_match(tag: str, patterns: Sequence[str]) -> str | None:
    return next((p for p in patterns if re.fullmatch(p, tag)), None)


def decide(
    repository: str, tags: Sequence[TagState], policy: Policy, now: datetime.datetime
) -> CleanupPlan:
    """Which tags go, and which manifests to delete for them (see the module docstring)."""
    plan = CleanupPlan(repository, policy, now)
    signatures = [t for t in tags if cosign_subject(t.tag) is not None]
    tags = [t for t in tags if cosign_subject(t.tag) is None]
    versions: dict[str, datetime.datetime] = {}
    for t in tags:
        if t.created is not None:
            versions.setdefault(t.digest, t.created)
    newest = sorted(versions, key=lambda d: (versions[d], d), reverse=True)
    newest_kept = set(newest[: policy.keep_last]) if policy.keep_last is not None else set()

    first: list[Decision] = []
    for t in sorted(tags, key=lambda t: t.tag):
        pattern = _first_match(t.tag, policy.keep_tags)
        if pattern is not None:
            reason = f"matches keep pattern '{pattern}'"
        elif t.digest in newest_kept:
            reason = f"one of the newest {policy.keep_last} versions"
        elif t.created is None:
            reason = "created time unknown"
        elif (
            policy.older_than_days is not None and age_days(t.created, now) < policy.older_than_days
        ):
            reason = f"younger than {policy.older_than_days:g} days"
        else:
            first.append(Decision(t.tag, t.digest, t.created, False, _why_delete(policy)))
            continue
        first.append(Decision(t.tag, t.digest, t.created, True, reason))

    by_tag = {t.tag: t for t in tags}
    kept_digests = {d.digest: d.tag for d in first if d.keep}
    kept_children: dict[str, str] = {}
    for d in first:
        if d.keep:
            for child in by_tag[d.tag].children:
                kept_children.setdefault(child, d.tag)

    for d in first:
        if d.keep:
            plan.decisions.append(d)
        elif d.digest in kept_digests:
            plan.decisions.append(
                Decision(
                    d.tag,
                    d.digest,
                    d.created,
                    True,
                    f"same image as kept tag '{kept_digests[d.digest]}' (deleting by digest "
                    "would remove both)",
                )
            )
        elif d.digest in kept_children:
            plan.decisions.append(
                Decision(
                    d.tag,
                    d.digest,
                    d.created,
                    True,
                    f"a platform image of kept index '{kept_children[d.digest]}'",
                )
            )
        else:
            plan.decisions.append(d)

    keep_refs = set(kept_digests) | set(kept_children)
    indexes = list(dict.fromkeys(d.digest for d in plan.deleted_tags))
    children: list[str] = []
    for d in plan.deleted_tags:
        for child in by_tag[d.tag].children:
            if child not in keep_refs and child not in indexes and child not in children:
                children.append(child)
    plan.delete_manifests = indexes + children
    _follow_images(plan, signatures, keep_refs)
    return plan


def _follow_images(plan: CleanupPlan, signatures: Sequence[TagState], kept: set[str]) -> None:
    """A signature (attestation, SBOM) tag goes with the image it is about, else stays."""
    doomed = set(plan.delete_manifests)
    for t in sorted(signatures, key=lambda t: t.tag):
        subject, kind = cosign_subject(t.tag) or ("", "")
        what = {"sig": "signature", "att": "attestations", "sbom": "SBOM"}[kind]
        if subject in doomed:
            reason = f"{what} of deleted image {subject[:19]}"
            plan.decisions.append(Decision(t.tag, t.digest, t.created, False, reason))
            if t.digest not in plan.delete_manifests:
                plan.delete_manifests.append(t.digest)
            continue
        state = "kept" if subject in kept else "untouched"
        reason = f"{what} of {state} image {subject[:19]}"
        plan.decisions.append(Decision(t.tag, t.digest, t.created, True, reason))


def _why_delete(policy: Policy) -> str:
    parts = ["matches no keep pattern"]
    if policy.keep_last is not None:
        parts.append(f"not among the newest {policy.keep_last}")
    if policy.older_than_days is not None:
        parts.append(f"older than {policy.older_than_days:g} days")
    return ", ".join(parts)


# --- reading and deleting -----------------------------------------------------------------


def snapshot(registry: RegistryClient, repo: str) -> list[TagState]:
    """Every tag of *repo* with its digest, created time and (for an index) children."""
    created: dict[str, datetime.datetime | None] = {}
    out: list[TagState] = []
    for info in list_tags(registry, repo):
        if info.digest not in created:
            created[info.digest] = parse_time(created_of(registry, repo, info))
        out.append(TagState(info.tag, info.digest, created[info.digest], info.children))
    return out


def apply(
    registry: RegistryClient,
    repo: str,
    plan: CleanupPlan,
    on_deleted: Callable[[str], None] = lambda digest: None,
) -> list[str]:
    """Delete the plan's manifests, indexes first. Re-checks first that no tag moved onto
    a digest about to be deleted since the plan was made; such a digest is skipped."""
    current = {t.tag: t for t in snapshot(registry, repo)}
    doomed = {d.tag for d in plan.deleted_tags}
    still_wanted: set[str] = set()
    for tag, state in current.items():
        if tag not in doomed:
            still_wanted.add(state.digest)
            still_wanted.update(state.children)
    deleted: list[str] = []
    for digest in plan.delete_manifests:
        if digest in still_wanted:
            continue
        registry.delete_manifest(repo, digest)
        deleted.append(digest)
        on_deleted(digest)
    return deleted


@dataclass(frozen=True)
class Removed:
    """What ``remove`` deleted: the digest, the manifests only it referenced, its tags,
    and cosign's tags (signatures, attestations, SBOMs) about any of those manifests."""

    digest: str
    children: list[str]
    tags: list[str]
    signatures: list[str] = field(default_factory=list)


def remove(
    registry: RegistryClient, repo: str, tag: str | None, digest: str, force: bool
) -> Removed:
    """Delete one manifest or index by digest (``mab registry rm``), and the manifests it
    references that nothing else in the repository does. Refused when another tag points
    at it or a tagged index references it (deleting by digest removes it from all of
    them), unless *force*. cosign's tags about the deleted manifests go with them, as
    ``mab clean`` does: a signature of nothing would stay in the repository for ever."""
    infos = list_tags(registry, repo)
    on_it = [i.tag for i in infos if i.digest == digest]
    others = [t for t in on_it if t != tag]
    parents = [i.tag for i in infos if digest in i.children]
    if (others or parents) and not force:
        why = []
        if others:
            why.append(f"tag(s) {', '.join(others)} also point at it")
        if parents:
            why.append(f"tagged index(es) {', '.join(parents)} reference it")
        raise MabError(
            f"refusing to delete {digest}: {'; '.join(why)}, and deleting by digest "
            "removes it from all of them",
            hint="move or delete those tags first, or pass --force",
        )
    keep: set[str] = set()
    for i in infos:
        if i.digest != digest:
            keep.add(i.digest)
            keep.update(i.children)
    own = next((i for i in infos if i.digest == digest), None)
    children = [c for c in (own.children if own else ()) if c not in keep]
    registry.delete_manifest(repo, digest)
    for child in children:
        registry.delete_manifest(repo, child)
    gone = {digest, *children}
    signatures: list[str] = []
    for info in infos:
        subject = cosign_subject(info.tag)
        if subject is None or subject[0] not in gone:
            continue
        if info.digest not in gone:  # two tags on one manifest: deleted once
            registry.delete_manifest(repo, info.digest)
            gone.add(info.digest)
        signatures.append(info.tag)
    return Removed(digest, children, on_it, signatures)
