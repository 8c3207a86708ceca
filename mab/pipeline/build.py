"""The build pipeline: plan -> render -> build -> publish -> verify -> report.

``run_build`` is the typed API behind ``mab build``; the CLI only formats its results.
Builds run concurrently (bounded by ``concurrency``): a target's platforms on one builder
in one buildx call where they can share it (mab.pipeline.together), else one call per
platform. A target is published only when every one of its platforms built and was
pushed; then its index is written under its tags and read back. A failing target never
stops the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from mab import proc
from mab.config.defaults import in_ci
from mab.engine.base import BuilderInfo, BuildOutcome, BuildRequest, Engine
from mab.errors import BuildError, MabError, PushError
from mab.pipeline import together
from mab.pipeline.gates import Gates
from mab.pipeline.inputs import TargetInputs
from mab.pipeline.inputs import compute as compute_inputs
from mab.pipeline.preflight import Builders, Unreachable, preflight
from mab.pipeline.publish import publish, republish_floating
from mab.pipeline.results import (
    Interrupted,
    JobStatus,
    PlatformResult,
    Reporter,
    RunReport,
    TargetResult,
    TargetStatus,
)
from mab.pipeline.sizes import over_budget, try_fill_sizes
from mab.pipeline.skip import Verdict, judge, with_created
from mab.planning import render
from mab.planning.cache import cache_options, fill_spec, should_export
from mab.planning.plan import Job, Plan, TargetPlan
from mab.platforms import Platform
from mab.registry.base import RegistryFactory, split_repository
from mab.scratch import scratch
from mab.signing import Cosign, SignerFactory


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
    plan: Plan,
    job: Job,
    builder: BuilderInfo,
    dockerfile: Path,
    no_cache: bool,
    *,
    export_cache: bool = True,
) -> BuildRequest:
    target, platform = job.target, job.platform
    cache_from, cache_to = cache_options(
        plan.cache,
        target.repository,
        target.name,
        platform,
        plan.project_file.parent,
        export=export_cache,
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
        provenance=target.gates.provenance,
        sbom=target.gates.sbom,
        sbom_generator=target.gates.sbom_generator,
    )


def build_and_push(
    engine: Engine,
    request: BuildRequest,
    on_line: Callable[[str], None],
    *,
    direct: bool,
    registries: RegistryFactory,
    on_retry: Callable[[str], None] | None = None,
) -> BuildOutcome:
    """Build one platform image (or, with ``request.also``, an index of several) and get
    it into the registry by digest, with no tag.

    *direct*: BuildKit pushes it. Otherwise (buildx's docker driver) BuildKit writes an OCI
    layout that mab uploads (each retried request reported to *on_retry*); the layout is
    deleted afterwards.
    """
    if direct:
        return engine.build(request, on_line)
    with scratch("mab-oci-") as tmp:
        layout = Path(tmp) / "layout"
        outcome = engine.build(request, on_line, oci_layout=layout)
        digest = outcome.digest
        host, repo = split_repository(request.repository)
        on_line(f"pushing {request.platform_list} by digest to {request.repository}")
        try:
            with registries(host, on_retry=on_retry) as registry:
                pushed = registry.push_layout(layout, repo)
        except MabError as exc:
            raise PushError(
                f"push of {request.platform_list} failed: {exc.message}", exc.hint
            ) from exc
        if pushed.digest != digest:
            raise PushError(
                f"push of {request.platform_list}: pushed {pushed.digest}, built {digest}"
            )
        on_line(f"pushed {digest} ({pushed.blobs_sent} blobs sent, {pushed.blobs_skipped} present)")
        return outcome


@dataclass(frozen=True)
class _Unit:
    """What one build thread runs: one job, or a target's jobs built together by
    *request* (mab.pipeline.together)."""

    jobs: list[Job]
    request: BuildRequest | None


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
    registries: RegistryFactory
    force: bool = False
    results: dict[str, TargetResult] = field(default_factory=dict)
    inputs: Mapping[str, TargetInputs] = field(default_factory=dict)
    export_cache: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    signers: SignerFactory = Cosign  # the publish gates' signer (tests pass a fake)
    # set on Ctrl-C/SIGTERM before the builds are stopped: no build starts after it
    stopping: threading.Event = field(default_factory=threading.Event)

    def request(self, job: Job, builder: BuilderInfo, dockerfile: Path) -> BuildRequest:
        return _request(
            self.plan, job, builder, dockerfile, self.no_cache, export_cache=self.export_cache
        )

    def units(self, plan: Plan, dockerfiles: Mapping[str, Path]) -> list[_Unit]:
        """The builds to run: each target's platforms on one builder together in one
        buildx call where they can share one (mab.pipeline.together), else one each."""
        out: list[_Unit] = []
        for jobs in together.batches(plan.jobs):
            builder = self.builders[jobs[0].route.builder]
            request = None
            if len(jobs) > 1 and not isinstance(builder, Unreachable):
                dockerfile = dockerfiles[jobs[0].target.name]
                requests = [self.request(job, builder, dockerfile) for job in jobs]
                request = together.combine(requests, builder.driver)
            if request is None:
                out.extend(_Unit([job], None) for job in jobs)
            else:
                out.append(_Unit(jobs, request))
        return out

    def build_unit(self, unit: _Unit, dockerfile: Path) -> None:
        if unit.request is None or not self.build_together(unit.jobs, unit.request):
            for job in unit.jobs:
                if self.stopping.is_set():  # interrupted: the rest stay cancelled
                    return
                self.build_one(job, dockerfile)

    def build_together(self, jobs: list[Job], request: BuildRequest) -> bool:
        """One buildx call for *jobs* (one target's platforms, one builder). False when the
        build failed: nothing is recorded, and the caller builds each platform alone to
        find the one that fails. A failed push fails every platform at once: pushing each
        alone would only ask the same registry again."""
        results = {r.platform: r for r in self.results[jobs[0].target.name].platforms}
        mine = {job.platform: results[job.platform] for job in jobs}
        with self.lock:
            for result in mine.values():
                result.status = JobStatus.BUILDING
        for job in jobs:
            self.reporter.job_started(job)
        builder = self.builders[jobs[0].route.builder]
        assert not isinstance(builder, Unreachable)
        t0 = self.clock()
        warn = jobs[0].target.name
        try:
            outcome = build_and_push(
                self.engine,
                request,
                on_line=together.LogRouter(jobs, self.reporter.job_log),
                direct=builder.pushes_by_digest,
                registries=self.registries,
                on_retry=lambda message: self.reporter.warning(f"[{warn}] {message}"),
            )
        except MabError as exc:
            if isinstance(exc, PushError) or _push_failed(exc.message):
                self._failed(jobs, mine, exc, self.clock() - t0)
                return True
            if self.stopping.is_set():  # killed by the interrupt, not a failure
                return False
            self.reporter.notice(
                f"[{warn}] the build of {request.platform_list} together failed "
                f"({exc.message}); building each platform alone to tell which fails"
            )
            return False
        try:
            host, repo = split_repository(request.repository)
            with self.registries(host, on_retry=None) as client:
                digests = together.split_index(client, repo, outcome.digest, request.platforms)
        except MabError as exc:
            self._failed(jobs, mine, exc, self.clock() - t0)
            return True
        took = self.clock() - t0
        for job in jobs:
            result = mine[job.platform]
            each = outcome.platform_steps.get(str(job.platform))
            with self.lock:
                result.status = JobStatus.BUILT
                result.pushed_digest = digests[job.platform]
                result.cached_steps, result.steps = each or (outcome.cached_steps, outcome.steps)
                result.builder, result.build_ref = builder.name, outcome.build_ref
                result.duration = took
            self.reporter.job_finished(job, result)
        return True

    def _failed(
        self, jobs: list[Job], mine: dict[Platform, PlatformResult], exc: MabError, took: float
    ) -> None:
        for job in jobs:
            result = mine[job.platform]
            with self.lock:
                result.status = JobStatus.FAILED
                result.error = exc.message
                result.duration = took
            self.reporter.job_finished(job, result)
        if exc.hint:
            self.reporter.job_log(jobs[0], exc.hint)

    def build_one(self, job: Job, dockerfile: Path) -> None:
        results = self.results[job.target.name].platforms
        result = next(r for r in results if r.platform == job.platform)
        with self.lock:
            result.status = JobStatus.BUILDING
        self.reporter.job_started(job)
        t0 = self.clock()
        try:
            builder = self.builders[job.route.builder]
            if isinstance(builder, Unreachable):
                raise BuildError(f"not built: {builder.message}")
            outcome = build_and_push(
                self.engine,
                self.request(job, builder, dockerfile),
                on_line=lambda line: self.reporter.job_log(job, line),
                direct=builder.pushes_by_digest,
                registries=self.registries,
                on_retry=lambda message: self.reporter.warning(f"[{job.key}] {message}"),
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
            record_digests(target, result, self.reporter, self.registries)
        else:
            publish_target(
                self.engine,
                target,
                result,
                self.reporter,
                self.registries,
                force=self.force,
                inputs=self.inputs.get(target.name),
                signers=self.signers,
            )


def run_build(
    plan: Plan,
    engine: Engine | None,
    reporter: Reporter,
    *,
    registries: RegistryFactory,
    engine_factory: Callable[[], Engine] | None = None,
    no_cache: bool = False,
    by_digest_only: bool = False,
    force: bool = False,
    rebuild: bool = False,
    clock: Callable[[], float] = time.monotonic,
    signers: SignerFactory = Cosign,
) -> RunReport:
    """Build and publish every target of *plan*. With *by_digest_only* (a split build's
    per-platform job), push the images by digest and stop: ``run_merge`` publishes.
    *force*: overwrite an immutable tag that names another index.

    A target whose inputs are unchanged since it was published (mab.pipeline.skip) is not
    built unless *rebuild*; when every target is unchanged no engine is needed at all
    (*engine* may be None and *engine_factory* is then never called)."""
    started = clock()
    results: dict[str, TargetResult] = {}
    for t in plan.targets:
        results[t.name] = TargetResult(
            t.name, t.repository, t.tag_names, [PlatformResult(t.name, p) for p in t.platforms]
        )
    with scratch("mab-render-") as tmp:
        dockerfiles = render_dockerfiles(plan, Path(tmp))
        plan, inputs = prepare(plan, dockerfiles, registries, reporter)
        verdicts = {} if rebuild else judge(plan, inputs, registries)
        for target in plan.targets:
            verdict = verdicts.get(target.name)
            if verdict is not None and verdict.unchanged:
                _unchanged(
                    target,
                    verdict,
                    results[target.name],
                    reporter,
                    registries=registries,
                    by_digest_only=by_digest_only,
                )
        todo = replace(plan, targets=tuple(t for t in plan.targets if not _skipped(verdicts, t)))
        interrupted: KeyboardInterrupt | None = None
        if todo.targets:
            engine = engine if engine is not None else _engine(engine_factory)
            # a split build's jobs push by digest only: the merge runs the publish gates
            gates = None if by_digest_only else signers
            builders = preflight(todo, engine, reporter, signers=gates)
            run = _Run(
                todo,
                engine,
                reporter,
                builders,
                no_cache,
                by_digest_only,
                clock,
                registries,
                force,
                results=results,
                inputs=inputs,
                export_cache=should_export(plan.cache, in_ci=in_ci(), split_job=by_digest_only),
                signers=signers,
            )
            interrupted = _build_all(run, todo, dockerfiles)
    report = RunReport("build", plan.registry, list(results.values()))
    report.duration = clock() - started
    if interrupted is not None:
        _mark_cancelled(results.values())
        raise Interrupted(report, getattr(interrupted, "exit_code", 130)) from None
    return report


def prepare(
    plan: Plan, dockerfiles: Mapping[str, Path], registries: RegistryFactory, reporter: Reporter
) -> tuple[Plan, dict[str, TargetInputs]]:
    """The input digests of every target, and the plan with each target's ``created``
    taken from its inputs where the run has no source time (mab.pipeline.skip)."""
    inputs = compute_inputs(plan, dockerfiles, registries, reporter.notice)
    return with_created(plan, inputs), inputs


def _engine(factory: Callable[[], Engine] | None) -> Engine:
    if factory is None:
        raise MabError("a target must be built but no engine was given")
    return factory()


def _skipped(verdicts: dict[str, Verdict], target: TargetPlan) -> bool:
    verdict = verdicts.get(target.name)
    return verdict is not None and verdict.unchanged


def _build_all(run: _Run, plan: Plan, dockerfiles: dict[str, Path]) -> KeyboardInterrupt | None:
    """Every job of *plan*, concurrently; each target published when its last platform
    is done. Returns the interrupt that stopped it, if one did."""
    remaining = {t.name: len(t.platforms) for t in plan.targets}
    publishing: list[Future[None]] = []
    with (
        ThreadPoolExecutor(plan.concurrency, thread_name_prefix="mab-build") as builds,
        ThreadPoolExecutor(2, thread_name_prefix="mab-publish") as publishers,
    ):
        futures = {
            builds.submit(run.build_unit, unit, dockerfiles[unit.jobs[0].target.name]): unit
            for unit in run.units(plan, dockerfiles)
        }
        try:
            for future in as_completed(futures):
                future.result()
                unit = futures[future]
                target = unit.jobs[0].target
                remaining[target.name] -= len(unit.jobs)
                if remaining[target.name] == 0:
                    publishing.append(publishers.submit(run.finish, target))
            for pub in publishing:
                pub.result()
        except KeyboardInterrupt as exc:
            # stop the builds now (their docker calls), let a publish that has started
            # finish (the pools wait for it), then say what stands
            run.stopping.set()
            for f in futures:
                f.cancel()
            proc.terminate_children()
            return exc
    return None


def _unchanged(
    target: TargetPlan,
    verdict: Verdict,
    result: TargetResult,
    reporter: Reporter,
    *,
    registries: RegistryFactory,
    by_digest_only: bool,
) -> None:
    """A target whose published index has this run's inputs: its images are the ones in
    the registry (a split build's job records their digests); its floating tags still
    follow their rules."""
    index = verdict.index
    assert index is not None
    images = {d.platform: d for d in index.images}
    for r in result.platforms:
        r.status = JobStatus.UNCHANGED
        image = images.get(r.platform)
        r.pushed_digest = r.image_digest = image.digest if image else None
    result.index_digest = index.digest
    result.status = TargetStatus.UNCHANGED
    result.error = f"unchanged: {verdict.why}"
    if not by_digest_only and not target.partial:
        try:
            published = republish_floating(target, index, registries, reporter)
        except MabError as exc:
            result.status = TargetStatus.FAILED
            result.error = exc.message
            reporter.target_finished(result)
            return
        result.tags = tuple(t.name for t in target.immutable_tags) + tuple(published.written)
        result.held = dict(published.held)
    reporter.target_finished(result)


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
    registries: RegistryFactory,
    *,
    force: bool = False,
    inputs: TargetInputs | None = None,
    signers: SignerFactory = Cosign,
) -> None:
    """Write the index of *target* under its tags, if and only if every platform built
    and passed the publish gates (mab.pipeline.gates: *signers* sign and verify)."""
    failed = [r for r in result.platforms if r.status is not JobStatus.BUILT]
    if failed:
        result.status = TargetStatus.FAILED
        result.error = f"{_failures(failed)}; no tag was written or moved"
        reporter.target_finished(result)
        return
    try_fill_sizes(registries, target, result, reporter)  # first: a size budget can stop it
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
    gates = Gates(
        engine, target, result, lambda m: reporter.notice(f"[{target.name}] {m}"), signers
    )
    try:
        gates.before_index(registries, reporter.warning)  # smoke tests, scans
        published = publish(
            engine,
            target,
            images,
            on_retry=reporter.warning,
            on_step=lambda message: reporter.notice(f"[{target.name}] {message}"),
            registries=registries,
            force=force,
            inputs=inputs,
            gates=gates,
        )
    except MabError as exc:
        result.status = TargetStatus.FAILED
        result.error = exc.message
        reporter.target_finished(result)
        return
    result.index_digest = published.index_digest
    result.tags = tuple(published.written)
    result.held = dict(published.held)
    result.status = TargetStatus.PUBLISHED
    reporter.target_finished(result)


def record_digests(
    target: TargetPlan, result: TargetResult, reporter: Reporter, registries: RegistryFactory
) -> None:
    """A split build's job: its platforms are in the registry by digest, untagged."""
    failed = [r for r in result.platforms if r.status is not JobStatus.BUILT]
    if failed:
        result.status = TargetStatus.FAILED
        result.error = _failures(failed)
    else:
        result.status = TargetStatus.UNTAGGED
        result.error = "pushed by digest; `mab merge` writes the tags"
        try_fill_sizes(registries, target, result, reporter)
    reporter.target_finished(result)


def _push_failed(message: str) -> bool:
    """Whether a build error is about the push, not the build: mab's upload of BuildKit's
    layout raises PushError ("push of ..."); BuildKit pushing by itself (a
    docker-container builder) fails its build with "failed to push"."""
    return message.startswith("push of") or "failed to push" in message


def _failures(failed: Iterable[PlatformResult]) -> str:
    """Which platforms failed, and at which step (a build, or the push after it)."""
    parts = []
    for r in failed:
        if r.status is JobStatus.CANCELLED:
            parts.append(f"{r.platform} was cancelled")
        elif _push_failed(r.error or ""):
            parts.append(f"{r.platform} failed to push")
        else:
            parts.append(f"{r.platform} failed to build")
    return "; ".join(parts)
