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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mab.config.defaults import default_registry
from mab.config.models import BuilderConfig
from mab.config.project import Project, load_project
from mab.config.project import builder_files as config_files
from mab.errors import EngineError, MabError, RegistryError, UsageError
from mab.planning import git
from mab.planning.cache import parse_spec
from mab.planning.plan import Plan, TargetPlan, make_plan
from mab.planning.tags import TagContext
from mab.platforms import Platform
from mab.scratch import scratch

# Each command's stages load in the function that runs them, not here: `mab plan` must not
# pay for httpx, `mab build` with nothing to build not for the doctor, the registry
# server, cryptography or cosign (issue 11: start-up is most of an unchanged run).
if TYPE_CHECKING:
    from mab import doctor as checkup
    from mab import init as generator
    from mab import lint as rules
    from mab.engine.base import Engine
    from mab.pipeline.load import LoadReport
    from mab.pipeline.promote import Promotion
    from mab.pipeline.results import Reporter, RunReport
    from mab.pipeline.skip import Verdict
    from mab.registry.base import RegistryFactory
    from mab.registry.client import RegistryClient
    from mab.registry.retention import CleanupPlan


@dataclass(frozen=True)
class Loaded:
    """A validated builds.yaml and the plan made from it for one run."""

    project: Project
    plan: Plan

    @property
    def notices(self) -> tuple[str, ...]:
        """What the user should read before the run: builds.yaml's warnings (a context
        outside the project, a build arg named like a secret) and the tag rules' notes."""
        return (*(f"warning: {w}" for w in self.project.warnings), *self.plan.notes)


def docker_engine() -> Engine:
    """The real engine: docker and buildx through python-on-whales."""
    from mab.engine.whales import DockerEngine  # python-on-whales takes ~0.35 s to import

    return DockerEngine()


def tag_context(project: Project, version: str | None, env: str | None) -> TagContext:
    """Everything tag rules and labels read, read once for the whole run."""
    info = git.read(project.base_dir)
    epoch = source_date_epoch() or (info.commit_time if info and info.commit_time else None)
    return TagContext(
        now=datetime.now(UTC),
        version=version or os.environ.get("MAB_VERSION") or None,
        environment=env or os.environ.get("MAB_ENV") or None,
        git=info,
        project_dir=project.base_dir,
        source_date_epoch=epoch,
    )


_LATEST_EPOCH = 253402300799  # 9999-12-31T23:59:59Z, the last second a timestamp can name


def source_date_epoch() -> int | None:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org), checked: a UsageError naming the
    variable for text or an out-of-range number, never an OverflowError."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > _LATEST_EPOCH:
        raise UsageError(
            f"SOURCE_DATE_EPOCH={text[:30]!r} is not a Unix time",
            hint="set it to whole seconds since 1970 (e.g. git log -1 --format=%ct), or unset it",
        )
    return int(text)


