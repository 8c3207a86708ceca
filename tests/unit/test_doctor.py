"""mab doctor without an engine: each check with the fake engine, each problem named with
its fix, the exit code and the JSON shape through the CLI. tests/integration/
test_everyday.py runs the same checks on the real engine, QEMU and registries."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import pytest
from typer.testing import CliRunner

from mab import api, doctor
from mab.cli.main import app
from mab.config.models import BuildsConfig
from mab.config.project import load_project
from mab.errors import RegistryError
from mab.signing import SignerFactory

from .fakes import FakeEngine
from .test_gates import FakeSigner

runner = CliRunner()
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
GIB = 1 << 30
PASSWORD = "s3cret-Pa55word-never-shown"


class Pinger:
    """A registry that answers GET /v2/ with *status*, or raises *error*."""

    def __init__(self, status: int = 200, error: RegistryError | None = None) -> None:
        self.status = status
        self.error = error
        self.hosts: list[str] = []

    def __call__(self, host: str) -> Pinger:
        self.hosts.append(host)
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def ping(self) -> int:
        if self.error is not None:
            raise self.error
        return self.status


def _binfmt(tmp_path: Path, *entries: str, state: str = "enabled") -> Path:
    folder = tmp_path / "binfmt"
    folder.mkdir(exist_ok=True)
    for name in entries:
        (folder / name).write_text(f"{state}\ninterpreter /usr/bin/{name}\nflags: F\n")
    return folder


def _config(tmp_path: Path, platforms: str = "linux/amd64, linux/arm64", extra: str = "") -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox:1.35\n")
    path = tmp_path / "builds.yaml"
    path.write_text(
        "registry: registry.test/team\n"
        f"platforms: [{platforms}]\n"
        "base_images:\n"
        "  busybox:1.35: mirror.test/mirror/busybox:1.35\n"
        "targets:\n"
        "  app: {context: app}\n" + extra
    )
    return path


def _plenty(path: Path) -> tuple[Path, int]:
    return path, 50 * GIB


def _check(
    tmp_path: Path,
    engine: FakeEngine | None = None,
    *,
    config: BuildsConfig | None = None,
    pinger: Pinger | None = None,
    user: str | None = None,
    environ: dict[str, str] | None = None,
    binfmt: Path | None = None,
    commit_time: int | None = None,
    free: Callable[[Path], tuple[Path, int]] = _plenty,
    signers: SignerFactory | None = None,
) -> dict[str, doctor.Check]:
    if config is None:
        config = load_project(_config(tmp_path)).config
    setup = doctor.Setup(
        config=config,
        registry=config.registry,
        environ=environ or {},
        now=NOW,
        commit_time=commit_time,
        binfmt=binfmt or _binfmt(tmp_path, "qemu-aarch64", "qemu-arm"),
        base=tmp_path,
        signers=signers or (lambda plan: FakeSigner(FakeEngine(), plan)),
    )
    report = doctor.run(engine or FakeEngine(), pinger or Pinger(), lambda host: user, setup, free)
    return {c.name: c for c in report.checks}


def test_everything_fine_passes_and_runs_each_foreign_platform(tmp_path: Path) -> None:
    engine = FakeEngine(driver="docker")
    pinger = Pinger()
    checks = _check(tmp_path, engine, pinger=pinger, commit_time=int(NOW.timestamp()) - 60)
    problems = [c for c in checks.values() if c.status != "ok"]
    assert problems == []
    assert checks["engine"].detail.startswith("Docker Engine 26.1.5 (linux/amd64)")
    assert checks["buildx"].detail == "buildx 0.29.1"
    assert checks["platform linux/amd64"].detail.startswith("native")
    assert "uname -m in mirror.test/mirror/busybox:1.35 says aarch64" in (
        checks["QEMU linux/arm64"].detail
    )
    # the busybox mirror is the probe; the native platform is not run
    assert [(image, platform) for image, _, platform, _ in engine.ran] == [
        ("mirror.test/mirror/busybox:1.35", "linux/arm64")
    ]
    # every registry builds.yaml names: the push registry and the mirror's host
    assert pinger.hosts == ["registry.test", "mirror.test"]


def test_no_docker_cli_is_named_with_the_fix(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.client = None
    check = _check(tmp_path, engine)["docker CLI"]
    assert check.status == "problem"
    assert "docker CLI was not found" in check.detail
    assert check.fix == "install the docker client"


def test_unreachable_engine_fails_and_skips_what_needs_it(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.reachable = False
    checks = _check(tmp_path, engine)
    assert checks["engine"].status == "problem"
    assert "cannot reach the Docker engine" in checks["engine"].detail
    assert checks["engine"].fix == "start dockerd"
    for name in ("builder (current)", "containerd image store", "platform linux/arm64"):
        assert checks[name].status == "skipped", name
    assert engine.ran == ()


def test_missing_buildx_is_named_with_the_fix(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.buildx = None
    check = _check(tmp_path, engine)["buildx"]
    assert check.status == "problem"
    assert "buildx plugin is missing" in check.detail
    assert "cli-plugins" in check.fix


def test_docker_driver_without_containerd_store_is_a_problem(tmp_path: Path) -> None:
    check = _check(tmp_path, FakeEngine(driver="docker", containerd=False))[
        "containerd image store"
    ]
    assert check.status == "problem"
    assert "docker-driver builder default" in check.detail
    assert "containerd-snapshotter" in check.fix


def test_containerd_store_not_needed_for_docker_container_driver(tmp_path: Path) -> None:
    check = _check(tmp_path, FakeEngine(driver="docker-container", containerd=False))[
        "containerd image store"
    ]
    assert check.status == "ok"
    assert "not needed" in check.detail


def test_builder_without_a_declared_platform_is_a_problem(tmp_path: Path) -> None:
    config = load_project(_config(tmp_path, "linux/amd64, linux/ppc64le")).config
    engine = FakeEngine(platforms=("linux/amd64",))
    checks = _check(tmp_path, engine, config=config)
    assert checks["builder default"].status == "problem"
    assert "cannot build linux/ppc64le" in checks["builder default"].detail
    assert "register QEMU" in checks["builder default"].fix


def test_missing_binfmt_entry_names_qemu_and_the_fix(tmp_path: Path) -> None:
    config = load_project(_config(tmp_path, "linux/amd64, linux/s390x")).config
    engine = FakeEngine(platforms=("linux/amd64", "linux/s390x"))
    checks = _check(tmp_path, engine, config=config)
    check = checks["QEMU linux/s390x"]
    assert check.status == "problem"
    assert "no emulator registered for linux/s390x" in check.detail
    assert "qemu-s390x is missing" in check.detail
    assert "tonistiigi/binfmt --install s390x" in check.fix
    assert engine.ran == ()  # nothing to run without an emulator


def test_registered_but_not_running_emulator_is_a_problem(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.run_exit = {"linux/arm64": 1}
    engine.run_stderr = "exec /bin/uname: exec format error"
    check = _check(tmp_path, engine)["QEMU linux/arm64"]
    assert check.status == "problem"
    assert "does not run" in check.detail and "exec format error" in check.detail
    assert "re-register QEMU" in check.fix


def test_probe_without_the_platform_falls_back_to_the_binfmt_entry(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.run_exit = {"linux/arm64": 125}
    engine.run_stderr = "docker: Error response from daemon: no match for platform in manifest"
    check = _check(tmp_path, engine)["QEMU linux/arm64"]
    assert check.status == "ok"
    assert "checked the binfmt entry only" in check.detail
    assert "has no linux/arm64 image" in check.detail


def test_without_a_probe_image_the_binfmt_entry_is_checked_and_said(tmp_path: Path) -> None:
    _config(tmp_path)  # the app folder
    path = tmp_path / "bare.yaml"
    path.write_text("platforms: [linux/amd64, linux/arm64]\ntargets:\n  app: {context: app}\n")
    engine = FakeEngine()
    check = _check(tmp_path, engine, config=load_project(path).config)["QEMU linux/arm64"]
    assert check.status == "ok"
    assert "no probe image" in check.detail and doctor.PROBE_ENV in check.detail
    assert engine.ran == ()
    # MAB_PROBE_IMAGE names one
    probed = _check(
        tmp_path, engine, config=load_project(path).config, environ={doctor.PROBE_ENV: "bb:1"}
    )
    assert probed["QEMU linux/arm64"].detail.endswith("uname -m in bb:1 says aarch64")


def test_refused_credentials_name_the_registry_and_user_never_the_password(
    tmp_path: Path,
) -> None:
    checks = _check(tmp_path, pinger=Pinger(401), user="tester")
    check = checks["registry registry.test"]
    assert check.status == "problem"
    assert "refused the stored credentials for tester (401)" in check.detail
    assert check.fix == "log in again: mab login registry.test -u tester --password-stdin"
    assert all(PASSWORD not in c.detail + c.fix for c in checks.values())


def test_registry_needing_a_login_without_credentials(tmp_path: Path) -> None:
    check = _check(tmp_path, pinger=Pinger(401))["registry registry.test"]
    assert check.status == "problem"
    assert "no credentials are stored" in check.detail
    assert check.fix.startswith("log in: mab login registry.test")


def test_unreachable_registry_is_a_problem_but_the_embedded_one_a_warning(
    tmp_path: Path,
) -> None:
    down = Pinger(error=RegistryError("cannot reach registry registry.test: refused", "up?"))
    check = _check(tmp_path, pinger=down)["registry registry.test"]
    assert (check.status, check.fix) == ("problem", "up?")
    path = tmp_path / "local.yaml"
    path.write_text("registry: localhost:5000/x\ntargets:\n  app: {context: app}\n")
    local = _check(tmp_path, config=load_project(path).config, pinger=down)
    assert local["registry localhost:5000"].status == "warning"
    assert "`mab build` starts the embedded registry" in local["registry localhost:5000"].detail


def test_publish_gates_are_checked_without_showing_a_secret(tmp_path: Path) -> None:
    plain = _check(tmp_path)["publish gates"]
    assert plain.status == "ok" and "none configured" in plain.detail
    signed = "signing: {key: cosign.key, public_key: cosign.pub}\n"
    config = load_project(_config(tmp_path, extra=signed)).config
    missing = _check(tmp_path, config=config, environ={"HOME": "/root"})["publish gates"]
    assert missing.status == "problem"
    assert "cosign.key does not exist" in missing.detail
    assert "COSIGN_PASSWORD (the signing key's password) is not set" in missing.detail
    assert "cosign generate-key-pair" in missing.fix
    (tmp_path / "cosign.key").write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    (tmp_path / "cosign.pub").write_text("-----BEGIN PUBLIC KEY-----\n")
    environ = {"COSIGN_PASSWORD": PASSWORD}
    fine = _check(tmp_path, config=config, environ=environ)["publish gates"]
    assert fine.status == "ok" and fine.detail.startswith("cosign v2.5.0"), fine.detail
    gone = _check(
        tmp_path,
        config=config,
        environ=environ,
        signers=lambda plan: FakeSigner(FakeEngine(), plan, missing="cosign"),
    )["publish gates"]
    assert gone.status == "problem" and "cosign was not found on PATH" in gone.detail
    assert PASSWORD not in json.dumps([c.to_dict() for c in (missing, fine, gone)])


def test_disk_low_warns_and_full_fails(tmp_path: Path) -> None:
    low = _check(tmp_path, free=lambda path: (path, GIB))
    assert low["disk (engine)"].status == "warning"
    assert "1.0 GiB free on /var/lib/docker" in low["disk (engine)"].detail
    assert "docker builder prune" in low["disk (engine)"].fix
    full = _check(tmp_path, free=lambda path: (path, 100 << 20))
    assert full["disk (engine)"].status == "problem"
    assert full["disk (embedded registry)"].status == "problem"
    assert "mab clean" in full["disk (embedded registry)"].fix


def test_remote_engine_disk_is_not_read_here(tmp_path: Path) -> None:
    engine = FakeEngine()
    checks = _check(tmp_path, engine, environ={"DOCKER_HOST": "tcp://build.example:2376"})
    assert "another machine" in checks["disk (engine)"].detail


@pytest.mark.parametrize(
    ("value", "status", "said"),
    [
        ("1700000000", "ok", "1700000000 (2023-11-14"),
        ("yesterday", "problem", "not a whole number"),
        ("4102444800", "problem", "in the future"),
    ],
)
def test_source_date_epoch(value: str, status: str, said: str) -> None:
    check = doctor.check_source_date_epoch({"SOURCE_DATE_EPOCH": value}, NOW)
    assert check.status == status
    assert said in check.detail
    if status == "problem":
        assert "git log -1 --format=%ct" in check.fix


def test_clock_before_the_last_commit_is_a_problem() -> None:
    check = doctor.check_clock(NOW, int(NOW.timestamp()) + 86400)
    assert check.status == "problem"
    assert "before the last commit" in check.detail
    assert "timedatectl" in check.fix
    assert doctor.check_clock(NOW, int(NOW.timestamp()) - 10).status == "ok"
    assert doctor.check_clock(NOW, None).status == "ok"


# --- through the CLI ------------------------------------------------------------------------


@pytest.fixture
def fake_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeEngine:
    engine = FakeEngine(driver="docker")
    monkeypatch.setattr(api, "docker_engine", lambda: engine)
    monkeypatch.setattr(api, "_doctor_client", Pinger())
    monkeypatch.setattr(api, "_stored_user", lambda host: None)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("MAB_REGISTRIES_DIR", str(tmp_path / "registries"))
    return engine


def test_cli_exit_0_and_a_table_on_stdout(fake_cli: FakeEngine, tmp_path: Path) -> None:
    path = _config(tmp_path, "linux/amd64")  # native only: no binfmt needed on this host
    result = runner.invoke(app, ["doctor", "-f", str(path)])
    assert result.exit_code == 0, result.output
    assert "Docker Engine 26.1.5" in result.stdout and "registry registry.test" in result.stdout
    assert "checks passed" in result.stderr and "checks passed" not in result.stdout


def test_cli_exit_1_naming_the_engine_and_json_shape(fake_cli: FakeEngine, tmp_path: Path) -> None:
    fake_cli.reachable = False
    path = _config(tmp_path, "linux/amd64")
    result = runner.invoke(app, ["doctor", "-f", str(path), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert all(set(c) == {"name", "status", "ok", "detail", "fix"} for c in data["checks"])
    engine = next(c for c in data["checks"] if c["name"] == "engine")
    assert engine["status"] == "problem" and engine["ok"] is False
    assert engine["fix"] == "start dockerd"
    assert "1 problem: engine" in result.stderr


def test_cli_invalid_builds_yaml_is_a_problem_not_a_crash(
    fake_cli: FakeEngine, tmp_path: Path
) -> None:
    path = tmp_path / "builds.yaml"
    path.write_text("targets:\n  app:\n    context: app\n    tagz: [a]\n")
    result = runner.invoke(app, ["doctor", "-f", str(path)])
    assert result.exit_code == 1
    assert "unknown key 'tagz'" in result.stdout
    missing = runner.invoke(app, ["doctor", "-f", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1
    assert "does not exist" in missing.stdout


def test_help_works() -> None:
    result = runner.invoke(app, ["doctor", "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: mab doctor" in result.stdout and "--json" in result.stdout
