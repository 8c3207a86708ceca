"""``mab verify``: re-check what the registry serves for every target, without building."""

from __future__ import annotations

from mab.engine.base import Engine
from mab.errors import MabError
from mab.pipeline.gates import verify_gates
from mab.pipeline.results import JobStatus, PlatformResult, RunReport, TargetResult, TargetStatus
from mab.pipeline.sizes import fill_sizes
from mab.pipeline.verify import verify_target
from mab.planning.plan import Plan
from mab.registry.base import RegistryFactory
from mab.signing import Cosign, SignerFactory


def run_verify(
    plan: Plan, engine: Engine, *, registries: RegistryFactory, signers: SignerFactory = Cosign
) -> RunReport:
    """Re-check published targets without building (``mab verify``): the index, and the
    publish gates' signatures and attestations; every failed check is reported."""
    report = RunReport(command="verify", registry=plan.registry)
    for target in plan.targets:
        result = TargetResult(
            target.name,
            target.repository,
            target.tag_names,
            [PlatformResult(target.name, p) for p in target.declared_platforms],
        )
        report.targets.append(result)
        try:
            verified, elsewhere = verify_target(engine, target)
            for r in result.platforms:
                r.status = JobStatus.BUILT
            fill_sizes(registries, target, result, verified)
            result.held = {ref: f"points at {d[:19]}" for ref, d in elsewhere.items()}
        except MabError as exc:
            result.status = TargetStatus.FAILED
            problems = verify_gates(target, result, registries, signers)
            result.error = "; ".join([exc.message, *problems])
            continue
        problems = verify_gates(target, result, registries, signers)
        if problems:
            result.status = TargetStatus.FAILED
            result.error = "; ".join(problems)
            continue
        result.index_digest = verified.digest
        result.status = TargetStatus.VERIFIED
    return report
