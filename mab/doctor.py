"""``mab doctor``: the set-up checks a build depends on, each one line with its fix.

Each check is a function returning ``Check`` records. It takes the seams it needs (an
``Engine``, a factory of registry clients that can ``ping``, the environment, the clock,
a free-space reader), so unit tests run every check with fakes; ``mab.api.doctor``
passes the real ones. A check that cannot run because an earlier one failed (no engine:
no builder, no QEMU run) is reported as skipped, not as a second failure.

Why a probe run for QEMU: a binfmt_misc entry can be registered and still not run code
(an interpreter path gone after an upgrade, a missing F flag inside containers), so an
emulated platform counts as working only when a container of it answered ``uname -m``.
Without a probe image (none named, or it lacks the platform) the check falls back to
the binfmt_misc entry and says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, Self

from mab.config.models import BuildsConfig
from mab.engine.base import BuilderInfo, Engine, EngineInfo
from mab.errors import MabError
from mab.pipeline import emulation
from mab.pipeline.gates import GATES_HINT, gate_problems
from mab.planning.plan import route
from mab.planning.supply import gates_for
from mab.platforms import Platform, PlatformValueError
from mab.registry import server
from mab.signing import Cosign, SignerFactory

LOW_DISK = 2 << 30  # warn below 2 GiB free
FULL_DISK = 512 << 20  # fail below 512 MiB free
CLOCK_SLACK = 300  # seconds a clock may lag a commit's time (another machine's clock)
PROBE_ENV = "MAB_PROBE_IMAGE"  # an image with `uname` for every declared platform
_PROBE_NAMES = ("busybox", "alpine")  # base images known to have `uname`

BINFMT_FIX = (
    "register QEMU for it: docker run --privileged --rm tonistiigi/binfmt --install {arch} "
    "(on a machine without internet: sudo scripts/engine-up), or route the platform to a "
    "native builder (builders: in builds.yaml)"
)


@dataclass(frozen=True)
class Check:
    """One line of ``mab doctor``: what was checked, whether it is fine, what was found
    and, for a problem, the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # a problem worth a look that does not fail the doctor
    skipped: bool = False  # not run, because an earlier check failed

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.warning:
            return "warning"
        return "ok" if self.ok else "problem"

    @property
    def fails(self) -> bool:
        return not self.ok and not self.warning and not self.skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "ok": self.status in ("ok", "warning"),
            "detail": self.detail,
            "fix": self.fix or None,
        }


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.fails for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.fails]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


class Pinger(Protocol):
    """A registry client that can check the stored credentials (``RegistryClient``)."""

    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
    def ping(self) -> int: ...


class PingerFactory(Protocol):
    def __call__(self, host: str) -> Pinger: ...


def _skipped(name: str, why: str) -> Check:
    return Check(name, False, f"not checked: {why}", skipped=True)


# --- the docker CLI, the engine, buildx ----------------------------------------------------


def check_cli(engine: Engine) -> Check:
    try:
        version = engine.client_version()
    except MabError as exc:
        return Check("docker CLI", False, exc.message, exc.hint or "install the docker client")
    return Check("docker CLI", True, f"docker {version}")


def check_engine(engine: Engine, environ: Mapping[str, str]) -> tuple[Check, EngineInfo | None]:
    where = environ.get("DOCKER_HOST") or "the default socket"
    try:
        info = engine.info()
    except MabError as exc:
        fix = exc.hint or "start dockerd, or point DOCKER_HOST at a running engine"
        return Check("engine", False, exc.message, fix), None
    platform = info.platform or info.architecture
    return (
        Check(
            "engine",
            True,
            f"Docker Engine {info.server_version} ({platform}) answers at {where}",
        ),
        info,
    )


def check_buildx(engine: Engine) -> Check:
    try:
        version = engine.buildx_version()
    except MabError as exc:
        return Check(
            "buildx",
            False,
            exc.message,
            exc.hint or "install buildx into ~/.docker/cli-plugins",
        )
    return Check("buildx", True, f"buildx {version}")


# --- builders and the containerd image store -----------------------------------------------


