"""``mab merge``: publish the targets of a split build from its jobs' digest files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from mab.engine.base import Engine
from mab.pipeline.build import prepare, publish_target, render_dockerfiles
from mab.pipeline.digests import DigestRecord
from mab.pipeline.gates import check_gate_tools
from mab.pipeline.results import (
    JobStatus,
    PlatformResult,
    Reporter,
    RunReport,
    TargetResult,
    TargetStatus,
)
from mab.planning.plan import Plan
from mab.platforms import Platform
from mab.registry.base import RegistryFactory
from mab.scratch import scratch
from mab.signing import Cosign, SignerFactory


def run_merge(
    plan: Plan,
    engine: Engine,
    records: Sequence[DigestRecord],
    reporter: Reporter,
    *,
    registries: RegistryFactory,
    force: bool = False,
    clock: Callable[[], float] = time.monotonic,
    signers: SignerFactory = Cosign,
) -> RunReport:
    """Publish targets from the digest files of a split build (``mab merge``): the same
    rules as ``mab build``: a target is published only when every declared platform is
    there, its index is written by digest, immutable tags, verify, then floating tags.

    The publish gates run here (the build jobs push by digest only), so their tools and
    keys are checked first, as ``mab build``'s preflight does: a missing key or cosign
    fails the merge before any index is written, naming every problem at once."""
    started = clock()
    for tool in check_gate_tools(plan, os.environ, signers):
        reporter.notice(f"publish gates: {tool}")
    report = RunReport(command="merge", registry=plan.registry)
    with scratch("mab-render-") as tmp:  # the same inputs the jobs recorded, for the index
        plan, inputs = prepare(plan, render_dockerfiles(plan, Path(tmp)), registries, reporter)
    by_target: dict[str, dict[Platform, DigestRecord]] = {}
    for record in records:
        by_target.setdefault(record.target, {})[record.platform] = record
    unknown = sorted(set(by_target) - {t.name for t in plan.targets})
    if unknown:
        reporter.warning(f"digest files for targets not selected here: {', '.join(unknown)}")
    for target in plan.targets:
        found = by_target.get(target.name, {})
        result = TargetResult(target.name, target.repository, target.tag_names)
        for platform in target.declared_platforms:
            entry = PlatformResult(target.name, platform)
            got = found.get(platform)
            if got is not None and got.repository == target.repository:
                entry.status, entry.pushed_digest = JobStatus.BUILT, got.digest
            elif got is not None:
                entry.status = JobStatus.FAILED
                entry.error = f"built into {got.repository}, not {target.repository}"
            else:
                entry.status = JobStatus.FAILED
                entry.error = "no digest file (did its build job fail?)"
            result.platforms.append(entry)
        report.targets.append(result)
        missing = [r for r in result.platforms if r.status is not JobStatus.BUILT]
        if missing:
            result.status = TargetStatus.FAILED
            result.error = "; ".join(f"{r.platform}: {r.error}" for r in missing) + (
                "; no tag was written or moved"
            )
            reporter.target_finished(result)
            continue
        full = replace(target, platforms=target.declared_platforms)
        publish_target(
            engine,
            full,
            result,
            reporter,
            registries,
            force=force,
            inputs=inputs.get(target.name),
            signers=signers,
        )
    report.duration = clock() - started
    return report
