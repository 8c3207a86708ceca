"""mab's typed API: what the ``mab`` command calls, and what a Python user calls.

Each function takes what the user named (a builds.yaml, targets, platforms, a version)
and the seams it needs (an ``Engine``, a ``RegistryFactory``, a ``Reporter``), and
returns typed results; it prints nothing and never exits. The CLI (``mab.cli``) parses
options, calls one of these inside its error guard, and formats the result.

    from mab import api
    loaded = api.load(Path("builds.yaml"), version="1.2.3")
    report = api.build(loaded, api.docker_engine(), reporter)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mab import init as generator
from mab import lint as rules
from mab.config.defaults import default_registry
from mab.config.models import Project, load_project
from mab.engine.base import Engine
from mab.errors import EngineError, UsageError
from mab.pipeline import digests
from mab.pipeline.audit import run_verify
from mab.pipeline.build import run_build
from mab.pipeline.merge import run_merge
from mab.pipeline.promote import Promotion
from mab.pipeline.promote import promote as run_promote
from mab.pipeline.results import Reporter, RunReport
from mab.planning import git, render
from mab.planning.cache import parse_spec
from mab.planning.plan import Plan, TargetPlan, make_plan
from mab.planning.tags import TagContext
from mab.registry.base import RegistryFactory, split_repository
from mab.registry.client import RegistryClient
from mab.registry.login import login_for_build
from mab.registry.query import client as registry_client
from mab.registry.retention import CleanupPlan, Policy, decide, snapshot


@dataclass(frozen=True)
class Loaded:
    """A validated builds.yaml and the plan made from it for one run."""

    project: Project
    plan: Plan


def docker_engine() -> Engine:
    """The real engine: docker and buildx through python-on-whales."""
    from mab.engine.whales import DockerEngine  # noqa: PLC0415 - python-on-whales takes ~0.35 s to import

    return DockerEngine()


def tag_context(project: Project, version: str | None, env: str | None) -> TagContext:
    """Everything tag rules and labels read, read once for the whole run."""
    info = git.read(project.base_dir)
    sde = os.environ.get("SOURCE_DATE_EPOCH", "")
    epoch = int(sde) if sde.isdigit() else (info.commit_time if info and info.commit_time else None)
    return TagContext(
        now=datetime.now(UTC),
        version=version or os.environ.get("MAB_VERSION") or None,
        environment=env or os.environ.get("MAB_ENV") or None,
        git=info,
        project_dir=project.base_dir,
        source_date_epoch=epoch,
    )


def load(
    file: Path,
    targets: Sequence[str] = (),
    platforms: Sequence[str] = (),
    *,
    version: str | None = None,
    env: str | None = None,
) -> Loaded:
    """Validate *file* and plan the run (no engine, no registry)."""
    project = load_project(file)
    plan = make_plan(
        project,
        targets,
        platforms,
        default_registry=default_registry(),
        context=tag_context(project, version, env),
    )
    return Loaded(project, plan)


def with_options(
    plan: Plan,
    *,
    cache_from: Sequence[str] | None = None,
    cache_to: str | None = None,
    builder: str | None = None,
) -> Plan:
    """*plan* with ``--cache-from``/``--cache-to`` (buildx syntax) and ``--builder``
    (``current``: the current builder) applied."""
    if cache_from is not None or cache_to is not None:
        try:
            override = (
                tuple(parse_spec(s) for s in cache_from or ()),
                parse_spec(cache_to) if cache_to else None,
            )
        except ValueError as exc:
            raise UsageError(f"--cache-from/--cache-to: {exc}") from None
        plan = replace(plan, cache_override=override)
    if builder is not None:
        plan = plan.with_builder(None if builder == "current" else builder)
    return plan


def login(loaded: Loaded, engine: Engine) -> list[str]:
    """``docker login`` to the plan's registry with builds.yaml's credentials
    (``registries:``), before anything is pushed. Returns the hosts logged in to."""
    return login_for_build(loaded.project.config, [loaded.plan.registry_host], engine.login)


def build(
    loaded: Loaded,
    engine: Engine,
    reporter: Reporter,
    *,
    registries: RegistryFactory = RegistryClient,
    no_cache: bool = False,
    by_digest_only: bool = False,
) -> RunReport:
    """``mab build``: build, push by digest, publish and verify every target of the plan
    (with *by_digest_only*, one job of a split build: push by digest and stop)."""
    return run_build(
        loaded.plan,
        engine,
        reporter,
        registries=registries,
        no_cache=no_cache,
        by_digest_only=by_digest_only,
    )


def write_digests(report: RunReport, folder: Path) -> list[Path]:
    """The ``TARGET@PLATFORM.json`` files of a split build's job, for ``mab merge``."""
    records = [
        digests.DigestRecord(t.name, p.platform, t.repository, p.pushed_digest)
        for t in report.targets
        for p in t.platforms
        if p.pushed_digest
    ]
    return digests.write(records, folder)