def wanted_builders(config: BuildsConfig | None) -> dict[str | None, set[str]]:
    """Builder name (None: the current one) -> the declared platforms routed to it."""
    if config is None:
        return {None: set()}
    wanted: dict[str | None, set[str]] = {}
    for platform in declared_platforms(config):
        name = route(platform, config.builders, config.builder).builder
        wanted.setdefault(name, set()).add(str(platform))
    return wanted or {config.builder: set()}


def declared_platforms(config: BuildsConfig) -> list[Platform]:
    """Every platform a target of *config* declares, in a stable order."""
    found: set[Platform] = set()
    for target in config.targets.values():
        for text in target.platforms or config.platforms:
            try:
                found.add(Platform.parse(text))
            except PlatformValueError:
                continue
    return sorted(found)


def check_builders(
    engine: Engine,
    wanted: Mapping[str | None, set[str]],
    *,
    local_engine: bool,
    binfmt: Path = emulation.BINFMT,
) -> tuple[list[Check], list[tuple[str | None, BuilderInfo]]]:
    """Each builder the plan routes to: reachable, its driver, and the platforms routed
    to it offered (by BuildKit, or by QEMU on this host for a local builder). Returns the
    checks and what each builder (by the name asked, None: the current one) reported."""
    checks: list[Check] = []
    found: list[tuple[str | None, BuilderInfo]] = []
    for name, platforms in wanted.items():
        label = f"builder {name or '(current)'}"
        try:
            builder = engine.builder(name)
        except MabError as exc:
            fix = exc.hint or (
                f"create it: mab builders create (builds.yaml declares '{name}')"
                if name
                else "select a working builder: docker buildx use NAME"
            )
            checks.append(Check(label, False, exc.message, fix))
            continue
        found.append((name, builder))
        label = f"builder {builder.name}" if name is None else label
        offered = set()
        for text in builder.platforms:
            try:
                offered.add(str(Platform.parse(text.rstrip("*"))))
            except PlatformValueError:
                continue
        missing = sorted(p for p in platforms if p not in offered)
        emulated = [
            p
            for p in missing
            if builder.local and local_engine and emulation.host_runs(Platform.parse(p), binfmt)
        ]
        missing = [p for p in missing if p not in emulated]
        shown = ", ".join(sorted(offered)) or "nothing"
        detail = f"{builder.driver} driver, {builder.status}; offers {shown}"
        if emulated:
            detail += f" (and {', '.join(emulated)} through QEMU on this host)"
        if missing:
            checks.append(
                Check(
                    label,
                    False,
                    f"{detail}; cannot build {', '.join(missing)}",
                    "register QEMU for it (see the QEMU lines), or route the platform to a "
                    "builder that has it (builders: in builds.yaml)",
                )
            )
        else:
            checks.append(Check(label, True, detail))
    return checks, found


def check_containerd_store(
    engine: Engine, info: EngineInfo, builders: Sequence[tuple[str | None, BuilderInfo]]
) -> Check:
    """The containerd image store, needed where a docker-driver builder pushes several
    platforms (buildx's docker driver cannot push by digest without it)."""
    name = "containerd image store"
    docker_builders = [(asked, b) for asked, b in builders if b.driver == "docker"]
    if not docker_builders:
        state = "on" if info.containerd_store else "off"
        return Check(name, True, f"{state}; not needed: no builder uses the docker driver")
    off: list[str] = []
    for asked, builder in docker_builders:
        if asked is None:  # the current builder: the engine `docker info` described
            enabled = info.containerd_store
        else:  # a docker driver builder is a docker context, maybe of another engine
            try:
                enabled = engine.uses_containerd_store(builder.name)
            except MabError as exc:
                return Check(name, False, exc.message, exc.hint or "")
        if not enabled:
            off.append(builder.name)
    if off:
        return Check(
            name,
            False,
            f"off for the docker-driver builder {', '.join(off)}: it cannot build "
            "multi-platform images or push them by digest",
            'enable it in /etc/docker/daemon.json ({"features": {"containerd-snapshotter": '
            "true}}) and restart dockerd, or use a docker-container builder: docker buildx "
            "create --use --driver docker-container",
        )
    return Check(name, True, "on (needed by the docker-driver builder)")


# --- QEMU -----------------------------------------------------------------------------------


