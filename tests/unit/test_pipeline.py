"""The pipeline's publishing rules, against a fake engine (the integration tests run the
same rules on a real engine and registry)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mab.config.project import load_project
from mab.engine.base import BuilderInfo
from mab.errors import EngineError
from mab.pipeline import emulation
from mab.pipeline.audit import run_verify
from mab.pipeline.build import run_build
from mab.pipeline.preflight import preflight
from mab.pipeline.promote import promote
from mab.pipeline.results import JobStatus, TargetStatus
from mab.planning.plan import Plan, make_plan
from mab.planning.tags import TagContext
from mab.registry import server as registryserver

from .fakes import FakeEngine, Recorder

CONFIG = """\
registry: registry.test/demo
platforms: [linux/amd64, linux/arm64, linux/arm/v7]
targets:
  good: {context: app, tags: ["1.0", latest]}
  bad: {context: app, tags: ["2.0", latest]}
"""


@pytest.fixture
def plan(write_config: Callable[[str], Path]) -> Plan:
    return make_plan(load_project(write_config(CONFIG)))


def run(plan: Plan, engine: FakeEngine, recorder: Recorder | None = None) -> Any:
    return run_build(plan, engine, recorder or Recorder(), registries=engine.registry)


def test_all_platforms_built_then_one_index_under_every_tag(plan: Plan) -> None:
    engine = FakeEngine()
    report = run(plan, engine)
    assert report.ok
    assert len(engine.builds) == 6
    assert {t.name: t.status for t in report.targets} == {
        "good": TargetStatus.PUBLISHED,
        "bad": TargetStatus.PUBLISHED,
    }
    good = report.targets[0]
    tags = engine.store.tags["registry.test/demo/good"]
    assert tags["1.0"] == tags["latest"] == good.index_digest
    assert all(p.compressed_size == 123 and p.layers == 2 for p in good.platforms)


def test_one_failed_platform_writes_no_tag_and_others_publish(plan: Plan) -> None:
    engine = FakeEngine(
        fail=lambda r: r.repository.endswith("/bad") and str(r.platform) == "linux/arm64"
    )
    report = run(plan, engine)
    assert not report.ok
    good, bad = report.targets
    assert good.status is TargetStatus.PUBLISHED
    assert bad.status is TargetStatus.FAILED
    assert "linux/arm64 failed to build" in (bad.error or "")
    assert "registry.test/demo/bad" not in engine.store.tags
    assert [p.status for p in bad.platforms].count(JobStatus.FAILED) == 1
    # the other platforms of the failed target still built (and were pushed by digest)
    assert [p.status for p in bad.platforms].count(JobStatus.BUILT) == 2


def test_partial_platform_run_writes_no_tag(write_config: Callable[[str], Path]) -> None:
    plan = make_plan(load_project(write_config(CONFIG)), only_platforms=["linux/arm64"])
    engine = FakeEngine()
    report = run(plan, engine)
    assert report.ok
    assert engine.store.tags == {}
    assert all(t.status is TargetStatus.UNTAGGED for t in report.targets)


def test_builder_without_platform_fails_with_hint(plan: Plan) -> None:
    engine = FakeEngine(platforms=("linux/amd64", "linux/386"))
    with pytest.raises(EngineError) as info:
        run(plan, engine)
    assert "cannot build linux/arm/v7, linux/arm64" in info.value.message
    assert info.value.hint is not None and "QEMU" in info.value.hint
    assert engine.builds == []


def test_unlisted_platform_accepted_when_host_emulates_it(
    plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine(platforms=("linux/amd64", "linux/arm64"))
    monkeypatch.setattr(
        FakeEngine,
        "builder",
        lambda self, name: BuilderInfo(
            "default", "docker-container", self.offered, "running", local=True
        ),
    )
    monkeypatch.setattr(emulation, "host_runs", lambda p: str(p) == "linux/arm/v7")
    recorder = Recorder()
    report = run(plan, engine, recorder)
    assert report.ok
    notices = [m for kind, m in recorder.events if kind == "notice"]
    assert any("does not list linux/arm/v7" in m for m in notices)


def test_docker_driver_without_containerd_store_is_refused(plan: Plan) -> None:
    with pytest.raises(EngineError, match="containerd image store"):
        run(plan, FakeEngine(driver="docker", containerd=False))


def test_a_containerd_worker_spares_the_docker_info_call(
    plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docker driver's worker labels say containerd: no `docker info` is asked (it
    would say the classic store here, and the run would be refused)."""
    engine = FakeEngine(driver="docker", containerd=False)
    monkeypatch.setattr(
        FakeEngine,
        "builder",
        lambda self, name: BuilderInfo(
            "default", "docker", self.offered, "running", local=True, containerd_worker=True
        ),
    )
    builders = preflight(plan, engine, Recorder(), signers=None)
    assert builders[None] == engine.builder(None)
    with pytest.raises(EngineError, match="containerd image store"):  # what it would say
        monkeypatch.setattr(
            FakeEngine,
            "builder",
            lambda self, name: BuilderInfo("default", "docker", self.offered, "running"),
        )
        preflight(plan, engine, Recorder(), signers=None)