def merge(
    loaded: Loaded,
    folder: Path,
    engine: Engine,
    reporter: Reporter,
    *,
    registries: RegistryFactory = RegistryClient,
) -> RunReport:
    """``mab merge``: publish the targets whose every platform a split build pushed."""
    records = digests.read(folder)
    return run_merge(loaded.plan, engine, records, reporter, registries=registries)


def verify(
    loaded: Loaded, engine: Engine, *, registries: RegistryFactory = RegistryClient
) -> RunReport:
    """``mab verify``: re-check every published target without building."""
    return run_verify(loaded.plan, engine, registries=registries)


def promote(
    loaded: Loaded,
    source: str,
    to: Sequence[str],
    engine: Engine,
    *,
    to_registry: str | None = None,
    registries: RegistryFactory = RegistryClient,
) -> Promotion:
    """``mab promote``: new tags for a published index, no rebuild, verified."""
    return run_promote(
        engine,
        loaded.plan.targets[0],
        source,
        to,
        registries=registries,
        to_registry=to_registry,
    )


def rendered(loaded: Loaded) -> list[tuple[str, str]]:
    """(target, Dockerfile text) for every template target of the plan."""
    texts = [(t.name, render.render_target(t)) for t in loaded.plan.targets]
    return [(name, text) for name, text in texts if text is not None]


# --- mab lint -------------------------------------------------------------------------


@dataclass
class LintResult:
    findings: list[rules.Finding]
    ran_hadolint: bool
    buildx: str  # "ran", "off", or why BuildKit's checks could not run

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def lint(loaded: Loaded, *, hadolint: bool = True, engine: Engine | None = None) -> LintResult:
    """Findings for every target: mab's rules, hadolint's (when installed and *hadolint*)
    and BuildKit's build checks (with an *engine*)."""
    program = rules.hadolint_path() if hadolint else None
    findings: list[rules.Finding] = []
    buildx = "ran" if engine is not None else "off"
    for target in loaded.plan.targets:
        text_rendered = render.render_target(target)
        if text_rendered is not None:
            text = text_rendered
            name = f"{target.name}.Dockerfile (rendered from {_shown(target.source.path)})"
        else:
            text = target.source.path.read_text(encoding="utf-8")
            name = _shown(target.source.path)
        multi = len(target.declared_platforms) > 1
        found = rules.lint_dockerfile(text, name, multi_platform=multi)
        if program is not None:
            found += rules.hadolint_findings(text, name, program)
        if engine is not None and buildx == "ran":
            try:
                found += rules.buildx_findings(_buildx_checks(engine, target, text_rendered), name)
            except EngineError as exc:
                buildx = exc.message  # the same for every target: stop asking
        findings += sorted(found, key=lambda f: f.line)  # targets in builds.yaml's order
    return LintResult(findings, program is not None, buildx)


