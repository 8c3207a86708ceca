"""Publishing under faults (issue 13), on the fake engine and in-memory registries: no tag
before verify, immutable tags never silently replaced, floating tags converge, a failed
run says which tags it wrote; and the registry client's upload, retry and auth rules
against scripted HTTP answers. tests/integration/test_faults.py runs the same faults on
the real engine and a real registry behind a fault-injecting proxy."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from mab.config.project import load_project
from mab.errors import RegistryError, UsageError
from mab.oci import INDEX_TYPES, RemoteManifest
from mab.pipeline.build import run_build
from mab.pipeline.results import RunReport, TargetStatus
from mab.planning.plan import Plan, make_plan
from mab.planning.tags import TagContext
from mab.registry import server as registryserver
from mab.registry.client import RegistryClient, RetryPolicy
from mab.registry.credentials import Credential
from tests.unit.fakes import FakeEngine, Recorder
from tests.unit.test_registry import make_layout

SEMVER = """\
registry: registry.test/demo
platforms: [linux/amd64, linux/arm64]
targets:
  app:
    context: app
    tags: [{semver: {}}]
"""
REPO = "registry.test/demo/app"


def plan_for(path: Path, version: str, label: str = "a") -> Plan:
    context = TagContext(now=datetime(2026, 1, 1, tzinfo=UTC), version=version)
    project = load_project(path)
    plan = make_plan(project, context=context)
    return plan if label == "a" else _relabel(plan, label)


def _relabel(plan: Plan, label: str) -> Plan:
    """The same plan with another label: another image, another index digest."""
    from dataclasses import replace

    targets = tuple(replace(t, labels=(*t.labels, ("x", label))) for t in plan.targets)
    return replace(plan, targets=targets)


def build(plan: Plan, engine: FakeEngine, force: bool = False) -> RunReport:
    return run_build(plan, engine, Recorder(), registries=engine.registry, force=force)


def test_an_immutable_tag_is_never_overwritten_without_force(
    write_config: Callable[[str], Path],
) -> None:
    path = write_config(SEMVER)
    engine = FakeEngine()
    first = build(plan_for(path, "1.0.0"), engine)
    assert first.ok
    old = engine.store.tags[REPO]["1.0.0"]
    second = build(plan_for(path, "1.0.0", label="b"), engine)
    target = second.targets[0]
    assert target.status is TargetStatus.FAILED
    assert "1.0.0 already names another index" in (target.error or "")
    assert "no tag was written or moved" in (target.error or "")
    assert engine.store.tags[REPO] == {"1.0.0": old, "1.0": old, "1": old, "latest": old}
    forced = build(plan_for(path, "1.0.0", label="b"), engine, force=True)
    assert forced.ok and engine.store.tags[REPO]["1.0.0"] != old


def test_no_tag_moves_before_the_index_is_verified(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(SEMVER)
    engine = FakeEngine()
    assert build(plan_for(path, "1.0.0"), engine).ok
    before = dict(engine.store.tags[REPO])

    def broken(ref: str) -> tuple[RemoteManifest, dict[str, dict[str, str]]]:
        raise RegistryError(f"cannot inspect {ref}: connection refused")

    monkeypatch.setattr(engine, "inspect_labeled", broken)
    report = build(plan_for(path, "1.1.0"), engine)
    error = report.targets[0].error or ""
    assert "connection refused" in error and "no tag was written or moved" in error
    assert engine.store.tags[REPO] == before  # 1.1.0, 1.1, 1 and latest all untouched


def test_a_failed_run_lists_the_tags_it_wrote(write_config: Callable[[str], Path]) -> None:
    path = write_config(SEMVER)
    engine = FakeEngine()
    engine.store.fail_put_tag = lambda repo, tag: tag == "2"
    report = build(plan_for(path, "2.0.0"), engine)
    error = report.targets[0].error or ""
    assert "tags written before the failure: 2.0.0, 2.0" in error
    assert set(engine.store.tags[REPO]) == {"2.0.0", "2.0"}


def test_floating_tags_converge_to_the_highest_release(
    write_config: Callable[[str], Path],
) -> None:
    """1.4.9's run lists the tags before 2.0.0 exists, so it moves latest; 2.0.0's run
    lands meanwhile. 1.4.9's second look puts latest back on 2.0.0's index."""
    path = write_config(SEMVER)
    engine = FakeEngine()
    assert build(plan_for(path, "2.0.0", label="two"), engine).ok
    newer = engine.store.tags[REPO]["2.0.0"]
    saved = dict(engine.store.tags[REPO])
    engine.store.tags[REPO] = {}  # the first listing of 1.4.9's run sees no 2.x yet
    lists = 0

    def second_look(repo: str) -> None:
        nonlocal lists
        lists += 1
        if lists == 2:  # 1.4.9 has moved latest; 2.0.0's tags landed before that slow write
            engine.store.tags[REPO].update({k: v for k, v in saved.items() if k != "latest"})

    engine.store.list_hook = second_look
    report = build(plan_for(path, "1.4.9"), engine)
    target = report.targets[0]
    assert target.ok, target.error
    assert engine.store.tags[REPO]["latest"] == newer
    assert engine.store.tags[REPO]["1"] == engine.store.tags[REPO]["1.4.9"]
    assert "latest" not in target.tags and "2.0.0 is higher" in target.held["latest"]


# --- the registry client ----------------------------------------------------------------


def scripted_client(
    handler: Callable[[httpx.Request], httpx.Response], attempts: int = 4
) -> tuple[RegistryClient, list[str]]:
    retries: list[str] = []
    client = RegistryClient(
        "reg.test",
        retry=RetryPolicy(attempts=attempts, max_seconds=30),
        sleep=lambda s: None,
        on_retry=retries.append,
    )
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    return client, retries


def test_a_broken_upload_starts_a_new_session(tmp_path: Path) -> None:
    """The registry restarted mid-upload and forgot the session: retrying the PUT gives
    BLOB_UPLOAD_UNKNOWN forever; a new POST succeeds."""
    layout, digest = make_layout(tmp_path)
    posts: list[str] = []
    blobs: dict[str, bytes] = {}
    manifests: dict[str, bytes] = {}
    state = {"lost": 1}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "HEAD" and "/blobs/" in path:
            return httpx.Response(200 if path.rsplit("/", 1)[1] in blobs else 404)
        if request.method == "POST":
            posts.append(path)
            return httpx.Response(202, headers={"location": f"/v2/upload/{len(posts)}"})
        if request.method == "PUT" and path.startswith("/v2/upload/"):
            body = request.read()
            if state["lost"] and path == "/v2/upload/1":
                state["lost"] = 0
                return httpx.Response(
                    404, json={"errors": [{"code": "BLOB_UPLOAD_UNKNOWN", "message": "gone"}]}
                )
            blobs[request.url.params["digest"]] = body
            return httpx.Response(201)
        if request.method == "PUT" and "/manifests/" in path:
            manifests[path.rsplit("/", 1)[1]] = request.read()
            return httpx.Response(201)
        return httpx.Response(404)

    client, retries = scripted_client(handler)
    with client:
        pushed = client.push_layout(layout, "team/app")
    assert pushed.digest == digest and digest in manifests
    assert len(posts) == 3  # two blobs, one of them twice: a new session, not the dead one
    assert any("starting a new upload" in r for r in retries)


def test_full_or_read_only_storage_is_not_retried_and_says_why() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(
            500,
            json={
                "errors": [
                    {
                        "code": "UNKNOWN",
                        "message": "unknown error",
                        "detail": "mkdir /var/lib/registry/x: no space left on device",
                    }
                ]
            },
        )

    client, retries = scripted_client(handler)
    with client, pytest.raises(RegistryError) as info:
        client.put_manifest("team/app", "1.0", b"{}", INDEX_TYPES[0])
    assert calls == ["PUT"] and retries == []
    assert "no space left on device" in info.value.message
    assert "full or read-only" in info.value.message and info.value.hint


def test_retried_errors_keep_the_registrys_detail() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="upstream connect error or disconnect\n")

    client, retries = scripted_client(handler, attempts=2)
    with client, pytest.raises(RegistryError) as info:
        client.head_manifest("team/app", "latest")
    assert "upstream connect error" in info.value.message
    assert len(retries) == 1 and "upstream connect error" in retries[0]


def test_credentials_go_only_to_the_registry_host_or_an_https_realm() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "evil.test":
            sent.append(request)
            return httpx.Response(200, json={"token": "t"})
        return httpx.Response(
            401, headers={"www-authenticate": 'Bearer realm="http://evil.test/token"'}
        )

    client = RegistryClient("reg.test", credential=Credential("me", "s3cret-pw"))
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    with client, pytest.raises(RegistryError) as info:
        client.list_tags("team/app")
    assert sent == [] and "plain HTTP on another host" in info.value.message
    assert "s3cret" not in info.value.message


def test_retry_settings_from_the_environment_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAB_RETRY_ATTEMPTS", "abc")
    with pytest.raises(UsageError, match="MAB_RETRY_ATTEMPTS='abc' is not a number"):
        RetryPolicy.from_env()
    monkeypatch.setenv("MAB_RETRY_ATTEMPTS", "0")
    with pytest.raises(UsageError, match="out of range"):
        RetryPolicy.from_env()
    monkeypatch.setenv("MAB_RETRY_ATTEMPTS", "3")
    assert RetryPolicy.from_env().attempts == 3


def test_secret_files_are_0600_even_when_they_existed(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    registryserver.write_private(path, "user:hash\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "user:hash\n"
