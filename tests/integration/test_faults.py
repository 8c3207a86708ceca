"""Faults injected on the real engine (issue 13): each test runs a distribution registry
of its own on 127.0.0.1 (never the shared localhost:5000), a fault-injecting proxy in
front of it where the fault is timed, busybox images from the local mirror, and reads
the results with crane. Each asserts the exit code, the one-line cause, the tags (never
a partial or unverified index), and a rerun that completes without rebuilding.

The build runs on the default docker driver: BuildKit writes each platform image as an
OCI layout and mab's own registry client uploads it, so every push request passes the
proxy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mab.registry.client import PUSH_CONCURRENCY

from .conftest import REPO, crane, crane_json, platforms_of, run_mab
from .faultproxy import Answer, FaultProxy

pytestmark = pytest.mark.engine

ENV = {"MAB_RETRY_ATTEMPTS": "3", "MAB_RETRY_MAX_SECONDS": "20"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OwnRegistry:
    """A distribution registry on 127.0.0.1:PORT with its data under *root*."""

    root: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("docker-registry") or shutil.which("registry")
        assert binary, "the distribution registry binary (scripts/engine-up installs it)"
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage:\n  filesystem: {{rootdirectory: {self.root / 'data'}}}\n"
            "  delete: {enabled: true}\n"
            f"http: {{addr: '{self.host}'}}\n"
        )
        log = (self.root / "registry.log").open("ab")
        self.process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"registry on {self.host} did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[OwnRegistry]:
    own = OwnRegistry(tmp_path / "registry")
    own.root.mkdir()
    own.start()
    yield own
    own.stop()


def project(root: Path, registry: str, value: str, tags: str = "[{semver: {}}]") -> Path:
    """One busybox target for amd64 and arm64 whose image content is *value*."""
    (root / "app").mkdir(exist_ok=True)
    (root / "app" / "Dockerfile").write_text(
        'FROM busybox:1.35\nARG VALUE\nRUN echo "$VALUE" > /value\n'
    )
    path = root / "builds.yaml"
    path.write_text(
        f"registry: {registry}\n"
        "platforms: [linux/amd64, linux/arm64]\n"
        "base_images: {busybox:1.35: localhost:5000/mirror/busybox:1.35}\n"
        "cache: {type: none}\n"
        "targets:\n"
        f"  app: {{context: app, args: {{VALUE: '{value}'}}, tags: {tags}}}\n"
    )
    return path


def digest(ref: str) -> str | None:
    done = crane("digest", ref, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def cached(report: dict[str, object] | None) -> list[str]:
    """'cached/steps' per platform from a --report, e.g. ['2/2', '2/2']."""
    assert report is not None
    out = []
    for target in report["targets"]:  # type: ignore[attr-defined]
        for p in target["platforms"]:
            out.append(f"{p['cached_steps']}/{p['steps']}")
    return out


def test_registry_restarted_during_blob_upload_starts_a_new_upload(
    tmp_path: Path, registry: OwnRegistry
) -> None:
    restarted = threading.Event()

    def restart_once(method: str, path: str) -> Answer | None:
        if method == "PUT" and "/blobs/uploads/" in path and not restarted.is_set():
            restarted.set()
            registry.stop()  # the upload session dies with it (new http.secret)
            registry.start()
        return None

    with FaultProxy(registry.port) as proxy:
        proxy.intercept = restart_once
        path = project(tmp_path, f"127.0.0.1:{proxy.port}/t", "one", "['1.0']")
        result = run_mab("build", "-f", str(path), cwd=tmp_path, env=ENV)
    assert restarted.is_set()
    assert result.code == 0, result.output
    assert "starting a new upload" in result.stderr  # the retry is visible
    index = crane_json("manifest", f"{registry.host}/t/app:1.0")
    assert platforms_of(index) == ["linux/amd64", "linux/arm64"]


def test_registry_killed_after_the_index_leaves_every_tag_and_rerun_completes(
    tmp_path: Path, registry: OwnRegistry
) -> None:
    tags = "[{semver: {}}, stable]"
    with FaultProxy(registry.port) as proxy:
        host = f"127.0.0.1:{proxy.port}/t"
        path = project(tmp_path, host, "one", tags)
        first = run_mab("build", "-f", str(path), "--version", "1.0.0", cwd=tmp_path, env=ENV)
        assert first.code == 0, first.output
        before = {t: digest(f"{registry.host}/t/app:{t}") for t in ("1.0.0", "1", "stable")}
        killed = threading.Event()
        by_digest = []

        def kill_after_index(method: str, path_: str, status: int) -> None:
            # two platform manifests, then the index, are written by digest: after the
            # index, the registry dies
            if method == "PUT" and re.search(r"/manifests/sha256:", path_) and status == 201:
                by_digest.append(path_)
                if len(by_digest) == 3:
                    killed.set()

        def dead(method: str, path_: str) -> Answer | None:
            if killed.is_set() and registry.process is not None:
                registry.stop()
            return None

        proxy.after = kill_after_index
        proxy.intercept = dead
        project(tmp_path, host, "two", tags)
        failed = run_mab(
            "build",
            "-f",
            str(path),
            "--version",
            "1.1.0",
            cwd=tmp_path,
            env=ENV,
            report=tmp_path / "failed.json",
        )
        assert failed.code == 1, failed.output
        line = next(ln for ln in failed.stderr.splitlines() if ln.startswith("app: failed"))
        assert "no tag was written or moved" in line or "tags written before" in line, line
        assert "Traceback" not in failed.output
        registry.start()
        after = {t: digest(f"{registry.host}/t/app:{t}") for t in ("1.0.0", "1", "stable")}
        assert after == before  # `stable` existed: it did not move to an unverified index
        assert digest(f"{registry.host}/t/app:1.1.0") is None
        proxy.intercept = lambda method, path_: None
        proxy.after = lambda method, path_, status: None
        rerun = run_mab(
            "build",
            "-f",
            str(path),
            "--version",
            "1.1.0",
            "--force",  # `stable` is a literal, immutable: moving it is the user's call
            cwd=tmp_path,
            env=ENV,
            report=tmp_path / "rerun.json",
        )
    assert rerun.code == 0, rerun.output
    assert all(c.split("/")[0] == c.split("/")[1] != "0" for c in cached(rerun.report)), cached(
        rerun.report
    )  # every step of both platforms from BuildKit's cache: nothing rebuilt
    new = digest(f"{registry.host}/t/app:1.1.0")
    assert new and digest(f"{registry.host}/t/app:stable") == new
    assert platforms_of(crane_json("manifest", f"{registry.host}/t/app:1")) == [
        "linux/amd64",
        "linux/arm64",
    ]


def test_latest_converges_on_the_highest_release_when_a_slow_write_lands_last(
    tmp_path: Path, registry: OwnRegistry
) -> None:
    held = threading.Event()
    release = threading.Event()
    seen = {"latest": 0}

    def hold_first_latest(method: str, path: str) -> Answer | None:
        if method == "PUT" and path.endswith("/manifests/latest"):
            seen["latest"] += 1
            if seen["latest"] == 1:  # 1.4.9's write: held until 2.0.0 has published
                held.set()
                release.wait(120)
                return (503, {"retry-after": "0"}, b"")
        return None

    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    with FaultProxy(registry.port) as proxy:
        proxy.intercept = hold_first_latest
        host = f"127.0.0.1:{proxy.port}/t"
        slow = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mab",
                "build",
                "-f",
                str(project(old_dir, host, "old")),
                "--version",
                "1.4.9",
            ],
            cwd=old_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **ENV, "PYTHONPATH": str(REPO)},
        )
        try:
            assert held.wait(300), "1.4.9 never wrote latest"
            fast = run_mab(
                "build",
                "-f",
                str(project(new_dir, host, "new")),
                "--version",
                "2.0.0",
                cwd=new_dir,
                env=ENV,
            )
        finally:
            release.set()
        out, err = slow.communicate(timeout=300)
    assert fast.code == 0, fast.output
    assert slow.returncode == 0, out + err
    newest = digest(f"{registry.host}/t/app:2.0.0")
    assert digest(f"{registry.host}/t/app:latest") == newest
    assert digest(f"{registry.host}/t/app:1") == digest(f"{registry.host}/t/app:1.4.9")
    assert "latest set back to 2.0.0" in err


def test_full_storage_is_not_retried_and_the_cause_is_shown(
    tmp_path: Path, registry: OwnRegistry
) -> None:
    body = json.dumps(
        {
            "errors": [
                {
                    "code": "UNKNOWN",
                    "message": "unknown error",
                    "detail": "write /var/lib/registry/x: no space left on device",
                }
            ]
        }
    ).encode()
    hits = []

    def full(method: str, path: str) -> Answer | None:
        if method in ("PUT", "PATCH") and "/blobs/uploads/" in path:
            hits.append(path)
            return (500, {"content-type": "application/json"}, body)
        return None

    with FaultProxy(registry.port) as proxy:
        proxy.intercept = full
        path = project(tmp_path, f"127.0.0.1:{proxy.port}/t", "one", "['1.0']")
        result = run_mab("build", "-f", str(path), cwd=tmp_path, env=ENV)
    assert result.code == 1
    assert "no space left on device" in result.output
    assert "full or read-only" in result.output
    assert "after 3 attempts" not in result.output
    # no retries: each blob tried once; and a push's first failure stops its uploads not
    # yet started (it sends PUSH_CONCURRENCY blobs at a time; in CI each of the two
    # platform images is built and pushed apart, so two pushes may fail at once)
    tried = [parse_qs(urlsplit(hit).query)["digest"][0] for hit in hits]
    assert len(tried) == len(set(tried)), hits
    assert 1 <= len(hits) <= 2 * PUSH_CONCURRENCY, hits
    assert digest(f"{registry.host}/t/app:1.0") is None


def test_an_immutable_tag_is_not_replaced_by_other_content(
    tmp_path: Path, registry: OwnRegistry
) -> None:
    path = project(tmp_path, f"{registry.host}/t", "one", "['1.0.0']")
    first = run_mab("build", "-f", str(path), cwd=tmp_path, env=ENV)
    assert first.code == 0, first.output
    kept = digest(f"{registry.host}/t/app:1.0.0")
    project(tmp_path, f"{registry.host}/t", "other content", "['1.0.0']")
    second = run_mab("build", "-f", str(path), cwd=tmp_path, env=ENV)
    assert second.code == 1
    assert "1.0.0 already names another index" in second.stderr
    assert digest(f"{registry.host}/t/app:1.0.0") == kept
    forced = run_mab("build", "-f", str(path), "--force", cwd=tmp_path, env=ENV)
    assert forced.code == 0, forced.output
    assert digest(f"{registry.host}/t/app:1.0.0") not in (None, kept)


def _slow_project(root: Path, registry: str) -> Path:
    (root / "app").mkdir(exist_ok=True)
    marker = f"mab-signal-{os.getpid()}-{time.monotonic_ns()}"
    (root / "app" / "Dockerfile").write_text(
        f"FROM busybox:1.35\nRUN echo {marker} && sleep 60 && echo done\n"
    )
    path = root / "builds.yaml"
    path.write_text(
        f"registry: {registry}\nplatforms: [linux/amd64, linux/arm64]\n"
        "base_images: {busybox:1.35: localhost:5000/mirror/busybox:1.35}\n"
        "cache: {type: none}\n"
        "targets:\n  app: {context: app, tags: ['1.0']}\n"
    )
    return path


def _buildx_for(context: Path) -> list[str]:
    """Command lines of running docker/buildx build processes for *context* (from /proc:
    ps would cut long lines)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(w.decode(errors="replace") for w in words)
        if "buildx" in line and " build " in line and str(context) in line:
            found.append(line)
    return found