def _buildx_checks(engine: Engine, target: TargetPlan, text: str | None) -> dict[str, Any]:
    """BuildKit's checks on the target's Dockerfile (a rendered one via a temp file)."""
    with tempfile.TemporaryDirectory(prefix="mab-lint-") as tmp:
        path = target.source.path
        if text is not None:
            path = Path(tmp) / "Dockerfile"
            path.write_text(text, encoding="utf-8")
        return engine.build_checks(
            path, target.context, dict(target.build_args), dict(target.build_contexts)
        )


# --- mab init ---------------------------------------------------------------------------


def init_files(
    folder: Path, template: str | None, force: bool
) -> tuple[generator.Detection, dict[Path, str]]:
    """What ``mab init`` would write, checked (unknown stack, existing files)."""
    return generator.plan_files(folder, template, force)


# --- mab builders -----------------------------------------------------------------------


@dataclass(frozen=True)
class BuilderRow:
    name: str
    driver: str
    endpoint: str | None
    native: tuple[str, ...]
    emulated: tuple[str, ...]
    offered: tuple[str, ...]
    state: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "endpoint": self.endpoint,
            "native": list(self.native),
            "emulated": list(self.emulated),
            "offered": list(self.offered),
            "state": self.state,
        }


def builders(project: Project, engine: Engine) -> list[BuilderRow]:
    """Declared builders (native platforms) merged with what buildx reports (state, every
    platform offered; offered but not native means emulated). Without declared builders,
    every builder buildx knows."""
    declared = list(project.config.builders)
    known = {b.name: b for b in engine.builders()}
    rows: list[BuilderRow] = []
    for name in [b.name for b in declared] or list(known):
        spec = next((b for b in declared if b.name == name), None)
        info = known.get(name)
        native = tuple(spec.platforms) if spec else ()
        offered = tuple(info.platforms) if info else ()
        rows.append(
            BuilderRow(
                name=name,
                driver=spec.driver if spec else (info.driver if info else ""),
                endpoint=spec.endpoint if spec else None,
                native=native,
                emulated=tuple(p for p in offered if native and p not in native),
                offered=offered,
                state=info.status if info else "missing (mab builders create)",
            )
        )
    return rows


def create_builders(project: Project, engine: Engine) -> list[tuple[str, bool]]:
    """Create every declared builder buildx does not know: (name, created) per builder."""
    known = {b.name for b in engine.builders()}
    done: list[tuple[str, bool]] = []
    for spec in project.config.builders:
        if spec.name in known:
            done.append((spec.name, False))
            continue
        engine.create_builder(
            spec.name, spec.driver, spec.endpoint, dict(spec.driver_opts), list(spec.platforms)
        )
        done.append((spec.name, True))
    return done


# --- mab clean --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cleanup:
    host: str
    repo: str
    plan: CleanupPlan


def cleanup_plans(file: Path, targets: Sequence[str] = ()) -> tuple[list[Cleanup], list[str]]:
    """Each selected target's retention decisions (read from its registry), and the
    targets without a retention policy."""
    config = load_project(file).config
    unknown = [t for t in targets if t not in config.targets]
    if unknown:
        raise UsageError(
            f"no target named {', '.join(unknown)} in {file}",
            hint=f"targets: {', '.join(config.targets)}",
        )
    registry = config.registry or default_registry()
    now = datetime.now(UTC)
    plans: list[Cleanup] = []
    skipped: list[str] = []
    for name, target in config.targets.items():
        if targets and name not in targets:
            continue
        if target.retention is None:
            skipped.append(name)
            continue
        host, repo = split_repository(f"{registry}/{name}")
        with registry_client(host) as reg:
            states = snapshot(reg, repo)
        policy = Policy.from_config(target.retention)
        plans.append(Cleanup(host, repo, decide(f"{host}/{repo}", states, policy, now)))
    return plans, skipped
