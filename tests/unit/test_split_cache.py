"""Split builds (digest files, merge) and cache options, without an engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from mab.config.models import CacheConfig
from mab.config.project import load_project
from mab.engine.base import count_steps
from mab.errors import UsageError
from mab.pipeline import digests
from mab.pipeline.build import run_build
from mab.pipeline.merge import run_merge
from mab.pipeline.results import TargetStatus
from mab.planning.cache import cache_options, fill_spec, parse_spec
from mab.planning.plan import make_plan
from mab.platforms import Platform

from .fakes import FakeEngine, Recorder
from .test_pipeline import CONFIG

ARM = Platform.parse("linux/arm64")


def test_registry_cache_is_per_target_and_platform(tmp_path: Path) -> None:
    sources, export = cache_options(CacheConfig(), "r.test/x/api", "api", ARM, tmp_path)
    assert sources == [{"type": "registry", "ref": "r.test/x/api-buildcache:linux-arm64"}]
    assert export == {
        "type": "registry",
        "ref": "r.test/x/api-buildcache:linux-arm64",
        "mode": "max",
        "ignore-error": "true",
    }
    other, _ = cache_options(
        CacheConfig(), "r.test/x/api", "api", Platform.parse("linux/amd64"), tmp_path
    )
    assert other != sources


def test_local_gha_none_cache(tmp_path: Path) -> None:
    local = CacheConfig(type="local", mode="min")
    sources, export = cache_options(local, "r/x", "api", ARM, tmp_path)
    assert sources == []  # nothing to import on the first run
    assert export is not None and export["dest"] == str(tmp_path / ".mab-cache/api/linux-arm64")
    (tmp_path / ".mab-cache/api/linux-arm64").mkdir(parents=True)
    (tmp_path / ".mab-cache/api/linux-arm64/index.json").write_text("{}")
    sources, _ = cache_options(local, "r/x", "api", ARM, tmp_path)
    assert sources == [{"type": "local", "src": str(tmp_path / ".mab-cache/api/linux-arm64")}]
    sources, export = cache_options(CacheConfig(type="gha"), "r/x", "api", ARM, tmp_path)
    assert sources == [{"type": "gha", "scope": "api-linux-arm64"}]
    assert cache_options(CacheConfig(type="none"), "r/x", "api", ARM, tmp_path) == ([], None)


def test_command_line_cache_specs_are_filled_per_target_and_platform() -> None:
    spec = parse_spec("type=gha,scope=mab-{target}-{platform},mode=max")
    assert fill_spec(spec, "r/x/api", "api", ARM) == {
        "type": "gha",
        "scope": "mab-api-linux-arm64",
        "mode": "max",
    }


def test_parse_spec() -> None:
    assert parse_spec("type=gha,scope=a,mode=max") == {"type": "gha", "scope": "a", "mode": "max"}
    with pytest.raises(ValueError, match="no type"):
        parse_spec("ref=x")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_spec("type=registry,oops")


def test_count_steps_from_plain_progress() -> None:
    log = [
        "#1 [internal] load build definition from Dockerfile",
        "#5 [build 1/3] FROM docker.io/library/golang:1.22",
        "#5 CACHED",
        "#6 [build 2/3] COPY go.mod ./",
        "#6 CACHED",
        "#7 [build 3/3] RUN go build ./...",
        "#7 DONE 12.1s",
        "#8 [runtime 1/1] COPY --from=build /out/app /app",
        "#8 DONE 0.1s",
        "#9 exporting to oci image format",
    ]
    assert count_steps(log) == (2, 4)


def test_steps_pulled_lazily_from_a_remote_cache_count_as_cached() -> None:
    """BuildKit 0.26 (docker driver), a mode=max registry cache imported after
    ``docker buildx prune -af``: step 3's result (and step 2's, under step 3) is fetched
    as blobs. Seen with and without a CACHED line; the FROM's blobs are the base image."""
    blob = "sha256:" + "8" * 64
    log = [
        "#5 [1/4] FROM localhost:5000/mirror/busybox:1.35@sha256:" + "0" * 64,
        "#5 sha256:" + "a" * 64 + " 2.21MB / 2.21MB 0.1s done",
        "#5 extracting sha256:" + "a" * 64 + " 0.1s done",
        "#5 DONE 0.2s",
        "#6 [2/4] RUN echo step-one > /one",
        "#6 CACHED",
        "#7 [3/4] RUN echo step-two > /two",
        f"#7 {blob} 109B / 109B 0.0s done",
        f"#7 extracting {blob} 0.0s done",
        "#7 DONE 0.2s",
        '#8 [4/4] RUN echo "2" > /three',
        "#8 DONE 0.2s",
        "#9 exporting to image",
        f"#9 exporting manifest {blob} done",
    ]
    assert count_steps(log) == (2, 4)


