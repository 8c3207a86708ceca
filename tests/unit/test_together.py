"""A target's platforms built in one buildx call (mab.pipeline.together): which builds
are shared, how the log and the step counts are told apart per platform, how the index
BuildKit pushed is split back into per-platform images, and the per-platform rebuild
that says which platform fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mab.config.project import load_project
from mab.engine.base import BuildRequest, count_steps, step_platform
from mab.errors import BuildError
from mab.oci import OCI_INDEX, REF_DIGEST, REF_TYPE, Descriptor, index_bytes
from mab.pipeline import together
from mab.pipeline.build import run_build
from mab.pipeline.results import JobStatus, RunReport, TargetStatus
from mab.planning.plan import Plan, make_plan
from mab.platforms import Platform

from .fakes import IMAGE, FakeEngine, FakeRegistry, Recorder, Store, digest_of

AMD, ARM, V7 = (Platform.parse(p) for p in ("linux/amd64", "linux/arm64", "linux/arm/v7"))

CONFIG = """\
registry: registry.test/demo
platforms: [linux/amd64, linux/arm64, linux/arm/v7]
targets:
  app: {context: app, tags: ["1.0", latest]}
  other: {context: app, tags: ["2.0"]}
"""

# buildx 0.29's plain progress for the go template's cross-compiling build stage
LOG = [
    "#1 [internal] load build definition from greeter.Dockerfile",
    "#9 [linux/amd64->arm64 build 1/6] WORKDIR /src",
    "#9 CACHED",
    "#12 [linux/amd64 build 3/6] RUN go mod download",
    "#12 CACHED",
    "#15 [linux/amd64 build 5/6] RUN go build -o /out/greeter",
    "#15 0.512 compiling",
    "#18 [linux/amd64->arm/v7 build 5/6] RUN go build -o /out/greeter",
    "#18 DONE 2.1s",
    "#20 [linux/arm64 runtime 1/1] COPY --from=build /out/greeter /greeter",
    "#20 CACHED",
    "#22 [linux/arm/v7 runtime 1/1] COPY --from=build /out/greeter /greeter",
    "#22 DONE 0.1s",
    "#23 exporting to image",
]


def test_step_labels_name_the_target_platform() -> None:
    assert step_platform("linux/amd64") == "linux/amd64"
    assert step_platform("linux/amd64->arm64") == "linux/arm64"
    assert step_platform("linux/amd64->arm/v7") == "linux/arm/v7"
    assert step_platform("linux/amd64->windows/amd64") == "windows/amd64"


def test_steps_are_counted_per_platform() -> None:
    assert count_steps(LOG) == (3, 6)
    assert count_steps(LOG, "linux/amd64") == (1, 2)
    assert count_steps(LOG, "linux/arm64") == (2, 2)
    assert count_steps(LOG, "linux/arm/v7") == (0, 2)


def test_log_lines_follow_their_step_to_the_platform(plan_of: Callable[[str], Plan]) -> None:
    plan = plan_of(CONFIG)
    jobs = [j for j in plan.jobs if j.target.name == "app"]
    seen: list[tuple[str, str]] = []
    route = together.LogRouter(jobs, lambda job, line: seen.append((str(job.platform), line)))
    for line in LOG:
        route(line)
    by_line = {line: platform for platform, line in seen}
    assert by_line["#15 0.512 compiling"] == "linux/amd64"
    assert by_line["#18 DONE 2.1s"] == "linux/arm/v7"  # a later line of an arm/v7 step
    assert by_line["#9 CACHED"] == "linux/arm64"
    assert by_line["#23 exporting to image"] == "linux/amd64"  # no platform: the first job
    assert len(seen) == len(LOG)


def _request(platform: Platform, **kw: Any) -> BuildRequest:
    return BuildRequest(Path("ctx"), Path("Dockerfile"), platform, "r.test/app", **kw)


def test_combine_shares_one_build_unless_the_cache_exports_differ() -> None:
    a = _request(AMD, cache_from=({"type": "registry", "ref": "r.test/c:amd64"},))
    b = _request(ARM, cache_from=({"type": "registry", "ref": "r.test/c:arm64"},))
    c = _request(V7, cache_from=({"type": "registry", "ref": "r.test/c:amd64"},))
    both = together.combine([a, b, c], "docker-container")
    assert both is not None
    assert both.platforms == (AMD, ARM, V7)
    assert both.platform_list == "linux/amd64,linux/arm64,linux/arm/v7"
    assert [s["ref"] for s in both.cache_from] == ["r.test/c:amd64", "r.test/c:arm64"]
    assert together.combine([a], "docker") is None
    apart = [
        _request(p, cache_to={"type": "registry", "ref": f"r.test/c:{p.slug}"}) for p in (AMD, ARM)
    ]
    assert together.combine(apart, "docker") is None
    same = [_request(p, cache_to={"type": "inline"}) for p in (AMD, ARM)]
    assert together.combine(same, "docker") is not None


def test_combine_keeps_the_attestations_a_build_of_one_platform_gets() -> None:
    """On the docker driver buildx attaches no provenance to a build of one platform but
    does to one of several: unless builds.yaml asks for provenance, the combined build
    asks for none, so the grouping does not change the release."""
    plain = [_request(p) for p in (AMD, ARM)]
    docker = together.combine(plain, "docker")
    assert docker is not None and docker.provenance == "false"
    container = together.combine(plain, "docker-container")
    assert container is not None and container.provenance is None  # BuildKit's default
    asked = together.combine([_request(p, provenance="min") for p in (AMD, ARM)], "docker")
    assert asked is not None and asked.provenance == "min"
    # an SBOM asked for: one platform gets BuildKit's default provenance with it, so keep it
    sbom = together.combine([_request(p, sbom=True) for p in (AMD, ARM)], "docker")
    assert sbom is not None and sbom.provenance is None


def _image(store: Store, platform: Platform) -> Descriptor:
    body = json.dumps({"mediaType": IMAGE, "p": str(platform)}).encode()
    digest = digest_of(body)
    store.blobs.setdefault("r.test/app", {})[digest] = (IMAGE, body)
    return Descriptor(IMAGE, digest, len(body), platform)


def test_split_index_gives_each_platform_its_image_and_attestation() -> None:
    store = Store()
    amd, arm = _image(store, AMD), _image(store, ARM)
    note = Descriptor.from_json(
        {
            "mediaType": IMAGE,
            "digest": digest_of(b"provenance"),
            "size": 10,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {REF_TYPE: "attestation-manifest", REF_DIGEST: arm.digest},
        }
    )
    body = index_bytes([amd, arm, note], {})
    store.blobs["r.test/app"][digest_of(body)] = (OCI_INDEX, body)
    registry = FakeRegistry(store, "r.test")
    out = together.split_index(registry, "app", digest_of(body), [AMD, ARM])
    assert out[AMD] == amd.digest  # no attestation: the image itself
    sub = registry.get_manifest("app", out[ARM])  # image + attestation: an index of the two
    assert sub.is_index
    assert [e.digest for e in sub.manifests] == [arm.digest, note.digest]
    with pytest.raises(BuildError, match="0 images for linux/arm/v7"):
        together.split_index(registry, "app", digest_of(body), [V7])


def run(plan: Plan, engine: FakeEngine, recorder: Recorder) -> RunReport:
    return run_build(plan, engine, recorder, registries=engine.registry)


def test_a_targets_platforms_build_in_one_call_and_publish_per_platform(
    plan_of: Callable[[str], Plan],
) -> None:
    engine, recorder = FakeEngine(), Recorder()
    report = run(plan_of(CONFIG), engine, recorder)
    assert report.ok
    assert [r.platform_list for r in engine.together] == [
        "linux/amd64,linux/arm64,linux/arm/v7"
    ] * 2
    assert len(engine.builds) == 6  # each platform image once
    app = report.targets[0]
    assert app.status is TargetStatus.PUBLISHED
    # each platform's own image (not the index the shared build pushed), and the index
    # mab publishes lists exactly those
    singles = {
        str(b.platform): d
        for b, d in zip(engine.builds, engine.built, strict=True)
        if b.repository.endswith("/app")
    }
    assert {str(r.platform): r.pushed_digest for r in app.platforms} == singles
    index = json.loads(engine.store.blobs["registry.test/demo/app"][app.index_digest or ""][1])
    assert sorted(m["digest"] for m in index["manifests"]) == sorted(singles.values())
    assert all(r.steps == 2 for r in app.platforms)


def test_a_failing_platform_is_found_by_building_each_alone(
    plan_of: Callable[[str], Plan],
) -> None:
    engine, recorder = (
        FakeEngine(
            fail=lambda r: r.repository.endswith("/app") and str(r.platform) == "linux/arm64"
        ),
        Recorder(),
    )
    report = run(plan_of(CONFIG), engine, recorder)
    app, other = report.targets
    assert other.status is TargetStatus.PUBLISHED
    assert app.status is TargetStatus.FAILED
    assert "linux/arm64 failed to build" in (app.error or "")
    assert {str(r.platform): r.status for r in app.platforms} == {
        "linux/amd64": JobStatus.BUILT,
        "linux/arm64": JobStatus.FAILED,
        "linux/arm/v7": JobStatus.BUILT,
    }
    notices = [m for kind, m in recorder.events if kind == "notice"]
    assert any("building each platform alone" in m for m in notices)


def test_a_failed_push_is_not_retried_platform_by_platform(
    plan_of: Callable[[str], Plan],
) -> None:
    engine = FakeEngine(
        fail=lambda r: r.repository.endswith("/app"),
        failure="ERROR: failed to push registry.test/demo/app: 500 no space left on device",
    )
    recorder = Recorder()
    report = run(plan_of(CONFIG), engine, recorder)
    app = report.targets[0]
    assert app.status is TargetStatus.FAILED
    assert len(engine.together) == 2  # app's one attempt, other's build
    assert not [b for b in engine.builds if b.repository.endswith("/app")]  # none alone
    assert all(r.status is JobStatus.FAILED for r in app.platforms)
    assert "linux/arm64 failed to push" in (app.error or "")
    assert not any("alone" in m for kind, m in recorder.events if kind == "notice")


def test_per_platform_cache_exports_keep_the_builds_apart(
    plan_of: Callable[[str], Plan],
) -> None:
    engine = FakeEngine()
    report = run(plan_of(CONFIG + "cache: {export: always}\n"), engine, Recorder())
    assert report.ok
    assert engine.together == []  # the default ref has {platform}: one export each
    assert len(engine.builds) == 6
    shared = CONFIG + "cache: {export: always, ref: '{repository}-buildcache'}\n"
    engine = FakeEngine()
    assert run(plan_of(shared), engine, Recorder()).ok
    assert len(engine.together) == 2


@pytest.fixture
def plan_of(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], Plan]:
    """Plans made outside CI: with CI=true (as in .ci/run) the default cache export is on,
    one ref per platform, and the platforms build apart (see the test above)."""
    monkeypatch.delenv("CI", raising=False)
    return lambda text: make_plan(load_project(write_config(text)))


def test_in_ci_the_default_cache_export_keeps_the_builds_apart(
    plan_of: Callable[[str], Plan], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")  # cache.export: auto exports in CI, one ref per platform
    engine = FakeEngine()
    assert run(plan_of(CONFIG), engine, Recorder()).ok
    assert engine.together == []
    assert len(engine.builds) == 6
