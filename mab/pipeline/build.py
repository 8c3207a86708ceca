"""The build pipeline: plan -> render -> build -> publish -> verify -> report.

``run_build`` is the typed API behind ``mab build``; the CLI only formats its results.
Platform builds run concurrently (bounded by ``concurrency``). A target is published
only when every one of its platforms built and was pushed; then its index is written
under its tags and read back. A failing target never stops the others.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from mab.cli.report import human_size
from mab.engine.whales import (
    BuilderInfo,
    BuildOutcome,
    BuildRequest,
    Engine,
    run_registry_container,
)
from mab.errors import BuildError, EngineError, MabError
from mab.pipeline import emulation
from mab.pipeline.digests import DigestRecord
from mab.pipeline.publish import publish
from mab.pipeline.results import JobStatus, PlatformResult, RunReport, TargetResult, TargetStatus
from mab.pipeline.verify import VerifiedIndex, verify_target
from mab.planning import render
from mab.planning.cache import cache_options, fill_spec
from mab.planning.plan import Job, Plan, TargetPlan
from mab.platforms import Platform
from mab.registry import local as localregistry
from mab.registry.client import INDEX_TYPES, RegistryClient, split_repository


class Reporter(Protocol):
    """Receives progress events; the CLI's implementation draws them with rich."""

    def notice(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_log(self, job: Job, line: str) -> None: ...
    def job_finished(self, job: Job, result: PlatformResult) -> None: ...
    def target_finished(self, result: TargetResult) -> None: ...


Builders = dict[str | None, BuilderInfo]


def preflight(plan: Plan, engine: Engine, reporter: Reporter) -> Builders:
    """Check the engine, every builder the plan routes to, and the registry, before any
    work starts. Returns what each builder reported, by the name the plan uses."""
    check_secrets(plan, os.environ)
    engine.server_version()
    wanted: dict[str | None, set[str]] = {}
    for job in plan.jobs:
        wanted.setdefault(job.route.builder, set()).add(str(job.platform))
    builders: Builders = {}
    for name, platforms in wanted.items():
        builders[name] = _check_builder(engine, engine.builder(name), platforms, reporter)
    for _, route in plan.routes:
        if route.note:
            reporter.warning(route.note)
    local = localregistry.ensure(
        plan.registry_host,
        start_container=lambda port, data: run_registry_container(engine, port, data),
    )
    if local is not None and local.started:
        reporter.notice(
            f"started a local registry at {local.host} with {local.how}; "
            f"its data lives in {local.data_dir}"
        )
    return builders


def _check_builder(
    engine: Engine, builder: BuilderInfo, wanted: set[str], reporter: Reporter
) -> BuilderInfo:
    if builder.driver == "docker" and not engine.uses_containerd_store(builder.name):
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
            "or route the platform to a builder that has it (builders: in builds.yaml)",
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
    plan: Plan, job: Job, builder: BuilderInfo, dockerfile: Path, no_cache: bool
) -> BuildRequest:
    target, platform = job.target, job.platform
    cache_from, cache_to = cache_options(
        plan.cache, target.repository, target.name, platform, plan.project_file.parent
    )
    if plan.cache_override is not None:  # --cache-from/--cache-to, with the same fields
        sources, export = plan.cache_override
        cache_from = [fill_spec(c, target.repository, target.name, platform) for c in sources]
        cache_to = fill_spec(export, target.repository, target.name, platform) if export else None
    args = dict(target.build_args)
    if plan.source_date_epoch is not None:
        # reproducible image configs: a rebuild of the same commit gets the same digests
        args.setdefault("SOURCE_DATE_EPOCH", str(plan.source_date_epoch))
    return BuildRequest(
        context=target.context,
        dockerfile=dockerfile,
        platform=platform,
        repository=target.repository,
        build_args=args,
        build_contexts=dict(target.build_contexts),
        labels=dict(target.labels),
        stage=target.stage,
        # buildx addresses docker-driver builders by docker context, others by name
        builder=None if builder.driver == "docker" else builder.name,
        docker_context=builder.name if builder.driver == "docker" else None,
        no_cache=no_cache,
        cache_from=tuple(cache_from),
        cache_to=cache_to,
        secrets=tuple(secret.spec() for secret in target.secrets),
    )


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


def build_and_push(
    engine: Engine, request: BuildRequest, on_line: Callable[[str], None], *, direct: bool
) -> BuildOutcome:
    """Build one platform image and get it into the registry by digest, with no tag.

    *direct*: BuildKit pushes it. Otherwise (buildx's docker driver) BuildKit writes an OCI
    layout that mab uploads; the layout is deleted afterwards.
    """
    if direct:
        return engine.build(request, on_line)
    with tempfile.TemporaryDirectory(prefix="mab-oci-") as tmp:
        layout = Path(tmp) / "layout"
        outcome = engine.build(request, on_line, oci_layout=layout)
        digest = outcome.digest
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
        return outcome


