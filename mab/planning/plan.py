"""Planning: expand a validated builds.yaml into target x platform x tag work.

Pure functions over frozen types; no engine, no file writes. The plan is what
``mab plan`` prints and what the build stage executes.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mab.config.models import (
    DEFAULT_REGISTRY,
    BuilderConfig,
    BuildsConfig,
    CacheConfig,
    SemverOptions,
    SemverRule,
    TagItem,
    TargetConfig,
)
from mab.config.project import Project
from mab.config.yamlsource import Loc
from mab.errors import ConfigError, ConfigIssue, UsageError
from mab.planning import labels, templates
from mab.planning.supply import GatePlan, gates_for
from mab.planning.tags import (
    PlannedTag,
    TagContext,
    TagRuleError,
    TagSet,
    parse_version,
    resolve_version,
    tag_set,
)
from mab.platforms import Platform, PlatformValueError


@dataclass(frozen=True)
class DockerfileSource:
    """Where a target's Dockerfile comes from: a file as is, or a rendered template."""

    kind: Literal["file", "template"]
    path: Path
    template: str | None = None
    vars: tuple[tuple[str, Any], ...] = ()

    def describe(self, base: Path) -> str:
        shown = _relative(self.path, base)
        return f"template {self.template} ({shown})" if self.kind == "template" else shown


@dataclass(frozen=True)
class SecretSource:
    """A build secret by reference: a file or an environment variable. mab never reads the
    value; buildx does (``--secret id=ID,src=FILE`` / ``id=ID,env=NAME``)."""

    id: str
    file: Path | None = None
    env: str | None = None

    def spec(self) -> str:
        return f"id={self.id},src={self.file}" if self.file else f"id={self.id},env={self.env}"

    def as_json(self) -> dict[str, str]:
        return {"file": str(self.file)} if self.file else {"env": str(self.env)}


@dataclass(frozen=True)
class TargetPlan:
    name: str
    repository: str
    context: Path
    source: DockerfileSource
    platforms: tuple[Platform, ...]
    declared_platforms: tuple[Platform, ...]
    tags: tuple[PlannedTag, ...]
    build_args: tuple[tuple[str, str], ...]
    build_contexts: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    stage: str | None
    annotations: tuple[tuple[str, str], ...] = ()
    version: str | None = None
    size_budget: int | None = None  # bytes, compressed, per platform image
    secrets: tuple[SecretSource, ...] = ()
    # what the run should say about its tags (a rule that made none, a tag cut short)
    tag_notes: tuple[str, ...] = ()
    # signing, attestations, scan and smoke test: what stands between its images and its tags
    gates: GatePlan = field(default_factory=GatePlan)

    @property
    def tag_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tags)

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(f"{self.repository}:{tag.name}" for tag in self.tags)

    @property
    def immutable_tags(self) -> tuple[PlannedTag, ...]:
        return tuple(t for t in self.tags if not t.floating)

    @property
    def floating_tags(self) -> tuple[PlannedTag, ...]:
        return tuple(t for t in self.tags if t.floating)

    @property
    def partial(self) -> bool:
        """True when the run builds fewer platforms than the target declares."""
        return self.platforms != self.declared_platforms


@dataclass(frozen=True)
class Route:
    """Which builder builds a platform, and whether it runs that platform natively."""

    builder: str | None  # None: the current buildx builder
    driver: str | None = None  # None: whatever the current builder's driver is
    native: bool | None = None  # None: unknown (no builders declared)
    note: str = ""

    def describe(self) -> str:
        name = self.builder or "(current)"
        if self.native is None:
            return name
        return f"{name} ({'native' if self.native else 'emulated'})"


def route(platform: Platform, builders: Sequence[BuilderConfig], default: str | None) -> Route:
    """Send *platform* to a builder that serves it natively, else to one that emulates it."""
    if not builders:
        return Route(default)
    text = str(platform)
    for b in builders:
        if text in b.platforms:
            return Route(b.name, b.driver, native=True)
    emulator = next((b for b in builders if text in b.emulates), builders[0])
    return Route(
        emulator.name,
        emulator.driver,
        native=False,
        note=f"no builder serves {text} natively: it is emulated (QEMU) on '{emulator.name}', "
        "expect compile steps to run 5-20x slower",
    )


@dataclass(frozen=True)
class Job:
    """One platform image of one target: the unit of work handed to a builder."""

    target: TargetPlan
    platform: Platform
    route: Route = Route(None)

    @property
    def key(self) -> str:
        return f"{self.target.name} {self.platform}"