def probe_image(config: BuildsConfig | None, environ: Mapping[str, str]) -> str | None:
    """An image with ``uname`` to run per platform: $MAB_PROBE_IMAGE, else the mirror
    builds.yaml maps busybox or alpine to."""
    if environ.get(PROBE_ENV):
        return environ[PROBE_ENV]
    if config is None:
        return None
    for name, mirror in sorted(config.base_images.items()):
        repo = name.split(":", 1)[0].split("@", 1)[0].rsplit("/", 1)[-1]
        if repo in _PROBE_NAMES:
            return mirror
    return None


def _binfmt_state(platform: Platform, binfmt: Path) -> tuple[str, str]:
    """(entry name, 'enabled' | 'disabled' | 'missing') of *platform*'s QEMU entry."""
    qemu = emulation.QEMU_NAMES.get(platform.arch)
    if qemu is None:
        return "", "missing"
    entry = binfmt / f"qemu-{qemu}"
    try:
        first = entry.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError):
        return entry.name, "missing"
    return entry.name, "enabled" if first == "enabled" else "disabled"


_NO_IMAGE = ("no match for platform", "no matching manifest", "not found", "manifest unknown")


def check_emulation(
    engine: Engine,
    info: EngineInfo,
    platforms: Iterable[Platform],
    probe: str | None,
    *,
    local_engine: bool,
    binfmt: Path = emulation.BINFMT,
) -> list[Check]:
    """Each declared platform: native, or QEMU registered and really running its code."""
    checks: list[Check] = []
    host = info.platform
    for platform in platforms:
        if info.runs_natively(platform):
            checks.append(
                Check(f"platform {platform}", True, f"native on this {host or 'engine'} engine")
            )
            continue
        checks.append(_check_qemu(engine, platform, probe, local_engine, binfmt))
    return checks


def _check_qemu(
    engine: Engine, platform: Platform, probe: str | None, local_engine: bool, binfmt: Path
) -> Check:
    name = f"QEMU {platform}"
    fix = BINFMT_FIX.format(arch=platform.arch)
    entry, state = _binfmt_state(platform, binfmt)
    if local_engine and state != "enabled":
        what = f"binfmt_misc entry {entry} is {state}" if entry else "no QEMU name known"
        return Check(
            name, False, f"no emulator registered for {platform} ({what}, in {binfmt})", fix
        )
    registered = f"binfmt {entry} enabled" if local_engine else "a remote engine"
    if probe is None:
        if not local_engine:
            return Check(
                name,
                True,
                "not run: no probe image, and the engine is remote (binfmt not readable here)",
                warning=True,
                fix=f"set {PROBE_ENV} to an image with uname for {platform} to run one",
            )
        return Check(
            name,
            True,
            f"{registered} (checked the binfmt entry only: no probe image; set "
            f"{PROBE_ENV} to an image with uname to run one)",
        )
    ran = engine.run(probe, ["uname", "-m"], str(platform))
    if ran.exit_code == 0:
        return Check(
            name, True, f"{registered}; runs: uname -m in {probe} says {ran.stdout.strip()}"
        )
    said = " ".join((ran.stderr or ran.stdout).split())
    if "exec format error" in said.lower() or ran.exit_code in (126, 127, 139):
        return Check(
            name,
            False,
            f"{registered}, but {platform} code does not run ({said[-160:] or ran.exit_code})",
            "re-register QEMU (its interpreter may be gone): docker run --privileged --rm "
            f"tonistiigi/binfmt --install {platform.arch} (offline: sudo scripts/engine-up)",
        )
    if any(text in said.lower() for text in _NO_IMAGE) or ran.exit_code == 125:
        if not local_engine:
            return Check(
                name,
                True,
                f"not run: {probe} has no {platform} image ({said[-120:]})",
                warning=True,
                fix=f"set {PROBE_ENV} to an image with uname for {platform}",
            )
        return Check(
            name,
            True,
            f"{registered} (checked the binfmt entry only: {probe} has no {platform} image)",
        )
    return Check(
        name,
        False,
        f"{registered}, but `uname -m` in {probe} failed ({ran.exit_code}: {said[-160:]})",
        fix,
    )


# --- registries -----------------------------------------------------------------------------