@dataclass
class _Run:
    """One ``mab build``: the per-job and per-target work its thread pools run."""

    plan: Plan
    engine: Engine
    reporter: Reporter
    builders: Builders
    no_cache: bool
    by_digest_only: bool
    clock: Callable[[], float]
    registry: Callable[..., RegistryClient]
    results: dict[str, TargetResult] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def build_one(self, job: Job, dockerfile: Path) -> None:
        results = self.results[job.target.name].platforms
        result = next(r for r in results if r.platform == job.platform)
        with self.lock:
            result.status = JobStatus.BUILDING
        self.reporter.job_started(job)
        t0 = self.clock()
        try:
            builder = self.builders[job.route.builder]
            outcome = build_and_push(
                self.engine,
                _request(self.plan, job, builder, dockerfile, self.no_cache),
                on_line=lambda line: self.reporter.job_log(job, line),
                direct=builder.pushes_by_digest,
            )
        except MabError as exc:
            with self.lock:
                result.status = JobStatus.FAILED
                result.error = exc.message
                result.duration = self.clock() - t0
            self.reporter.job_finished(job, result)
            if exc.hint:
                self.reporter.job_log(job, exc.hint)
            return
        with self.lock:
            result.status = JobStatus.BUILT
            result.pushed_digest = outcome.digest
            result.cached_steps, result.steps = outcome.cached_steps, outcome.steps
            result.builder, result.build_ref = builder.name, outcome.build_ref
            result.duration = self.clock() - t0
        self.reporter.job_finished(job, result)

    def finish(self, target: TargetPlan) -> None:
        """A target's last platform is done: publish it (or, split build, just record)."""
        result = self.results[target.name]
        if self.by_digest_only:
            record_digests(self.engine, target, result, self.reporter, self.registry)
        else:
            publish_target(self.engine, target, result, self.reporter, self.registry)


def run_build(
    plan: Plan,
    engine: Engine,
    reporter: Reporter,
    *,
    no_cache: bool = False,
    by_digest_only: bool = False,
    clock: Callable[[], float] = time.monotonic,
    registry: Callable[..., RegistryClient] = RegistryClient,
) -> RunReport:
    """Build and publish every target of *plan*. With *by_digest_only* (a split build's
    per-platform job), push the images by digest and stop: ``run_merge`` publishes."""
    started = clock()
    builders = preflight(plan, engine, reporter)
    run = _Run(plan, engine, reporter, builders, no_cache, by_digest_only, clock, registry)
    for t in plan.targets:
        run.results[t.name] = TargetResult(
            t.name, t.repository, t.tag_names, [PlatformResult(t.name, p) for p in t.platforms]
        )
    with tempfile.TemporaryDirectory(prefix="mab-render-") as tmp:
        dockerfiles = render_dockerfiles(plan, Path(tmp))
        remaining = {t.name: len(t.platforms) for t in plan.targets}
        publishing: list[Future[None]] = []
        with (
            ThreadPoolExecutor(plan.concurrency, thread_name_prefix="mab-build") as builds,
            ThreadPoolExecutor(2, thread_name_prefix="mab-publish") as publishers,
        ):
            futures = {
                builds.submit(run.build_one, job, dockerfiles[job.target.name]): job
                for job in plan.jobs
            }
            try:
                for future in as_completed(futures):
                    future.result()
                    target = futures[future].target
                    remaining[target.name] -= 1
                    if remaining[target.name] == 0:
                        publishing.append(publishers.submit(run.finish, target))
                for pub in publishing:
                    pub.result()
            except KeyboardInterrupt:
                for f in futures:
                    f.cancel()
                _mark_cancelled(run.results.values())
                raise
    report = RunReport("build", plan.registry, list(run.results.values()))
    report.duration = clock() - started
    return report


def _mark_cancelled(results: Iterable[TargetResult]) -> None:
    for target in results:
        for r in target.platforms:
            if r.status in (JobStatus.QUEUED, JobStatus.BUILDING):
                r.status = JobStatus.CANCELLED