@dataclass(frozen=True)
class Plan:
    project_file: Path
    registry: str
    registry_is_default: bool
    builder: str | None
    concurrency: int
    targets: tuple[TargetPlan, ...]
    source_date_epoch: int | None = None
    cache: CacheConfig = field(default_factory=CacheConfig)
    # --cache-from/--cache-to given on the command line replace the configured cache
    cache_override: tuple[tuple[dict[str, str], ...], dict[str, str] | None] | None = None

    routes: tuple[tuple[Platform, Route], ...] = ()

    @property
    def notes(self) -> tuple[str, ...]:
        """What the run should say about its tags, once each (a shared defaults.tags rule
        that made no tag is said once, not once per target)."""
        return tuple(dict.fromkeys(n for t in self.targets for n in t.tag_notes))

    @property
    def jobs(self) -> tuple[Job, ...]:
        return tuple(Job(t, p, self.route_for(p)) for t in self.targets for p in t.platforms)

    def with_builder(self, builder: str | None) -> Plan:
        """Every platform to one builder (None: the current one), no routing."""
        return replace(
            self, builder=builder, routes=tuple((p, Route(builder)) for p, _ in self.routes)
        )

    def route_for(self, platform: Platform) -> Route:
        return next((r for p, r in self.routes if p == platform), Route(self.builder))

    @property
    def registry_host(self) -> str:
        return self.registry.split("/", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        base = self.project_file.parent
        return {
            "file": str(self.project_file),
            "registry": self.registry,
            "registry_is_default": self.registry_is_default,
            "builder": self.builder or "(current)",
            "routes": {
                str(p): {
                    "builder": r.builder or "(current)",
                    "native": r.native,
                    "note": r.note or None,
                }
                for p, r in self.routes
            },
            "concurrency": self.concurrency,
            "targets": [
                {
                    "name": t.name,
                    "repository": t.repository,
                    "context": _relative(t.context, base),
                    "dockerfile": {
                        "kind": t.source.kind,
                        "path": _relative(t.source.path, base),
                        "template": t.source.template,
                        "vars": dict(t.source.vars),
                    },
                    "stage": t.stage,
                    "platforms": [str(p) for p in t.platforms],
                    "declared_platforms": [str(p) for p in t.declared_platforms],
                    "tags": [
                        {"name": tag.name, "rule": tag.rule, "kind": tag.kind} for tag in t.tags
                    ],
                    "refs": list(t.refs),
                    "build_args": dict(t.build_args),
                    "build_contexts": dict(t.build_contexts),
                    "labels": dict(t.labels),
                    "annotations": dict(t.annotations),
                    "secrets": {sec.id: sec.as_json() for sec in t.secrets},
                    "version": t.version,
                    "gates": t.gates.as_json(),
                }
                for t in self.targets
            ],
        }


def make_plan(
    project: Project,
    only_targets: Sequence[str] = (),
    only_platforms: Sequence[str] = (),
    default_registry: str = DEFAULT_REGISTRY,
    context: TagContext | None = None,
    *,
    require_tags: bool = True,
) -> Plan:
    """Expand *project* into a Plan, narrowed to the named targets and platforms.

    *default_registry* is used when builds.yaml names none (the CLI reads it from
    ``MAB_DEFAULT_REGISTRY``; planning itself reads no environment). With
    *require_tags*, a target whose rules make no tag in this run is an error (it could
    only be published by digest); a command that writes none of the target's own tags
    (``mab promote``) plans without that check.
    """
    cfg = project.config
    selected = selection(cfg, only_targets, only_platforms, project.path)

    registry = cfg.registry or default_registry
    context = context or TagContext.empty()
    base = project.base_dir
    contexts = tuple(sorted(cfg.base_images.items()))
    plans: list[TargetPlan] = []
    # thousands of targets share a handful of context folders: each is resolved once
    context_dirs: dict[str, Path] = {}
    for name, declared, chosen in selected:
        target = cfg.targets[name]
        version = _version(target, cfg, context)
        made = _tags(project, name, context, require_tags)
        context_dir = context_dirs.get(target.context)
        if context_dir is None:
            context_dir = context_dirs[target.context] = (base / target.context).resolve()
        if target.template is not None:
            found = templates.find_template(
                target.template, base, allow_external=cfg.allow_external_templates
            )
            assert found is not None, "load_project checked templates exist"
            source = DockerfileSource(
                "template", found, target.template, tuple(sorted(target.vars.items()))
            )
        else:
            source = DockerfileSource("file", context_dir / (target.dockerfile or "Dockerfile"))
        plans.append(
            TargetPlan(
                name=name,
                repository=f"{registry}/{name}",
                context=context_dir,
                source=source,
                platforms=chosen,
                declared_platforms=declared,
                tags=made.tags,
                tag_notes=made.notes,
                build_args=tuple(sorted(target.args.items())),
                build_contexts=tuple(
                    (image, f"docker-image://{mirror}") for image, mirror in contexts
                ),
                labels=tuple(
                    sorted(
                        labels.image_labels(
                            name, context, version, cfg.defaults.labels, target.labels
                        ).items()
                    )
                ),
                annotations=tuple(sorted(labels.oci_annotations(name, context, version).items())),
                version=version,
                size_budget=int(target.size_budget) if target.size_budget else None,
                secrets=tuple(
                    SecretSource(sid, file=base / sec.file if sec.file else None, env=sec.env)
                    for sid, sec in sorted(target.secrets.items())
                ),
                stage=target.stage,
                gates=gates_for(cfg, name, base),
            )
        )
    return Plan(
        project_file=project.path,
        registry=registry,
        registry_is_default=cfg.registry is None,
        builder=cfg.builder,
        concurrency=cfg.concurrency,
        targets=tuple(plans),
        source_date_epoch=context.source_date_epoch,
        cache=cfg.cache,
        routes=tuple(
            (p, route(p, cfg.builders, cfg.builder))
            for p in sorted({p for t in plans for p in t.platforms})
        ),
    )


Selected = list[tuple[str, tuple[Platform, ...], tuple[Platform, ...]]]


def selection(
    config: BuildsConfig,
    only_targets: Sequence[str] = (),
    only_platforms: Sequence[str] = (),
    source: Path | None = None,
) -> Selected:
    """(name, declared platforms, platforms to build) of each selected target that builds
    something, in builds.yaml's order; unknown targets and platforms are UsageErrors."""
    names = list(config.targets)
    where = f" in {source}" if source else ""
    for wanted in only_targets:
        if wanted not in config.targets:
            close = difflib.get_close_matches(wanted, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UsageError(f"no target '{wanted}'{where}{hint} (targets: {', '.join(names)})")
    only: set[Platform] = set()
    for text in only_platforms:
        try:
            only.add(Platform.parse(text))
        except PlatformValueError as exc:
            raise UsageError(f"--platform: {exc}") from None
    chosen: Selected = []
    parsed: dict[tuple[str, ...], tuple[Platform, ...]] = {}  # most targets share one list
    for name, target in config.targets.items():
        if only_targets and name not in only_targets:
            continue
        texts = tuple(target.platforms or config.platforms)
        declared = parsed.get(texts)
        if declared is None:
            declared = parsed[texts] = _unique(Platform.parse(p) for p in texts)
        kept = tuple(p for p in declared if not only or p in only)
        if kept:
            chosen.append((name, declared, kept))
    if not chosen:
        wanted = ", ".join(sorted(str(p) for p in only)) or "any platform"
        raise UsageError(f"nothing to build: no selected target declares {wanted}")
    return chosen


def _rules(project: Project, name: str) -> tuple[Loc, Sequence[TagItem]]:
    """A target's tag rules and where they are written: its own, else the defaults."""
    target = project.config.targets[name]
    if target.tags is not None:
        return ("targets", name, "tags"), target.tags
    if project.config.defaults.tags is not None:
        return ("defaults", "tags"), project.config.defaults.tags
    return ("targets", name), ["latest"]


def _tags(project: Project, name: str, context: TagContext, required: bool = True) -> TagSet:
    """A target's tags. A rule may make none in a run (a semver rule with no version, a
    branch rule on a pull request); the run fails only when the target gets no tag at all,
    as it could then be published by digest only."""
    loc, rules = _rules(project, name)
    try:
        made = tag_set(rules, context, name)
    except TagRuleError as exc:
        where = (*loc, exc.index) if loc[-1] == "tags" else loc
        raise ConfigError(
            [ConfigIssue(project.path, project.locate(where), f"targets.{name}", str(exc))]
        ) from None
    if not made.tags and required:
        why = "; ".join(made.notes) or "its rules make none in this run"
        raise ConfigError(
            [ConfigIssue(project.path, project.locate(loc), f"targets.{name}", f"no tag: {why}")],
            hint="add a rule every run satisfies (a git sha: `- git: {}`), or pass --version",
        )
    return made


def _version(target: TargetConfig, cfg: BuildsConfig, context: TagContext) -> str | None:
    """The version a target's labels carry: its semver rule's, else the run's, if any."""
    rules = target.tags if target.tags is not None else (cfg.defaults.tags or [])
    options = next((r.semver for r in rules if isinstance(r, SemverRule)), SemverOptions())
    text, _ = resolve_version(options, context)
    parsed = parse_version(text) if text else None
    return str(parsed) if parsed else None


def _unique(items: Any) -> tuple[Platform, ...]:
    return tuple(dict.fromkeys(items))


@functools.lru_cache(maxsize=4096)
def _relative(path: Path, base: Path) -> str:
    """*path* relative to *base* when under it; cached, as thousands of targets share a
    handful of folders and resolving and ``relative_to`` are slow."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