def load(
    file: Path,
    targets: Sequence[str] = (),
    platforms: Sequence[str] = (),
    *,
    version: str | None = None,
    env: str | None = None,
    require_tags: bool = True,
) -> Loaded:
    """Validate *file* and plan the run (no engine, no registry). Without *require_tags*
    a target may plan with no tag (``mab promote`` writes tags of its own)."""
    project = load_project(file)
    plan = make_plan(
        project,
        targets,
        platforms,
        default_registry=default_registry(),
        context=tag_context(project, version, env),
        require_tags=require_tags,
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
    from mab.registry.login import login_for_build

    return login_for_build(loaded.project.config, [loaded.plan.registry_host], engine.login)


def build(
    loaded: Loaded,
    engine: Engine | None,
    reporter: Reporter,
    *,
    registries: RegistryFactory | None = None,
    no_cache: bool = False,
    by_digest_only: bool = False,
    force: bool = False,
    rebuild: bool = False,
    on_login: Callable[[str], None] | None = None,
) -> RunReport:
    """``mab build``: build, push by digest, publish and verify every target of the plan
    (with *by_digest_only*, one job of a split build: push by digest and stop).

    Targets whose inputs match what is published are skipped unless *rebuild*. Without
    an *engine*, the docker engine is started (and builds.yaml's registries logged in to,
    each host said to *on_login*) only when something must be built: an unchanged run
    never loads python-on-whales nor starts a docker process."""
    from mab.pipeline.build import run_build
    from mab.signing import Cosign

    def engine_factory() -> Engine:
        real = docker_engine()
        for host in login(loaded, real):
            if on_login is not None:
                on_login(host)
        return real

    return run_build(
        loaded.plan,
        engine,
        reporter,
        registries=registries or registries_for(loaded.project),
        engine_factory=engine_factory,
        no_cache=no_cache,
        by_digest_only=by_digest_only,
        force=force,
        rebuild=rebuild,
        signers=Cosign,  # the publish gates' signer: the cosign CLI
    )


def registries_for(project: Project) -> RegistryFactory:
    """``RegistryClient``, with the credentials builds.yaml names (``registries:``) for
    their hosts, so mab's own requests need no ``docker login`` first; other hosts use
    what docker stored. A password is read (or its login.command run) once per host."""
    from mab.registry.client import RegistryClient
    from mab.registry.credentials import Credential, secret_for

    known: dict[str, Credential | None] = {}

    def open_client(
        host: str,
        *,
        on_retry: Callable[[str], None] | None = None,
        attempts: int | None = None,
    ) -> RegistryClient:
        if host not in known:
            auth = project.config.registries.get(host)
            secret = secret_for(host, auth) if auth is not None else None
            known[host] = (
                Credential(secret.username, secret.password, source=secret.source)
                if secret is not None
                else None
            )
        return RegistryClient(host, on_retry=on_retry, attempts=attempts, credential=known[host])

    return open_client


def write_digests(report: RunReport, folder: Path) -> list[Path]:
    """The ``TARGET@PLATFORM.json`` files of a split build's job, for ``mab merge``."""
    from mab.pipeline import digests

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
    registries: RegistryFactory | None = None,
    force: bool = False,
) -> RunReport:
    """``mab merge``: publish the targets whose every platform a split build pushed."""
    from mab.pipeline import digests
    from mab.pipeline.merge import run_merge

    records = digests.read(folder)
    return run_merge(
        loaded.plan,
        engine,
        records,
        reporter,
        registries=registries or registries_for(loaded.project),
        force=force,
    )


def check(loaded: Loaded, reporter: Reporter) -> dict[str, Verdict]:
    """``mab plan --check``: which targets a build would skip as unchanged, and why
    (renders and reads the registry; no engine)."""
    from mab.pipeline.build import prepare, render_dockerfiles
    from mab.pipeline.skip import judge

    registries = registries_for(loaded.project)
    with scratch("mab-render-") as tmp:
        dockerfiles = render_dockerfiles(loaded.plan, Path(tmp))
        plan, inputs = prepare(loaded.plan, dockerfiles, registries, reporter)
        return judge(plan, inputs, registries)


def verify(
    loaded: Loaded, engine: Engine, *, registries: RegistryFactory | None = None
) -> RunReport:
    """``mab verify``: re-check every published target without building."""
    from mab.pipeline.audit import run_verify
    from mab.registry.client import RegistryClient
    from mab.signing import Cosign

    return run_verify(loaded.plan, engine, registries=registries or RegistryClient, signers=Cosign)


def promote(
    loaded: Loaded,
    source: str,
    to: Sequence[str],
    engine: Engine,
    *,
    to_registry: str | None = None,
    registries: RegistryFactory | None = None,
) -> Promotion:
    """``mab promote``: new tags for a published index, no rebuild, verified."""
    from mab.pipeline.promote import promote as run_promote
    from mab.registry.client import RegistryClient
    from mab.signing import Cosign

    return run_promote(
        engine,
        loaded.plan.targets[0],
        source,
        to,
        registries=registries or RegistryClient,
        to_registry=to_registry,
        signers=Cosign,
    )


def rendered(loaded: Loaded) -> list[tuple[str, str]]:
    """(target, Dockerfile text) for every template target of the plan."""
    from mab.planning import render

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
    from mab import lint as rules
    from mab.planning import render

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
    with scratch("mab-lint-") as tmp:
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
    from mab import init as generator

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
    # driver options and the buildkitd config as builds.yaml writes them (file references)
    options: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "endpoint": self.endpoint,
            "native": list(self.native),
            "emulated": list(self.emulated),
            "offered": list(self.offered),
            "state": self.state,
            "options": dict(self.options),
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
                options=_shown_options(spec) if spec else (),
            )
        )
    return rows


def _shown_options(spec: BuilderConfig) -> tuple[tuple[str, str], ...]:
    config = (("config", spec.config),) if spec.config is not None else ()
    return (*sorted(spec.driver_opts.items()), *config)