def test_digest_files_round_trip_and_errors(tmp_path: Path) -> None:
    records = [
        digests.DigestRecord("api", ARM, "r.test/x/api", "sha256:" + "a" * 64),
        digests.DigestRecord(
            "api", Platform.parse("linux/arm/v7"), "r.test/x/api", "sha256:" + "b" * 64
        ),
    ]
    paths = digests.write(records, tmp_path / "d" / "job1")
    assert [p.name for p in paths] == ["api@linux-arm64.json", "api@linux-arm-v7.json"]
    assert sorted(digests.read(tmp_path / "d"), key=lambda r: r.digest) == records
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no TARGET@PLATFORM\.json"):
        digests.read(tmp_path / "empty")
    (tmp_path / "d" / "job2").mkdir()
    (tmp_path / "d" / "job2" / "api@linux-arm64.json").write_text(
        records[0].to_json().replace("a" * 64, "c" * 64)
    )
    with pytest.raises(UsageError, match="a second, different digest"):
        digests.read(tmp_path / "d")


def test_split_then_merge_equals_single_machine(write_config: Callable[[str], Path]) -> None:
    plan = make_plan(load_project(write_config(CONFIG)))
    engine = FakeEngine()
    records = []
    for platform in ("linux/amd64", "linux/arm64", "linux/arm/v7"):
        job = make_plan(load_project(write_config(CONFIG)), only_platforms=[platform])
        report = run_build(job, engine, Recorder(), by_digest_only=True, registries=engine.registry)
        assert all(t.status is TargetStatus.UNTAGGED for t in report.targets)
        records += [
            digests.DigestRecord(t.name, p.platform, t.repository, str(p.pushed_digest))
            for t in report.targets
            for p in t.platforms
        ]
    assert engine.store.tags == {}  # the jobs wrote no tag
    merged = run_merge(plan, engine, records, Recorder(), registries=engine.registry)
    assert merged.ok
    split_digests = {t.name: t.index_digest for t in merged.targets}
    single = run_build(plan, engine, Recorder(), registries=engine.registry, rebuild=True)
    assert {t.name: t.index_digest for t in single.targets} == split_digests
    # the second run of unchanged targets reports cached steps
    assert all(p.cached_steps == 2 for t in single.targets for p in t.platforms)
    # without --rebuild, unchanged targets are neither built nor pushed (issue 11)
    builds = len(engine.builds)
    skipped = run_build(plan, engine, Recorder(), registries=engine.registry)
    assert {t.name: t.index_digest for t in skipped.targets} == split_digests
    assert all(t.status is TargetStatus.UNCHANGED for t in skipped.targets)
    assert len(engine.builds) == builds


def test_merge_refuses_a_target_with_a_missing_platform(
    write_config: Callable[[str], Path],
) -> None:
    plan = make_plan(load_project(write_config(CONFIG)))
    engine = FakeEngine()
    job = make_plan(load_project(write_config(CONFIG)), only_platforms=["linux/amd64"])
    report = run_build(job, engine, Recorder(), by_digest_only=True, registries=engine.registry)
    records = [
        digests.DigestRecord(t.name, p.platform, t.repository, str(p.pushed_digest))
        for t in report.targets
        for p in t.platforms
    ]
    merged = run_merge(plan, engine, records, Recorder(), registries=engine.registry)
    assert not merged.ok
    assert "linux/arm64: no digest file" in (merged.targets[0].error or "")
    assert engine.store.tags == {}
    wrong = [replace(r, repository="elsewhere/x") for r in records]
    merged = run_merge(plan, engine, wrong, Recorder(), registries=engine.registry)
    assert "built into elsewhere/x" in (merged.targets[0].error or "")