def _start_build(path: Path, tmpdir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mab", "build", "-f", str(path), "--no-cache"],
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)},
    )
    deadline = time.monotonic() + 120
    while not _buildx_for(path.parent / "app") and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)  # the RUN step is running
    if not _buildx_for(path.parent / "app"):
        proc.kill()
        out, err = proc.communicate(timeout=30)
        raise AssertionError(f"the build never started: {out}{err}")
    return proc


def _gone(context: Path, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _buildx_for(context):
            return True
        time.sleep(0.5)
    return False


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_stop_the_builds_and_say_what_stands(
    tmp_path: Path, registry: OwnRegistry, sig: signal.Signals, code: int
) -> None:
    path = _slow_project(tmp_path, f"{registry.host}/t")
    scratch = Path(tempfile.mkdtemp(dir=tmp_path))
    proc = _start_build(path, scratch)
    started = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert time.monotonic() - started < 30  # not the 60 s the RUN step would take
    assert "interrupted: not published (no tag written or moved): app" in err
    assert "Traceback" not in err
    assert _gone(tmp_path / "app", within=15), _buildx_for(tmp_path / "app")
    assert digest(f"{registry.host}/t/app:1.0") is None
    assert not list(scratch.glob("mab-run-*"))  # its temp files went with it


def test_sigkill_leaves_no_build_running_and_the_next_run_cleans_up(
    tmp_path: Path, registry: OwnRegistry
) -> None:
    path = _slow_project(tmp_path, f"{registry.host}/t")
    scratch = Path(tempfile.mkdtemp(dir=tmp_path))
    proc = _start_build(path, scratch)
    proc.kill()
    proc.communicate(timeout=30)
    assert _gone(tmp_path / "app", within=20), _buildx_for(tmp_path / "app")
    assert list(scratch.glob("mab-run-*"))  # SIGKILL: nothing could clean up
    # the next run need not wait for the slow step: what it must do is clean up
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox:1.35\nRUN echo quick\n")
    rerun = subprocess.run(
        [sys.executable, "-m", "mab", "build", "-f", str(path), "--platform", "linux/amd64"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **ENV, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)},
        timeout=300,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert not list(scratch.glob("mab-run-*"))  # the stale folder of the killed run went too