def builder_files(spec: BuilderConfig, base: Path) -> tuple[dict[str, str], Path | None]:
    """A builder's driver options and buildkitd config with the files they name (a
    remote's TLS files, the config) as absolute paths: buildx wants them absolute, and
    builds.yaml writes them relative to itself."""
    opts = dict(spec.driver_opts)
    for loc, value in config_files(spec):
        if loc[0] == "driver_opts":
            opts[str(loc[1])] = str((base / value).absolute())
    config = (base / spec.config).absolute() if spec.config is not None else None
    return opts, config


def create_builders(project: Project, engine: Engine) -> list[tuple[str, bool]]:
    """Create every declared builder buildx does not know: (name, created) per builder."""
    known = {b.name for b in engine.builders()}
    done: list[tuple[str, bool]] = []
    for spec in project.config.builders:
        if spec.name in known:
            done.append((spec.name, False))
            continue
        opts, config = builder_files(spec, project.base_dir)
        engine.create_builder(
            spec.name, spec.driver, spec.endpoint, opts, list(spec.platforms), config=config
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
    from mab.registry.base import split_repository
    from mab.registry.query import client as registry_client
    from mab.registry.retention import Policy, decide, snapshot

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


# --- mab doctor, mab build --load, mab run ----------------------------------------------


def host_platform(engine: Engine) -> str:
    """The platform of the engine's own CPU (what ``--load`` builds by default)."""
    info = engine.info()
    if info.platform is None:
        raise UsageError(
            f"the engine runs on a CPU mab has no platform for ({info.architecture})",
            hint="name the platform: --platform OS/ARCH",
        )
    return str(info.platform)


def load_images(
    loaded: Loaded, engine: Engine, reporter: Reporter, *, no_cache: bool = False
) -> LoadReport:
    """``mab build --load``: build every selected target for the plan's one platform and
    load it into the local image store under its planned tags; push nothing."""
    from mab.pipeline.load import load_targets

    platforms = {p for t in loaded.plan.targets for p in t.platforms}
    if len(platforms) != 1:
        raise UsageError(
            f"--load builds one platform at a time, not {len(platforms)} "
            f"({', '.join(sorted(map(str, platforms)))})",
            hint="name one with --platform OS/ARCH (the default is the engine's own)",
        )
    return load_targets(loaded.plan, engine, reporter, no_cache=no_cache)


def _doctor_client(host: str) -> checkup.Pinger:
    """A registry client for the doctor: short timeouts, one retry."""
    from mab.registry.client import RegistryClient, RetryPolicy

    return RegistryClient(host, timeout=10.0, retry=RetryPolicy(attempts=2, max_seconds=5.0))


def _stored_user(host: str) -> str | None:
    """The user name docker stored credentials under for *host* (never the password)."""
    from mab.registry import credentials

    found = credentials.lookup(host)
    if found is None:
        return None
    return "an identity token" if found.identity_token else found.username


def _doctor_setup(file: Path | None) -> checkup.Setup:
    """builds.yaml (FILE, else ./builds.yaml when there is one) as the checks read it."""
    from mab import doctor as checkup

    path = file or Path("builds.yaml")
    registry = default_registry()
    base = Path.cwd()
    config = None
    if path.is_file():
        try:
            project = load_project(path)
        except MabError as exc:
            first, *more = exc.message.splitlines() or [""]
            extra = f" (and {len(more)} more)" if more else ""
            check = checkup.Check(
                "builds.yaml",
                False,
                f"{first}{extra}",
                exc.hint or f"fix it: mab plan -f {path} shows every problem with its line",
            )
        else:
            config, base = project.config, project.base_dir
            registry = config.registry or registry
            platforms = ", ".join(str(p) for p in checkup.declared_platforms(config))
            check = checkup.Check(
                "builds.yaml",
                True,
                f"{path}: {len(config.targets)} targets; platforms {platforms or 'none'}",
            )
    elif file is not None:
        check = checkup.Check(
            "builds.yaml",
            False,
            f"{file} does not exist",
            "name one with -f FILE, or create one: mab init",
        )
    else:
        check = checkup.Check(
            "builds.yaml",
            True,
            "none here: checked the engine, the current builder and the default registry",
        )
    info = git.read(base)
    return checkup.Setup(
        config=config,
        config_check=check,
        registry=registry,
        environ=dict(os.environ),
        now=datetime.now(UTC),
        commit_time=info.commit_time if info and info.commit_time else None,
        base=base,
    )


def doctor(
    file: Path | None,
    engine: Engine,
    *,
    registries: checkup.PingerFactory | None = None,
    stored_user: Callable[[str], str | None] | None = None,
) -> checkup.Report:
    """``mab doctor``: check the docker CLI, engine, buildx, builders, image store, QEMU
    for every declared platform, registries and their stored credentials, the publish
    gates' tools and keys, disk space, SOURCE_DATE_EPOCH and the clock. *file* None:
    ./builds.yaml when there is one. *registries* (default: ``RegistryClient``) pings a
    registry with the credentials docker stored; *stored_user* names the user they are
    for."""
    from mab import doctor as checkup

    return checkup.run(
        engine,
        registries or _doctor_client,
        stored_user or _stored_user,
        _doctor_setup(file),
    )


@dataclass(frozen=True)
class RunOutcome:
    """What ``mab run`` ran: the image (loaded, or the published index by digest), for
    which platform, emulated or not, and the container's exit code."""

    ref: str
    platform: str
    source: str  # "loaded" or "registry"
    emulated: bool
    exit_code: int


def _run_platform(target: TargetPlan, engine: Engine, platform: str | None) -> Platform:
    if platform is not None:
        try:
            chosen = Platform.parse(platform)
        except ValueError as exc:
            raise UsageError(f"--platform: {exc}") from None
        if chosen not in target.declared_platforms:
            declared = ", ".join(str(p) for p in target.declared_platforms)
            raise UsageError(
                f"target '{target.name}' does not declare {chosen} (it declares {declared})",
                hint="pick one of its platforms with --platform",
            )
        return chosen
    host = engine.info().platform
    if host is not None and host in target.declared_platforms:
        return host
    return target.declared_platforms[0]


def _image_for(target: TargetPlan, engine: Engine, platform: Platform) -> tuple[str, str]:
    """(ref, "loaded" | "registry"): the loaded image of *platform* under the target's
    first tag, else the published index of that tag, by digest."""
    ref = target.refs[0]
    local = engine.image_platform(ref)
    if local is not None:
        try:
            if Platform.parse(local) == platform:
                return ref, "loaded"
        except ValueError:
            pass
    try:
        published = engine.inspect(ref)
    except MabError as exc:
        loaded_one = f"the one loaded as {ref} is {local}" if local else f"none loaded as {ref}"
        raise RegistryError(
            f"no {platform} image of '{target.name}' to run: {loaded_one}, and the registry "
            f"has none ({exc.message})",
            hint=f"build one: mab build --load -t {target.name} --platform {platform} "
            "(or publish it: mab build)",
        ) from None
    if published.is_index:
        have = [d.platform for d in published.images if d.platform is not None]
        if platform not in have:
            raise RegistryError(
                f"{ref} ({published.digest}) has no {platform} image "
                f"(it has {', '.join(str(p) for p in have) or 'none'})",
                hint=f"build one locally: mab build --load -t {target.name} --platform {platform}",
            )
    return f"{target.repository}@{published.digest}", "registry"


def run(
    loaded: Loaded,
    engine: Engine,
    *,
    platform: str | None = None,
    argv: Sequence[str] = (),
    notify: Callable[[str], None] = lambda message: None,
) -> RunOutcome:
    """``mab run TARGET``: run the plan's one target for *platform* (default: the engine's
    own, if declared) with *argv* as the command, attached to this terminal. Foreign
    platforms run under QEMU (*notify* hears the cost). Returns the container's exit code;
    never raises for it."""
    from mab import doctor as checkup
    from mab.pipeline import emulation

    if len(loaded.plan.targets) != 1:
        raise UsageError("mab run runs one target: name it")
    target = loaded.plan.targets[0]
    chosen = _run_platform(target, engine, platform)
    info = engine.info()
    emulated = not info.runs_natively(chosen)
    if emulated and checkup.local_engine(os.environ) and not emulation.host_runs(chosen):
        raise EngineError(
            f"{chosen} cannot run here: no QEMU emulator is registered for it",
            hint=checkup.BINFMT_FIX.format(arch=chosen.arch) + "; `mab doctor` checks it",
        )
    ref, source = _image_for(target, engine, chosen)
    notify(f"running {ref} ({chosen}, {'loaded image' if source == 'loaded' else 'published'})")
    if emulated:
        notify(
            f"{chosen} runs under QEMU emulation on this {info.platform or info.architecture} "
            "engine: expect CPU-bound work to be 5-20x slower than native"
        )
    ran = engine.run(ref, list(argv), str(chosen), capture=False)
    return RunOutcome(ref, str(chosen), source, emulated, ran.exit_code)
