"""Planning: expand a validated builds.yaml into target x platform x tag work.

Pure functions over frozen types; no engine, no file writes. The plan is what
``mab plan`` prints and what the build stage executes.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mab import templates
from mab.config import DEFAULT_REGISTRY, Project
from mab.errors import UsageError
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
class TargetPlan:
    name: str
    repository: str
    context: Path
    source: DockerfileSource
    platforms: tuple[Platform, ...]
    declared_platforms: tuple[Platform, ...]
    tags: tuple[str, ...]
    build_args: tuple[tuple[str, str], ...]
    build_contexts: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    stage: str | None

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(f"{self.repository}:{tag}" for tag in self.tags)

    @property
    def partial(self) -> bool:
        """True when the run builds fewer platforms than the target declares."""
        return self.platforms != self.declared_platforms


@dataclass(frozen=True)
class Job:
    """One platform image of one target: the unit of work handed to a builder."""

    target: TargetPlan
    platform: Platform

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

    @property
    def jobs(self) -> tuple[Job, ...]:
        return tuple(Job(t, p) for t in self.targets for p in t.platforms)

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
                    "tags": list(t.tags),
                    "refs": list(t.refs),
                    "build_args": dict(t.build_args),
                    "build_contexts": dict(t.build_contexts),
                    "labels": dict(t.labels),
                }
                for t in self.targets
            ],
        }


def make_plan(
    project: Project,
    only_targets: Sequence[str] = (),
    only_platforms: Sequence[str] = (),
    default_registry: str = DEFAULT_REGISTRY,
) -> Plan:
    """Expand *project* into a Plan, narrowed to the named targets and platforms.

    *default_registry* is used when builds.yaml names none (the CLI reads it from
    ``MAB_DEFAULT_REGISTRY``; planning itself reads no environment).
    """
    cfg = project.config
    names = list(cfg.targets)
    for wanted in only_targets:
        if wanted not in cfg.targets:
            close = difflib.get_close_matches(wanted, names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UsageError(
                f"no target '{wanted}' in {project.path}{hint} (targets: {', '.join(names)})"
            )
    platform_filter: set[Platform] = set()
    for text in only_platforms:
        try:
            platform_filter.add(Platform.parse(text))
        except PlatformValueError as exc:
            raise UsageError(f"--platform: {exc}") from None

    registry = cfg.registry or default_registry
    base = project.base_dir
    contexts = tuple(sorted(cfg.base_images.items()))
    plans: list[TargetPlan] = []
    for name, target in cfg.targets.items():
        if only_targets and name not in only_targets:
            continue
        declared = _unique(Platform.parse(p) for p in (target.platforms or cfg.platforms))
        chosen = tuple(p for p in declared if not platform_filter or p in platform_filter)
        if not chosen:
            continue
        context = (base / target.context).resolve()
        if target.template is not None:
            found = templates.find_template(target.template, base)
            assert found is not None, "load_project checked templates exist"
            source = DockerfileSource(
                "template", found, target.template, tuple(sorted(target.vars.items()))
            )
        else:
            source = DockerfileSource("file", context / (target.dockerfile or "Dockerfile"))
        plans.append(
            TargetPlan(
                name=name,
                repository=f"{registry}/{name}",
                context=context,
                source=source,
                platforms=chosen,
                declared_platforms=declared,
                tags=tuple(dict.fromkeys(target.tags)),
                build_args=tuple(sorted(target.args.items())),
                build_contexts=tuple(
                    (image, f"docker-image://{mirror}") for image, mirror in contexts
                ),
                labels=tuple(sorted(target.labels.items())),
                stage=target.stage,
            )
        )
    if not plans:
        wanted_p = ", ".join(sorted(str(p) for p in platform_filter)) or "any platform"
        raise UsageError(f"nothing to build: no selected target declares {wanted_p}")
    return Plan(
        project_file=project.path,
        registry=registry,
        registry_is_default=cfg.registry is None,
        builder=cfg.builder,
        concurrency=cfg.concurrency,
        targets=tuple(plans),
    )


def _unique(items: Any) -> tuple[Platform, ...]:
    return tuple(dict.fromkeys(items))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
