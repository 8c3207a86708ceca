"""The build pipeline: plan -> render -> build -> publish -> verify -> report.

``run_build`` is the typed API behind ``mab build``; the CLI only formats its results.
Platform builds run concurrently (bounded by ``concurrency``). A target is published
only when every one of its platforms built and was pushed; then its index is written
under its tags and read back. A failing target never stops the others.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Protocol

from mab import emulation, localregistry, render
from mab.engine import BuilderInfo, BuildRequest, Engine, run_registry_container
from mab.errors import BuildError, EngineError, MabError
from mab.plan import Job, Plan, TargetPlan
from mab.platforms import Platform
from mab.registry import RegistryClient, split_repository
from mab.results import JobStatus, PlatformResult, RunReport, TargetResult, TargetStatus
from mab.verify import VerifiedIndex, verify_target


class Reporter(Protocol):
    """Receives progress events; the CLI's implementation draws them with rich."""

    def notice(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_log(self, job: Job, line: str) -> None: ...
    def job_finished(self, job: Job, result: PlatformResult) -> None: ...
    def target_finished(self, result: TargetResult) -> None: ...


def preflight(plan: Plan, engine: Engine, reporter: Reporter) -> BuilderInfo:
    """Check the engine, the builder and the registry before any work starts."""
    engine.server_version()
    builder = engine.builder(plan.builder)
    wanted = sorted({str(p) for t in plan.targets for p in t.platforms})
    if builder.driver == "docker" and not engine.uses_containerd_store():
        raise EngineError(
            f"builder '{builder.name}' uses the docker driver without the containerd image "
            "store, which cannot push images by digest for several platforms",
            hint='enable it in daemon.json ({"features": {"containerd-snapshotter": true}}) and '
            "restart dockerd, or create a builder: docker buildx create --use "
            "--driver docker-container",
        )
    offered = set()
    for text in builder.platforms:
        try:
            offered.add(str(Platform.parse(text.rstrip("*"))))
        except ValueError:
            continue
    missing = [p for p in wanted if p not in offered]
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
            "or name a builder that has them with 'builder:' in builds.yaml",
        )
    local = localregistry.ensure(
        plan.registry_host,
        start_container=lambda port, data: run_registry_container(engine, port, data),
    )
    if local is not None and local.started:
        reporter.notice(
            f"started a local registry at {local.host} with {local.how}; "
            f"its data lives in {local.data_dir}"
        )
    return builder


def render_dockerfiles(plan: Plan, out_dir: Path) -> dict[str, Path]:
    """Render every template target into *out_dir*; hand-written Dockerfiles stay in place."""
    paths: dict[str, Path] = {}
    for target in plan.targets:
        text = render.render_target(target)
        if text is None:
            paths[target.name] = target.source.path
        else:
            path = out_dir / f"{target.name}.Dockerfile"
            path.write_text(text, encoding="utf-8")
            paths[target.name] = path
    return paths


def _request(
    plan: Plan, target: TargetPlan, platform: Platform, dockerfile: Path, no_cache: bool
) -> BuildRequest:
    return BuildRequest(
        context=target.context,
        dockerfile=dockerfile,
        platform=platform,
        repository=target.repository,
        build_args=dict(target.build_args),
        build_contexts=dict(target.build_contexts),
        labels=dict(target.labels),
        stage=target.stage,
        builder=plan.builder,
        no_cache=no_cache,
    )


def build_and_push(
    engine: Engine, request: BuildRequest, on_line: Callable[[str], None], *, direct: bool
) -> str:
    """Build one platform image and get it into the registry by digest, with no tag.

    *direct*: BuildKit pushes it. Otherwise (buildx's docker driver) BuildKit writes an OCI
    layout that mab uploads; the layout is deleted afterwards.
    """
    if direct:
        return engine.build(request, on_line)
    with tempfile.TemporaryDirectory(prefix="mab-oci-") as tmp:
        layout = Path(tmp) / "layout"
        digest = engine.build(request, on_line, oci_layout=layout)
        host, repo = split_repository(request.repository)
        on_line(f"pushing {request.platform} by digest to {request.repository}")
        try:
            with RegistryClient(host) as registry:
                pushed = registry.push_layout(layout, repo)
        except MabError as exc:
            raise BuildError(f"push of {request.platform} failed: {exc.message}", exc.hint) from exc
        if pushed.digest != digest:
            raise BuildError(f"push of {request.platform}: pushed {pushed.digest}, built {digest}")
        on_line(f"pushed {digest} ({pushed.blobs_sent} blobs sent, {pushed.blobs_skipped} present)")
        return digest