def registry_hosts(config: BuildsConfig | None, registry: str | None) -> list[str]:
    """Every registry host builds.yaml names: the push registry, registries: entries and
    the hosts of base image mirrors."""
    hosts: list[str] = []
    if registry:
        hosts.append(registry.split("/", 1)[0])
    if config is not None:
        hosts += list(config.registries)
        for mirror in config.base_images.values():
            first = mirror.split("/", 1)[0]
            if "/" in mirror and ("." in first or ":" in first or first == "localhost"):
                hosts.append(first)
    return list(dict.fromkeys(hosts))


def check_registry(
    host: str,
    registries: PingerFactory,
    stored_user: Callable[[str], str | None],
    *,
    embedded: bool = False,
) -> Check:
    """*host* answers the registry API, and accepts the credentials docker stored for it
    (never shown: only the user name is)."""
    name = f"registry {host}"
    try:
        user = stored_user(host)
    except MabError as exc:
        return Check(name, False, exc.message, exc.hint or "")
    try:
        with registries(host) as client:
            status = client.ping()
    except MabError as exc:
        if embedded:
            return Check(
                name,
                True,
                f"not running ({exc.message}); `mab build` starts the embedded registry",
                f"or start it now: mab registry up --port {server.local_port(host)}",
                warning=True,
            )
        return Check(name, False, exc.message, exc.hint or "start it, or check the host name")
    if status == 200:
        who = f"credentials of {user} accepted" if user else "no login needed"
        return Check(name, True, f"reachable; {who}")
    if status == 401 and user:
        return Check(
            name,
            False,
            f"reachable, but it refused the stored credentials for {user} (401)",
            f"log in again: mab login {host} -u {user} --password-stdin",
        )
    if status == 401:
        return Check(
            name,
            False,
            "reachable, but it needs a login and no credentials are stored for it (401)",
            f"log in: mab login {host} -u USER --password-stdin",
        )
    return Check(name, False, f"GET /v2/ answered {status}", "check the host name and port")


# --- publish gates ---------------------------------------------------------------------------


def check_gates(
    config: BuildsConfig, base: Path, environ: Mapping[str, str], signers: SignerFactory
) -> Check:
    """The signing and scan gates builds.yaml configures can run: cosign runs and can
    sign, key files exist, the key and password variables are set (never read into a
    message), the scanner is found. The same checks ``mab build`` and ``mab merge`` run
    before they start."""
    name = "publish gates"
    used = [
        (target, gates)
        for target in config.targets
        if (gates := gates_for(config, target, base)).signing is not None or gates.scan is not None
    ]
    if not used:
        return Check(name, True, "none configured (no signing: or scan: in builds.yaml)")
    problems, checked = gate_problems(used, environ, signers)
    if problems:
        return Check(name, False, "; ".join(problems), GATES_HINT)
    ran = ", ".join(checked) or "no signing"
    count = f"{len(used)} target{'s' if len(used) != 1 else ''}"
    return Check(name, True, f"{ran}; keys, variables and scanners there for {count}")


# --- disk, SOURCE_DATE_EPOCH, clock ---------------------------------------------------------


