"""``mab build --load``: build each selected target for one platform and load it into the
local engine's image store under its planned tags (``REGISTRY/TARGET:TAG``), to run and
test before anything is published.

Nothing is pushed and no registry tag is written: the build uses buildx's ``docker``
exporter (``--load``) instead of the push by digest, and a cache export that would write
to a registry (or to GitHub's cache) is dropped; reading the cache stays. The builds
themselves are ``mab build``'s: the same rendered Dockerfiles and build requests.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mab.engine.base import BuilderInfo, BuildRequest, Engine
from mab.errors import EngineError, MabError
from mab.pipeline import emulation
from mab.pipeline.build import _request, render_dockerfiles
from mab.pipeline.preflight import check_secrets
from mab.pipeline.results import JobStatus, PlatformResult, Reporter
from mab.planning.plan import Job, Plan
from mab.platforms import Platform, PlatformValueError
from mab.scratch import scratch

# cache exports that stay on this machine (or in the image); others would write elsewhere
_LOCAL_CACHE = ("local", "inline")


@dataclass(frozen=True)
class LoadedImage:
    """One image in the local image store, under every planned tag of its target."""

    target: str
    platform: Platform
    refs: tuple[str, ...]
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "platform": str(self.platform),
            "refs": list(self.refs),
            "digest": self.digest,
        }


@dataclass
class LoadReport:
    loaded: list[LoadedImage] = field(default_factory=list)
    failed: list[PlatformResult] = field(default_factory=list)
    dropped_cache: list[str] = field(default_factory=list)  # cache exports not written
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "build --load",
            "ok": self.ok,
            "duration_s": round(self.duration, 2),
            "loaded": [image.to_dict() for image in self.loaded],
            "failed": [r.to_dict() | {"target": r.target} for r in self.failed],
        }


def load_request(request: BuildRequest, names: tuple[str, ...]) -> BuildRequest:
    """*request* loading into the local image store under *names*, with no cache export
    that writes outside this machine."""
    cache_to = request.cache_to
    if cache_to is not None and cache_to.get("type") not in _LOCAL_CACHE:
        cache_to = None
    return replace(request, load=True, load_names=names, cache_to=cache_to)


def _check_builders(
    plan: Plan, engine: Engine, binfmt: Path = emulation.BINFMT
) -> dict[str | None, BuilderInfo]:
    """Every builder the plan routes to answers and offers its platform (or, for a local
    builder, QEMU is registered for it here). No image store or registry is needed."""
    builders: dict[str | None, BuilderInfo] = {}
    for job in plan.jobs:
        name = job.route.builder
        if name not in builders:
            builders[name] = engine.builder(name)
        builder = builders[name]
        offered = set()
        for text in builder.platforms:
            try:
                offered.add(Platform.parse(text.rstrip("*")))
            except PlatformValueError:
                continue
        runs = builder.local and emulation.host_runs(job.platform, binfmt)
        if job.platform not in offered and not runs:
            raise EngineError(
                f"builder '{builder.name}' ({builder.driver} driver) cannot build "
                f"{job.platform}; it offers {', '.join(sorted(map(str, offered))) or 'nothing'}",
                hint="register QEMU for it (docker run --privileged --rm tonistiigi/binfmt "
                "--install all), or load another platform with --platform; `mab doctor` "
                "checks the whole set-up",
            )
    return builders


def load_targets(
    plan: Plan,
    engine: Engine,
    reporter: Reporter,
    *,
    no_cache: bool = False,
    clock: Callable[[], float] = time.monotonic,
    binfmt: Path = emulation.BINFMT,
) -> LoadReport:
    """Build every job of *plan* and load it into the engine's image store under its
    target's planned refs. A failing job never stops the others."""
    started = clock()
    check_secrets(plan, os.environ)
    engine.server_version()
    builders = _check_builders(plan, engine, binfmt)
    report = LoadReport()
    lock = threading.Lock()
    with scratch("mab-render-") as tmp:
        dockerfiles = render_dockerfiles(plan, Path(tmp))

        def one(job: Job) -> None:
            result = PlatformResult(job.target.name, job.platform, JobStatus.BUILDING)
            builder = builders[job.route.builder]
            built = _request(plan, job, builder, dockerfiles[job.target.name], no_cache)
            request = load_request(built, job.target.refs)
            if built.cache_to is not None and request.cache_to is None:
                with lock:
                    report.dropped_cache.append(job.key)
            reporter.job_started(job)
            t0 = clock()
            try:
                outcome = engine.build(request, lambda line: reporter.job_log(job, line))
            except MabError as exc:
                result.status, result.error = JobStatus.FAILED, exc.message
                result.duration = clock() - t0
                with lock:
                    report.failed.append(result)
                reporter.job_finished(job, result)
                if exc.hint:
                    reporter.job_log(job, exc.hint)
                return
            result.status, result.pushed_digest = JobStatus.BUILT, outcome.digest
            result.cached_steps, result.steps = outcome.cached_steps, outcome.steps
            result.builder, result.build_ref = builder.name, outcome.build_ref
            result.duration = clock() - t0
            reporter.job_finished(job, result)
            with lock:
                report.loaded.append(
                    LoadedImage(job.target.name, job.platform, job.target.refs, outcome.digest)
                )
            reporter.notice(f"[{job.key}] loaded as {', '.join(job.target.refs)}")

        with ThreadPoolExecutor(plan.concurrency, thread_name_prefix="mab-load") as pool:
            for future in [pool.submit(one, job) for job in plan.jobs]:
                future.result()
    order = {t.name: i for i, t in enumerate(plan.targets)}
    report.loaded.sort(key=lambda image: (order[image.target], image.platform))
    report.duration = clock() - started
    return report