def run_build(
    plan: Plan,
    engine: Engine,
    reporter: Reporter,
    *,
    no_cache: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> RunReport:
    started = clock()
    builder = preflight(plan, engine, reporter)
    report = RunReport(command="build", registry=plan.registry)
    results = {
        t.name: TargetResult(
            t.name, t.repository, t.tags, [PlatformResult(t.name, p) for p in t.platforms]
        )
        for t in plan.targets
    }
    report.targets = list(results.values())
    lock = threading.Lock()

    def build_one(job: Job, dockerfile: Path) -> None:
        result = next(r for r in results[job.target.name].platforms if r.platform == job.platform)
        with lock:
            result.status = JobStatus.BUILDING
        reporter.job_started(job)
        t0 = clock()
        try:
            digest = build_and_push(
                engine,
                _request(plan, job.target, job.platform, dockerfile, no_cache),
                on_line=lambda line: reporter.job_log(job, line),
                direct=builder.pushes_by_digest,
            )
        except MabError as exc:
            with lock:
                result.status = JobStatus.FAILED
                result.error = exc.message
                result.duration = clock() - t0
            reporter.job_finished(job, result)
            if exc.hint:
                reporter.job_log(job, exc.hint)
            return
        with lock:
            result.status = JobStatus.BUILT
            result.pushed_digest = digest
            result.duration = clock() - t0
        reporter.job_finished(job, result)

    with tempfile.TemporaryDirectory(prefix="mab-render-") as tmp:
        dockerfiles = render_dockerfiles(plan, Path(tmp))
        remaining = {t.name: len(t.platforms) for t in plan.targets}
        by_name = {t.name: t for t in plan.targets}
        publishing: list[Future[None]] = []
        with (
            ThreadPoolExecutor(plan.concurrency, thread_name_prefix="mab-build") as builds,
            ThreadPoolExecutor(2, thread_name_prefix="mab-publish") as publishers,
        ):
            futures = {
                builds.submit(build_one, job, dockerfiles[job.target.name]): job
                for job in plan.jobs
            }
            try:
                for future in as_completed(futures):
                    future.result()
                    name = futures[future].target.name
                    remaining[name] -= 1
                    if remaining[name] == 0:
                        publishing.append(
                            publishers.submit(
                                publish_target, engine, by_name[name], results[name], reporter
                            )
                        )
                for pub in publishing:
                    pub.result()
            except KeyboardInterrupt:
                for f in futures:
                    f.cancel()
                for target in results.values():
                    for r in target.platforms:
                        if r.status in (JobStatus.QUEUED, JobStatus.BUILDING):
                            r.status = JobStatus.CANCELLED
                raise
    report.duration = clock() - started
    return report


def publish_target(
    engine: Engine, target: TargetPlan, result: TargetResult, reporter: Reporter
) -> None:
    """Write the index of *target* under its tags, if and only if every platform built."""
    failed = [r for r in result.platforms if r.status is not JobStatus.BUILT]
    if failed:
        result.status = TargetStatus.FAILED
        result.error = (
            f"{', '.join(str(r.platform) for r in failed)} failed to build; "
            "no tag was written or moved"
        )
        reporter.target_finished(result)
        return
    if target.partial:
        result.status = TargetStatus.UNTAGGED
        result.error = (
            f"this run built {len(target.platforms)} of {len(target.declared_platforms)} "
            "declared platforms, so no tag was written (images are pushed by digest)"
        )
        try:
            _fill_sizes(engine, target, result, None)
        except MabError as exc:
            reporter.warning(f"{target.name}: could not read image sizes: {exc.message}")
        reporter.target_finished(result)
        return
    sources = [f"{target.repository}@{r.pushed_digest}" for r in result.platforms]
    try:
        engine.create_index(sources, list(target.refs))
        verified = verify_target(engine, target)
        _fill_sizes(engine, target, result, verified)
    except MabError as exc:
        result.status = TargetStatus.FAILED
        result.error = exc.message
        reporter.target_finished(result)
        return
    result.index_digest = verified.digest
    result.status = TargetStatus.PUBLISHED
    reporter.target_finished(result)


def _fill_sizes(
    engine: Engine, target: TargetPlan, result: TargetResult, verified: VerifiedIndex | None
) -> None:
    """Record each platform image's manifest digest, compressed size and layer count."""
    for r in result.platforms:
        ref_digest = r.pushed_digest
        if verified is not None:
            image = verified.image_for(r.platform)
            ref_digest = image.digest if image is not None else ref_digest
        if ref_digest is None:
            continue
        manifest = engine.inspect(f"{target.repository}@{ref_digest}")
        if manifest.is_index:  # a per-platform index (image + attestation): open the image
            image = next((d for d in manifest.images if d.platform == r.platform), None)
            if image is None:
                continue
            ref_digest = image.digest
            manifest = engine.inspect(f"{target.repository}@{ref_digest}")
        r.image_digest = ref_digest
        r.compressed_size = sum(manifest.layer_sizes)
        r.layers = len(manifest.layer_sizes)


def run_verify(plan: Plan, engine: Engine) -> RunReport:
    """Re-check published targets without building (``mab verify``)."""
    report = RunReport(command="verify", registry=plan.registry)
    for target in plan.targets:
        result = TargetResult(
            target.name,
            target.repository,
            target.tags,
            [PlatformResult(target.name, p) for p in target.declared_platforms],
        )
        report.targets.append(result)
        try:
            verified = verify_target(engine, target)
            for r in result.platforms:
                r.status = JobStatus.BUILT
            _fill_sizes(engine, target, result, verified)
        except MabError as exc:
            result.status = TargetStatus.FAILED
            result.error = exc.message
            continue
        result.index_digest = verified.digest
        result.status = TargetStatus.VERIFIED
    return report