def free_bytes(path: Path) -> tuple[Path, int]:
    """Free bytes on the file system of *path* (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe, shutil.disk_usage(probe).free


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB"


def check_disk(
    name: str,
    path: Path,
    fix: str,
    free: Callable[[Path], tuple[Path, int]] = free_bytes,
) -> Check:
    try:
        where, left = free(path)
    except OSError as exc:
        return Check(name, True, f"not checked: {path}: {exc.strerror or exc}", warning=True)
    detail = f"{_gib(left)} free on {where}"
    if left < FULL_DISK:
        return Check(name, False, f"{detail}: builds and pushes will fail", fix)
    if left < LOW_DISK:
        return Check(name, True, f"{detail} (under {_gib(LOW_DISK)})", fix, warning=True)
    return Check(name, True, detail)


def _when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_source_date_epoch(environ: Mapping[str, str], now: datetime) -> Check:
    name = "SOURCE_DATE_EPOCH"
    text = environ.get("SOURCE_DATE_EPOCH")
    if text is None:
        return Check(name, True, "not set: builds stamp the last commit's time")
    fix = "export SOURCE_DATE_EPOCH=$(git log -1 --format=%ct), or unset it"
    if not text.strip().isdigit():
        return Check(
            name,
            False,
            f"'{text}' is not a whole number of seconds since 1970: mab ignores it",
            fix,
        )
    value = int(text.strip())
    if value > now.timestamp() + CLOCK_SLACK:
        return Check(name, False, f"{value} ({_when(value)}) is in the future", fix)
    return Check(name, True, f"{value} ({_when(value)})")


def check_clock(now: datetime, commit_time: int | None) -> Check:
    name = "clock"
    shown = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if commit_time is None:
        return Check(name, True, f"{shown} (no git commit to compare with)")
    if now.timestamp() + CLOCK_SLACK < commit_time:
        return Check(
            name,
            False,
            f"{shown} is before the last commit ({_when(commit_time)}): date tags and "
            "labels would be wrong",
            "set the system time (timedatectl set-ntp true, or date -s)",
        )
    return Check(name, True, f"{shown}, after the last commit ({_when(commit_time)})")


# --- all of it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What the checks read besides the engine: builds.yaml (if any) and the machine."""

    config: BuildsConfig | None = None
    config_check: Check | None = None  # builds.yaml: read, missing, or its error
    registry: str | None = None  # where builds push (builds.yaml's or the default)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    commit_time: int | None = None
    binfmt: Path = emulation.BINFMT
    base: Path = field(default_factory=Path.cwd)  # builds.yaml's folder: key paths are relative
    signers: SignerFactory = Cosign  # the publish gates' signer (tests pass a fake)


def local_engine(environ: Mapping[str, str]) -> bool:
    """True when the engine runs on this machine (its binfmt_misc and disks are ours)."""
    host = environ.get("DOCKER_HOST", "")
    return not host or host.startswith("unix://")


def run(
    engine: Engine,
    registries: PingerFactory,
    stored_user: Callable[[str], str | None],
    setup: Setup,
    free: Callable[[Path], tuple[Path, int]] = free_bytes,
) -> Report:
    """Every check, in the order a fix is best made: CLI, engine, buildx, builders,
    image store, QEMU, registries, publish gates, disk, SOURCE_DATE_EPOCH, clock."""
    report = Report()
    add = report.checks.append
    local = local_engine(setup.environ)
    config = setup.config
    if setup.config_check is not None:
        add(setup.config_check)
    add(check_cli(engine))
    engine_check, info = check_engine(engine, setup.environ)
    add(engine_check)
    add(check_buildx(engine))
    wanted = wanted_builders(config)
    platforms = declared_platforms(config) if config is not None else []
    if info is None:
        for name in wanted:
            add(_skipped(f"builder {name or '(current)'}", "no engine"))
        add(_skipped("containerd image store", "no engine"))
        for platform in platforms:
            add(_skipped(f"platform {platform}", "no engine"))
    else:
        checks, builders = check_builders(engine, wanted, local_engine=local, binfmt=setup.binfmt)
        for check in checks:
            add(check)
        add(check_containerd_store(engine, info, builders))
        probe = probe_image(config, setup.environ)
        for check in check_emulation(
            engine, info, platforms, probe, local_engine=local, binfmt=setup.binfmt
        ):
            add(check)
    embedded = setup.registry.split("/", 1)[0] if setup.registry else None
    for host in registry_hosts(config, setup.registry):
        is_embedded = host == embedded and server.local_port(host) is not None
        add(check_registry(host, registries, stored_user, embedded=is_embedded))
    if config is not None:
        add(check_gates(config, setup.base, setup.environ, setup.signers))
    prune = "free space: docker builder prune (build cache), docker image prune -a"
    if info is None:
        add(_skipped("disk (engine)", "no engine"))
    elif not local or not info.data_root:
        add(Check("disk (engine)", True, "not checked: the engine's disk is on another machine"))
    else:
        add(check_disk("disk (engine)", Path(info.data_root), prune, free))
    registry_dir = server.data_dir(server.EMBEDDED_PORT)
    add(
        check_disk(
            "disk (embedded registry)",
            registry_dir,
            "free space: mab clean --yes, then mab registry gc",
            free,
        )
    )
    add(check_source_date_epoch(setup.environ, setup.now))
    add(check_clock(setup.now, setup.commit_time))
    return report