def test_verify_detects_missing_tag(plan: Plan) -> None:
    engine = FakeEngine()
    run(plan, engine)
    del engine.store.tags["registry.test/demo/bad"]["latest"]
    report = run_verify(plan, engine, registries=engine.registry)
    assert [t.status for t in report.targets] == [TargetStatus.VERIFIED, TargetStatus.FAILED]
    assert "bad:latest" in (report.targets[1].error or "")


def test_local_registry_started_notice(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = make_plan(load_project(write_config("targets:\n  app: {context: app}\n")))
    started = registryserver.LocalRegistry(
        "localhost:5000", Path("/data"), started=True, how="docker-registry"
    )
    monkeypatch.setattr(registryserver, "ensure_local", lambda host, containers: started)
    recorder = Recorder()
    run(plan, FakeEngine(), recorder)
    notices = [m for kind, m in recorder.events if kind == "notice"]
    assert notices and "localhost:5000" in notices[0] and "/data" in notices[0]


SEMVER = """\
registry: registry.test/demo
platforms: [linux/amd64, linux/arm64]
targets:
  app:
    context: app
    tags: [{semver: {}}, {environment: {versioned: false}}]
"""


def plan_for(path: Path, version: str, env: str | None = None) -> Plan:
    context = TagContext(now=datetime(2026, 1, 1, tzinfo=UTC), version=version, environment=env)
    return make_plan(load_project(path), context=context)


def test_backport_does_not_take_latest(write_config: Callable[[str], Path]) -> None:
    path = write_config(SEMVER)
    engine = FakeEngine()
    run(plan_for(path, "2.0.0"), engine)
    new = run(plan_for(path, "1.4.9"), engine).targets[0]
    tags = engine.store.tags["registry.test/demo/app"]
    assert tags["1.4.9"] == tags["1.4"] == tags["1"] == new.index_digest
    assert tags["latest"] == tags["2.0.0"] == tags["2"] != new.index_digest
    assert new.held == {"latest": "2.0.0 is higher"}
    assert set(new.tags) == {"1.4.9", "1.4", "1"}


def test_failure_mid_publish_leaves_earlier_tags(write_config: Callable[[str], Path]) -> None:
    path = write_config(SEMVER.replace("tags:", "args: {V: 1}\n    tags:"))
    engine = FakeEngine()
    run(plan_for(path, "1.0.0", "staging"), engine)
    before = dict(engine.store.tags["registry.test/demo/app"])
    path.write_text(path.read_text().replace("V: 1", "V: 2"))  # a different image
    engine.store.fail_put_tag = lambda repo, tag: tag == "1"  # the registry fails mid-way
    failed = run(plan_for(path, "1.1.0", "staging"), engine).targets[0]
    assert failed.status is TargetStatus.FAILED and "503" in (failed.error or "")
    after = engine.store.tags["registry.test/demo/app"]
    # immutable 1.1.0 and the floating 1.1 were written before the failure ...
    assert after["1.1.0"] == after["1.1"] != before["1.0.0"]
    # ... every tag published before the run that was not moved yet is where it was
    for tag in ("1.0.0", "1.0", "1", "latest", "staging"):
        assert after[tag] == before[tag], tag
    # a rerun after the registry recovers completes: 1.1.0 already names an index with
    # these inputs, so nothing is built and only the floating tags move (issue 11) ...
    engine.store.fail_put_tag = lambda repo, tag: False
    builds = len(engine.builds)
    again = run(plan_for(path, "1.1.0", "staging"), engine).targets[0]
    assert again.status is TargetStatus.UNCHANGED and again.index_digest == after["1.1.0"]
    assert len(engine.builds) == builds
    assert engine.store.tags["registry.test/demo/app"]["staging"] == again.index_digest
    assert engine.store.tags["registry.test/demo/app"]["1"] == again.index_digest
    # ... and --rebuild builds the same images again
    rebuilt = run_build(
        plan_for(path, "1.1.0", "staging"),
        engine,
        Recorder(),
        registries=engine.registry,
        rebuild=True,
    ).targets[0]
    assert rebuilt.status is TargetStatus.PUBLISHED and rebuilt.index_digest == after["1.1.0"]


def test_labels_and_annotations_are_planned_and_checked(
    write_config: Callable[[str], Path],
) -> None:
    path = write_config(
        SEMVER.replace("    context: app", "    context: app\n    labels: {team: core}")
    )
    engine = FakeEngine()
    report = run(plan_for(path, "1.2.3"), engine)
    assert report.ok
    (request, *_) = engine.builds
    assert request.labels["org.opencontainers.image.version"] == "1.2.3"
    assert request.labels["org.opencontainers.image.title"] == "app"
    assert request.labels["team"] == "core"
    index = engine.inspect("registry.test/demo/app:1.2.3")
    assert index.annotations["org.opencontainers.image.version"] == "1.2.3"


def test_promote_keeps_the_digest(write_config: Callable[[str], Path]) -> None:
    path = write_config(SEMVER)
    engine = FakeEngine()
    plan = plan_for(path, "1.0.0", "staging")
    run(plan, engine)
    staged = engine.store.tags["registry.test/demo/app"]["staging"]
    done = promote(engine, plan.targets[0], "staging", ["production"], registries=engine.registry)
    assert done.digest == done.source_digest == staged
    assert engine.store.tags["registry.test/demo/app"]["production"] == staged
    other = promote(
        engine,
        plan.targets[0],
        staged,
        ["1.0.0"],
        to_registry="mirror.test/prod",
        registries=engine.registry,
    )
    assert other.refs == ("mirror.test/prod/app:1.0.0",) and other.digest_kept


def test_size_budget_fails_the_target_before_any_tag(write_config: Callable[[str], Path]) -> None:
    text = CONFIG.replace("good: {context: app,", "good: {context: app, size_budget: 100B,")
    engine = FakeEngine()  # every fake image is 123 bytes compressed
    report = run(make_plan(load_project(write_config(text))), engine)
    good, bad = report.targets
    assert good.status is TargetStatus.FAILED
    assert "over the size budget of 100 B" in (good.error or "")
    assert "linux/amd64 is 123 B" in (good.error or "")
    assert "registry.test/demo/good" not in engine.store.tags
    assert bad.status is TargetStatus.PUBLISHED  # the other target still publishes
    roomy = CONFIG.replace("good: {context: app,", "good: {context: app, size_budget: 1KiB,")
    assert run(make_plan(load_project(write_config(roomy))), FakeEngine()).ok