def publish_target(
    engine: Engine,
    target: TargetPlan,
    result: TargetResult,
    reporter: Reporter,
    registry: Callable[..., RegistryClient] = RegistryClient,
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
    _try_fill_sizes(registry, target, result, reporter)  # first: a size budget can stop it
    if target.partial:
        result.status = TargetStatus.UNTAGGED
        result.error = (
            f"this run built {len(target.platforms)} of {len(target.declared_platforms)} "
            "declared platforms, so no tag was written (images are pushed by digest)"
        )
        reporter.target_finished(result)
        return
    over = over_budget(target, result)
    if over:
        result.status = TargetStatus.FAILED
        result.error = f"{over}; no tag was written or moved"
        reporter.target_finished(result)
        return
    images = [(r.platform, str(r.pushed_digest)) for r in result.platforms]
    try:
        published = publish(
            engine,
            target,
            images,
            on_retry=reporter.warning,
            on_step=lambda message: reporter.notice(f"[{target.name}] {message}"),
            registry=registry,
        )
    except MabError as exc:
        result.status = TargetStatus.FAILED
        result.error = f"{exc.message}; tags not yet written keep their old images"
        reporter.target_finished(result)
        return
    result.index_digest = published.index_digest
    result.tags = tuple(published.written)
    result.held = dict(published.held)
    result.status = TargetStatus.PUBLISHED
    reporter.target_finished(result)


def record_digests(
    engine: Engine,
    target: TargetPlan,
    result: TargetResult,
    reporter: Reporter,
    registry: Callable[..., RegistryClient] = RegistryClient,
) -> None:
    """A split build's job: its platforms are in the registry by digest, untagged."""
    failed = [r for r in result.platforms if r.status is not JobStatus.BUILT]
    if failed:
        result.status = TargetStatus.FAILED
        result.error = f"{', '.join(str(r.platform) for r in failed)} failed to build"
    else:
        result.status = TargetStatus.UNTAGGED
        result.error = "pushed by digest; `mab merge` writes the tags"
        _try_fill_sizes(registry, target, result, reporter)
    reporter.target_finished(result)


def run_merge(
    plan: Plan,
    engine: Engine,
    records: Sequence[DigestRecord],
    reporter: Reporter,
    *,
    clock: Callable[[], float] = time.monotonic,
    registry: Callable[..., RegistryClient] = RegistryClient,
) -> RunReport:
    """Publish targets from the digest files of a split build (``mab merge``): the same
    rules as ``mab build``: a target is published only when every declared platform is
    there, its index is written by digest, immutable tags, verify, then floating tags."""
    started = clock()
    report = RunReport(command="merge", registry=plan.registry)
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
        publish_target(engine, full, result, reporter, registry)
    report.duration = clock() - started
    return report


def over_budget(target: TargetPlan, result: TargetResult) -> str | None:
    """Why *target* breaks its size budget, or None (also None when sizes are unknown)."""
    if target.size_budget is None:
        return None
    over = [
        f"{r.platform} is {human_size(r.compressed_size)}"
        for r in result.platforms
        if r.compressed_size is not None and r.compressed_size > target.size_budget
    ]
    if not over:
        return None
    return f"over the size budget of {human_size(target.size_budget)} (compressed): " + ", ".join(
        over
    )


def _try_fill_sizes(
    registry: Callable[..., RegistryClient],
    target: TargetPlan,
    result: TargetResult,
    reporter: Reporter,
) -> None:
    """Sizes are for the report and the size budget: failing to read them is a warning."""
    try:
        _fill_sizes(registry, target, result, None)
    except MabError as exc:
        reporter.warning(f"{target.name}: could not read image sizes: {exc.message}")


def _fill_sizes(
    registry: Callable[..., RegistryClient],
    target: TargetPlan,
    result: TargetResult,
    verified: VerifiedIndex | None,
) -> None:
    """Record each platform image's manifest digest, compressed size and layer count
    (straight from the registry: one GET per image)."""
    host, repo = split_repository(target.repository)
    with registry(host) as client:
        for r in result.platforms:
            digest = r.pushed_digest
            image = verified.image_for(r.platform) if verified is not None else None
            digest = image.digest if image is not None else digest
            if digest is None:
                continue
            manifest = client.get_manifest(repo, digest)
            if manifest.media_type in INDEX_TYPES:  # per-platform index: image + attestation
                entry = next(
                    (
                        m
                        for m in manifest.json().get("manifests", [])
                        if Platform.from_oci(
                            m.get("platform", {}).get("os"),
                            m.get("platform", {}).get("architecture"),
                            m.get("platform", {}).get("variant"),
                        )
                        == r.platform
                    ),
                    None,
                )
                if entry is None:
                    continue
                digest = str(entry["digest"])
                manifest = client.get_manifest(repo, digest)
            layers = manifest.json().get("layers", [])
            r.image_digest = digest
            r.compressed_size = sum(int(layer.get("size", 0)) for layer in layers)
            r.layers = len(layers)


def run_verify(
    plan: Plan, engine: Engine, registry: Callable[..., RegistryClient] = RegistryClient
) -> RunReport:
    """Re-check published targets without building (``mab verify``)."""
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
            _fill_sizes(registry, target, result, verified)
            result.held = {ref: f"points at {d[:19]}" for ref, d in elsewhere.items()}
        except MabError as exc:
            result.status = TargetStatus.FAILED
            result.error = exc.message
            continue
        result.index_digest = verified.digest
        result.status = TargetStatus.VERIFIED
    return report
