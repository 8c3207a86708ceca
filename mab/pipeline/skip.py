"""Skipping what did not change, with the registry as the cache.

A target is ``unchanged`` when every one of its immutable tags (every tag, when it has
none) already names one image index whose input digest annotation equals this run's and
whose platform entries are exactly the declared platforms. It is then neither built nor
pushed: its floating tags still follow their rules. One GET per tag, no engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from mab.errors import MabError
from mab.oci import Manifest
from mab.pipeline.inputs import INPUTS, TargetInputs
from mab.planning.labels import OCI, stamp
from mab.planning.plan import Plan, TargetPlan
from mab.registry.base import RegistryFactory, split_repository


@dataclass(frozen=True)
class Verdict:
    """Whether a target can be skipped, and why (or why not)."""

    target: str
    unchanged: bool
    why: str
    index: Manifest | None = None


def judge(
    plan: Plan, inputs: Mapping[str, TargetInputs], registries: RegistryFactory
) -> dict[str, Verdict]:
    """A verdict per target of *plan* (``mab plan --check`` shows them)."""
    return {t.name: _judge(t, inputs.get(t.name), registries) for t in plan.targets}


def _judge(target: TargetPlan, inputs: TargetInputs | None, registries: RegistryFactory) -> Verdict:
    name = target.name
    if inputs is None or inputs.combined is None:
        why = inputs.why_not if inputs is not None and inputs.why_not else "no input digest"
        return Verdict(name, False, why)
    tags = target.immutable_tags or target.tags
    host, repo = split_repository(target.repository)
    index: Manifest | None = None
    try:
        with registries(host) as client:
            for tag in tags:
                try:
                    found = client.get_manifest(repo, tag.name)
                except MabError as exc:
                    if "manifest unknown" in exc.message:
                        return Verdict(name, False, f"{tag.name} is not in the registry yet")
                    raise
                if index is not None and found.digest != index.digest:
                    return Verdict(name, False, f"its tags name different indexes ({tag.name})")
                index = found
    except MabError as exc:
        return Verdict(name, False, f"registry not readable: {exc.message}")
    if index is None:
        return Verdict(name, False, "it has no tags")
    if not index.is_index:
        return Verdict(name, False, f"{tags[0].name} is not an image index")
    recorded = index.annotations.get(INPUTS)
    if recorded is None:
        return Verdict(name, False, "the published index records no input digest")
    if recorded != inputs.combined:
        return Verdict(name, False, "its inputs changed since it was published")
    platforms = {d.platform for d in index.images}
    if platforms != set(target.declared_platforms):
        return Verdict(name, False, "the published index has other platforms")
    shown = ", ".join(t.name for t in tags)
    return Verdict(name, True, f"{shown} already name {index.digest[:19]} with these inputs", index)


def with_created(plan: Plan, inputs: Mapping[str, TargetInputs]) -> Plan:
    """Where the run has no source time (no SOURCE_DATE_EPOCH, no commit), each target's
    ``created`` label, index annotation and SOURCE_DATE_EPOCH build arg come from the
    newest modification time among its inputs: the same inputs, the same image."""
    if plan.source_date_epoch is not None:
        return plan
    targets = []
    for target in plan.targets:
        newest = inputs[target.name].newest if target.name in inputs else None
        labels = dict(target.labels)
        if newest is None or OCI + "created" in labels:
            targets.append(target)  # no inputs read, or the user set the label
            continue
        created = stamp(newest)
        args = dict(target.build_args)
        args.setdefault("SOURCE_DATE_EPOCH", str(int(newest.timestamp())))
        targets.append(
            replace(
                target,
                labels=tuple(sorted({**labels, OCI + "created": created}.items())),
                annotations=tuple(
                    sorted({**dict(target.annotations), OCI + "created": created}.items())
                ),
                build_args=tuple(sorted(args.items())),
            )
        )
    return replace(plan, targets=tuple(targets))
