"""Preflight: everything checked before the first build starts, so a missing builder,
emulator, registry or secret fails in seconds with the fix, not after minutes of building."""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mab.engine.base import BuilderInfo, Engine
from mab.errors import BuildError, EngineError
from mab.pipeline import emulation
from mab.pipeline.gates import check_gate_tools
from mab.pipeline.results import Reporter
from mab.planning.plan import Plan
from mab.platforms import Platform
from mab.registry import server
from mab.signing import Cosign, SignerFactory


@dataclass(frozen=True)
class Unreachable:
    """A builder the plan routes platforms to that did not answer (a remote BuildKit that
    is down): only its platforms fail, with *message*; the other builders' are built."""

    name: str
    message: str


Builders = dict[str | None, BuilderInfo | Unreachable]


def preflight(
    plan: Plan, engine: Engine, reporter: Reporter, *, signers: SignerFactory | None = Cosign
) -> Builders:
    """Check every builder the plan routes to (the engine itself only when one does not
    answer: ``docker version`` would cost every run a process), the registry and (unless
    *signers* is None: nothing is published) the publish gates' tools and keys, before any
    work starts. Returns what each builder reported, by the name the plan uses."""
    check_secrets(plan, os.environ)
    for tool in check_gate_tools(plan, os.environ, signers) if signers is not None else ():
        reporter.notice(f"publish gates: {tool}")
    wanted: dict[str | None, set[str]] = {}
    for job in plan.jobs:
        wanted.setdefault(job.route.builder, set()).add(str(job.platform))
    answers = _inspect(engine, list(wanted))
    down = [a for a in answers.values() if isinstance(a, EngineError)]
    if down:
        # the engine itself down explains every builder at once: say that first
        engine.server_version()
    builders: Builders = {}
    for name, platforms in wanted.items():
        answer = answers[name]
        if isinstance(answer, EngineError):
            if len(wanted) == 1:
                raise answer
            builders[name] = Unreachable(str(name), answer.message)
            reporter.warning(
                f"{answer.message}; its platforms ({', '.join(sorted(platforms))}) fail, the "
                "other builders' are built"
            )
            continue
        builders[name] = _check_builder(engine, answer, platforms, reporter)
    if len(down) == len(wanted):  # nothing could be built: say so once, as for one builder
        raise down[0]
    for _, route in plan.routes:
        if route.note:
            reporter.warning(route.note)
    local = server.ensure_local(plan.registry_host, engine)
    if local is not None and local.started:
        reporter.notice(
            f"started a local registry at {local.host} with {local.how}; "
            f"its data lives in {local.data_dir}"
        )
    return builders


def _inspect(
    engine: Engine, names: list[str | None]
) -> dict[str | None, BuilderInfo | EngineError]:
    """Every builder's answer, asked at once (each is a ``buildx ls`` process of a few
    tenths of a second), in *names*' order. Each process lists every builder, so with
    several builders the same list is read several times: one list for all of them would
    need an Engine call of its own."""
    if len(names) == 1:
        return {names[0]: _answer(engine, names[0])}
    with ThreadPoolExecutor(max_workers=min(len(names), 4)) as pool:
        futures = [pool.submit(_answer, engine, name) for name in names]
        return {name: future.result() for name, future in zip(names, futures, strict=True)}


def _answer(engine: Engine, name: str | None) -> BuilderInfo | EngineError:
    try:
        return engine.builder(name)
    except EngineError as exc:
        return exc


def _check_builder(
    engine: Engine, builder: BuilderInfo, wanted: set[str], reporter: Reporter
) -> BuilderInfo:
    # `docker info` (a process, 0.2 s) only when the builder's worker labels do not say so
    if (
        builder.driver == "docker"
        and not builder.containerd_worker
        and not engine.uses_containerd_store(builder.name)
    ):
        raise EngineError(
            f"builder '{builder.name}' uses the docker driver without the containerd image "
            "store, which cannot push images by digest for several platforms",
            hint='enable it in daemon.json ({"features": {"containerd-snapshotter": true}}) and '
            "restart dockerd, or create a builder: docker buildx create --use "
            "--driver docker-container; `mab doctor` checks the whole set-up",
        )
    offered = set()
    for text in builder.platforms:
        try:
            offered.add(str(Platform.parse(text.rstrip("*"))))
        except ValueError:
            continue
    missing = sorted(p for p in wanted if p not in offered)
    emulated = [p for p in missing if builder.local and emulation.host_runs(Platform.parse(p))]
    if emulated:
        reporter.notice(
            f"builder '{builder.name}' does not list {', '.join(emulated)}, but QEMU is "
            "registered for it on this host: building with it"
        )
        missing = [p for p in missing if p not in emulated]
    if missing:
        raise EngineError(
            f"builder '{builder.name}' ({builder.driver} driver) cannot build "
            f"{', '.join(missing)}; it offers {', '.join(sorted(offered)) or 'nothing'}",
            hint="register QEMU emulators (docker run --privileged --rm tonistiigi/binfmt "
            "--install all; on a machine without internet: sudo scripts/engine-up), "
            "or route the platform to a builder that has it (builders: in builds.yaml); "
            "`mab doctor` checks the whole set-up",
        )
    return builder


def check_secrets(plan: Plan, environ: Mapping[str, str]) -> None:
    """Fail before any build when a build secret's file or variable is missing: BuildKit
    would skip the mount silently, and the step would fail later, or worse, succeed
    against the public index. Only presence is checked; the value is never read."""
    missing = []
    for target in plan.targets:
        for secret in target.secrets:
            if secret.file is not None and not secret.file.is_file():
                missing.append(
                    f"target '{target.name}': secret '{secret.id}': no file {secret.file}"
                )
            elif secret.env is not None and not environ.get(secret.env):
                missing.append(
                    f"target '{target.name}': secret '{secret.id}': environment variable "
                    f"{secret.env} is not set"
                )
    if missing:
        raise BuildError(
            "build secrets missing: " + "; ".join(missing),
            hint="create the file or export the variable (secrets: in builds.yaml names them)",
        )
