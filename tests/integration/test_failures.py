"""Failure handling on the real engine: a platform that fails publishes nothing for its
target while the other target is published; broken config exits 2; verify catches drift."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from .conftest import crane, crane_json, platforms_of, run_mab

pytestmark = pytest.mark.engine

MIRRORS = """\
base_images:
  busybox:1.35: localhost:5000/mirror/busybox:1.35
"""


def make_project(root: Path, registry: str | None, extra: str = "") -> Path:
    (root / "ok").mkdir()
    (root / "ok" / "Dockerfile").write_text("FROM busybox:1.35\nRUN echo ok > /ok\n")
    (root / "flaky").mkdir()
    (root / "flaky" / "Dockerfile").write_text(
        "FROM busybox:1.35\nARG TARGETARCH\n"
        'RUN if [ "$TARGETARCH" = arm64 ]; then echo "no arm64 today" >&2; exit 3; fi\n'
    )
    head = f"registry: {registry}\n" if registry else ""
    path = root / "builds.yaml"
    path.write_text(
        head
        + "platforms: [linux/amd64, linux/arm64]\n"
        + MIRRORS
        + "targets:\n"
        + "  ok: {context: ok, tags: ['1.0', latest]}\n"
        + extra
    )
    return path


def test_failed_platform_leaves_no_tag_and_other_target_publishes(
    tmp_path: Path, namespace: str
) -> None:
    path = make_project(tmp_path, namespace, "  flaky: {context: flaky, tags: ['1.0', latest]}\n")
    result = run_mab("build", "-f", str(path), cwd=tmp_path, report=tmp_path / "r.json")
    assert result.code == 1, result.output
    assert "no arm64 today" in result.output  # the build log tail names the cause
    assert result.report is not None
    status = {t["name"]: t["status"] for t in result.report["targets"]}
    assert status == {"ok": "published", "flaky": "failed"}, result.output
    # crane: the failed target has no tag at all; the other one is a full index
    tags = crane("ls", f"{namespace}/flaky", check=False)
    assert tags.returncode != 0 or tags.stdout.strip() == "", tags.stdout
    for tag in ("1.0", "latest"):
        assert platforms_of(crane_json("manifest", f"{namespace}/ok:{tag}")) == [
            "linux/amd64",
            "linux/arm64",
        ]
    # verify notices when a tag stops being the declared index
    ok_index = crane_json("manifest", f"{namespace}/ok:latest")
    arm = next(m for m in ok_index["manifests"] if m["platform"]["architecture"] == "arm64")
    crane("copy", f"{namespace}/ok@{arm['digest']}", f"{namespace}/ok:latest")
    verify = run_mab("verify", "-f", str(path), "-t", "ok", cwd=tmp_path)
    assert verify.code == 1
    assert "not an image index" in verify.output


def test_malformed_builds_yaml_exits_2_with_file_and_line(tmp_path: Path) -> None:
    path = make_project(tmp_path, None, "  bad:\n    context: ok\n    platforms: [linux/sparc]\n")
    result = run_mab("build", "-f", str(path), cwd=tmp_path)
    assert result.code == 2
    assert f"{path}:8: targets.bad.platforms[0]: unknown platform 'linux/sparc'" in result.stderr
    assert "Traceback" not in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_default_registry_is_started_when_nothing_answers(tmp_path: Path) -> None:
    """No registry in builds.yaml: mab pushes to the default and starts a registry there."""
    port = _free_port()
    path = make_project(tmp_path, None)
    env = {"MAB_DEFAULT_REGISTRY": f"localhost:{port}", "XDG_DATA_HOME": str(tmp_path / "data")}
    try:
        result = run_mab("build", "-f", str(path), cwd=tmp_path, env=env)
        assert result.code == 0, result.output
        # one launcher for the embedded registry and `mab registry up`: one folder per port
        data_dir = tmp_path / "data" / "mab" / "registries" / str(port) / "data"
        assert f"started a local registry at localhost:{port}" in result.output
        assert str(data_dir) in result.output
        assert (data_dir / "docker" / "registry" / "v2" / "repositories" / "ok").is_dir()
        index = crane_json("manifest", f"localhost:{port}/ok:latest")
        assert platforms_of(index) == ["linux/amd64", "linux/arm64"]
        status = run_mab("registry", "status", "--json", cwd=tmp_path, env=env)
        assert f'"port": {port}' in status.stdout and '"running": true' in status.stdout
        down = run_mab("registry", "down", "--port", str(port), cwd=tmp_path, env=env)
        assert down.code == 0, down.output
    finally:
        subprocess.run(["pkill", "-f", f"registries/{port}/config.yml"], check=False)


def test_size_budget_stops_the_publish(tmp_path: Path, namespace: str) -> None:
    path = make_project(tmp_path, namespace)
    path.write_text(
        path.read_text().replace(
            "tags: ['1.0', latest]}", "tags: ['1.0', latest], size_budget: 100KB}"
        )
    )
    result = run_mab("build", "-f", str(path), cwd=tmp_path, report=tmp_path / "r.json")
    assert result.code == 1, result.output
    assert "over the size budget of 97.7 KiB" in result.output  # busybox is ~1 MiB
    assert crane("ls", f"{namespace}/ok", check=False).stdout.strip() == ""
    assert result.report is not None
    sizes = [p["compressed_size"] for p in result.report["targets"][0]["platforms"]]
    assert all(size > 100_000 for size in sizes)
