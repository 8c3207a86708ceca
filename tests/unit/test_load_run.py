"""mab build --load and mab run without an engine: what is asked of the engine (the
docker exporter under the planned tags, no push, no registry cache export), the usage
errors, which image mab run picks and its exit code. tests/integration/test_everyday.py
runs both on the real engine and checks the registry with crane."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mab import api
from mab.cli.main import app
from mab.errors import EngineError, RegistryError, UsageError
from mab.pipeline import emulation
from mab.pipeline.load import load_targets
from mab.pipeline.results import JobStatus, PlatformResult, TargetResult
from mab.planning.plan import Job

from .fakes import INDEX, FakeEngine, digest_of

runner = CliRunner()

CONFIG = """\
registry: registry.test/team
platforms: [linux/amd64, linux/arm64]
targets:
  app: {context: app, tags: ["1.0", latest]}
  api: {context: app, tags: [edge]}
"""


class Quiet:
    """A Reporter that keeps what it heard."""

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.finished: list[PlatformResult] = []

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def warning(self, message: str) -> None:
        self.notices.append(message)

    def job_started(self, job: Job) -> None:
        return None

    def job_log(self, job: Job, line: str) -> None:
        return None

    def job_finished(self, job: Job, result: PlatformResult) -> None:
        self.finished.append(result)

    def target_finished(self, result: TargetResult) -> None:
        raise AssertionError("--load publishes no target")


@pytest.fixture
def config(write_config: Callable[[str], Path]) -> Path:
    return write_config(CONFIG)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine(driver="docker")
    monkeypatch.setattr(api, "docker_engine", lambda: fake)
    return fake


def _no_engine() -> FakeEngine:
    raise AssertionError("a usage error must not touch the engine")


# --- mab build --load -----------------------------------------------------------------------


def test_load_builds_with_the_docker_exporter_under_the_planned_refs(config: Path) -> None:
    engine = FakeEngine(driver="docker")
    loaded = api.load(config, platforms=["linux/arm64"])
    report = load_targets(loaded.plan, engine, Quiet())
    assert report.ok
    assert sorted((r.load, r.load_names, str(r.platform)) for r in engine.builds) == [
        (True, ("registry.test/team/api:edge",), "linux/arm64"),
        (True, ("registry.test/team/app:1.0", "registry.test/team/app:latest"), "linux/arm64"),
    ]
    # the registry cache export would write to the registry: dropped; reading it stays
    assert all(r.cache_to is None and r.cache_from for r in engine.builds)
    assert sorted(report.dropped_cache) == ["api linux/arm64", "app linux/arm64"]
    assert engine.store.tags == {}  # no tag written anywhere
    assert [(i.target, i.refs) for i in report.loaded] == [
        ("app", ("registry.test/team/app:1.0", "registry.test/team/app:latest")),
        ("api", ("registry.test/team/api:edge",)),
    ]


def test_load_keeps_a_local_cache_export(write_config: Callable[[str], Path]) -> None:
    path = write_config(CONFIG + "cache: {type: local}\n")
    engine = FakeEngine()
    report = load_targets(api.load(path, ["app"], ["linux/amd64"]).plan, engine, Quiet())
    assert report.dropped_cache == []
    assert engine.builds[0].cache_to is not None
    assert engine.builds[0].cache_to["type"] == "local"


def test_load_failure_is_reported_and_the_others_still_load(config: Path) -> None:
    engine = FakeEngine(fail=lambda r: "api" in r.repository)
    report = load_targets(api.load(config, platforms=["linux/amd64"]).plan, engine, Quiet())
    assert not report.ok
    assert [(f.target, f.status) for f in report.failed] == [("api", JobStatus.FAILED)]
    assert [i.target for i in report.loaded] == ["app"]


def test_load_refuses_a_platform_the_builder_cannot_build(config: Path, tmp_path: Path) -> None:
    engine = FakeEngine(platforms=("linux/amd64",))
    plan = api.load(config, platforms=["linux/arm64"]).plan
    with pytest.raises(EngineError) as caught:
        load_targets(plan, engine, Quiet(), binfmt=tmp_path)
    assert "cannot build linux/arm64" in caught.value.message
    assert "mab doctor" in (caught.value.hint or "")
    assert engine.builds == []


def test_api_load_images_wants_one_platform(config: Path) -> None:
    with pytest.raises(UsageError, match="one platform at a time"):
        api.load_images(api.load(config), FakeEngine(), Quiet())


def test_cli_load_prints_one_ref_per_line_on_stdout(config: Path, engine: FakeEngine) -> None:
    result = runner.invoke(app, ["build", "--load", "-f", str(config), "-t", "app"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "registry.test/team/app:1.0",
        "registry.test/team/app:latest",
    ]
    assert [str(r.platform) for r in engine.builds] == ["linux/amd64"]  # the engine's own
    assert "loaded 1 image for linux/amd64" in result.stderr
    assert "nothing was pushed" in result.stderr


def test_cli_load_report_and_exit_1_on_failure(
    config: Path, engine: FakeEngine, tmp_path: Path
) -> None:
    engine.fail = lambda r: True
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["build", "--load", "-f", str(config), "--report", str(out)])
    assert result.exit_code == 1
    assert result.stdout == ""
    data = json.loads(out.read_text())
    assert data["ok"] is False and data["loaded"] == []
    assert {f["target"] for f in data["failed"]} == {"app", "api"}


def test_cli_load_with_push_by_digest_is_a_usage_error(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "docker_engine", _no_engine)
    result = runner.invoke(app, ["build", "--load", "--push-by-digest", "-f", str(config)])
    assert result.exit_code == 2
    assert "--load" in result.stderr and "--push-by-digest" in result.stderr
    assert "Traceback" not in result.output


def test_cli_load_with_two_platforms_is_a_usage_error_with_the_fix(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "docker_engine", _no_engine)
    result = runner.invoke(
        app, ["build", "--load", "-p", "linux/amd64", "-p", "linux/arm64", "-f", str(config)]
    )
    assert result.exit_code == 2
    assert "--load builds one platform" in result.stderr
    assert "mab build --load --platform linux/amd64" in result.stderr


# --- mab run --------------------------------------------------------------------------------


def _publish(engine: FakeEngine, repo: str, tag: str, platforms: list[str]) -> str:
    """An index in the fake registry, with one image per platform."""
    entries = []
    for platform in platforms:
        os_, arch = platform.split("/")[:2]
        body = json.dumps({"p": platform}).encode()
        digest = digest_of(body)
        engine.store.blobs.setdefault(repo, {})[digest] = (INDEX, body)
        entries.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": len(body),
                "platform": {"os": os_, "architecture": arch},
            }
        )
    index = json.dumps({"mediaType": INDEX, "manifests": entries}).encode()
    digest = digest_of(index)
    engine.store.blobs[repo][digest] = (INDEX, index)
    engine.store.tags.setdefault(repo, {})[tag] = digest
    return digest


def test_run_prefers_the_loaded_image_of_that_platform(config: Path) -> None:
    engine = FakeEngine()
    load_targets(api.load(config, ["app"], ["linux/arm64"]).plan, engine, Quiet())
    heard: list[str] = []
    outcome = api.run(
        api.load(config, ["app"]),
        engine,
        platform="linux/arm64",
        argv=["uname", "-m"],
        notify=heard.append,
    )
    assert (outcome.ref, outcome.source, outcome.emulated) == (
        "registry.test/team/app:1.0",
        "loaded",
        True,
    )
    assert engine.ran[-1] == ("registry.test/team/app:1.0", ("uname", "-m"), "linux/arm64", False)
    assert any("QEMU" in note and "slower" in note for note in heard)


def test_run_falls_back_to_the_published_index_by_digest(config: Path) -> None:
    engine = FakeEngine()
    engine.local_images = {"registry.test/team/app:1.0": "linux/amd64"}  # another platform
    digest = _publish(engine, "registry.test/team/app", "1.0", ["linux/amd64", "linux/arm64"])
    outcome = api.run(api.load(config, ["app"]), engine, platform="linux/arm64")
    assert (outcome.ref, outcome.source) == (f"registry.test/team/app@{digest}", "registry")
    native = api.run(api.load(config, ["app"]), engine)  # default: the engine's own
    assert (native.ref, native.platform, native.emulated) == (
        "registry.test/team/app:1.0",
        "linux/amd64",
        False,
    )


def test_run_without_any_image_says_how_to_make_one(config: Path) -> None:
    with pytest.raises(RegistryError) as caught:
        api.run(api.load(config, ["app"]), FakeEngine(), platform="linux/arm64")
    assert "no linux/arm64 image of 'app' to run" in caught.value.message
    assert "mab build --load -t app --platform linux/arm64" in (caught.value.hint or "")


def test_run_index_without_the_platform(config: Path) -> None:
    engine = FakeEngine()
    _publish(engine, "registry.test/team/app", "1.0", ["linux/amd64"])
    with pytest.raises(RegistryError, match="has no linux/arm64 image"):
        api.run(api.load(config, ["app"]), engine, platform="linux/arm64")


def test_cli_run_exits_with_the_container_code(
    config: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulation, "host_runs", lambda platform: True)
    engine.local_images = {"registry.test/team/app:1.0": "linux/arm64"}
    engine.run_exit = {"linux/arm64": 3}
    result = runner.invoke(
        app, ["run", "app", "-f", str(config), "-p", "linux/arm64", "--", "sh", "-c", "exit 3"]
    )
    assert result.exit_code == 3, result.output
    assert engine.ran[-1][1] == ("sh", "-c", "exit 3")
    assert "QEMU" in result.stderr


def test_cli_run_undeclared_platform_is_a_usage_error(config: Path, engine: FakeEngine) -> None:
    result = runner.invoke(app, ["run", "app", "-f", str(config), "-p", "linux/s390x"])
    assert result.exit_code == 2
    assert "does not declare linux/s390x" in result.stderr
    assert engine.ran == ()


def test_cli_run_unregistered_emulator_names_the_fix(
    config: Path, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulation, "host_runs", lambda platform: False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    result = runner.invoke(app, ["run", "app", "-f", str(config), "-p", "linux/arm64"])
    assert result.exit_code == 1
    assert "no QEMU emulator is registered" in result.stderr
    assert "tonistiigi/binfmt --install arm64" in result.stderr


@pytest.mark.parametrize("command", [["run"], ["build"]])
def test_new_commands_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def test_build_help_shows_load() -> None:
    result = runner.invoke(app, ["build", "--help"])
    assert "--load" in result.stdout
