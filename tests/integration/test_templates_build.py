"""Templates built for real, offline, and run on each platform (foreign CPUs under QEMU).
Only the templates whose bases scripts/make-mirrors provides are here: go (the demo's
greeter, tests/integration/test_demo.py), static with busybox httpd, and cpp (static, with
the debian-cross mirror). rust, python, node and static/nginx need mirror bases that
scripts/make-mirrors does not make yet."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, crane_json, platforms_of, run_mab

pytestmark = pytest.mark.engine


@pytest.mark.parametrize("server", ["busybox"])
def test_static_template_builds_and_serves_on_both_platforms(
    tmp_path: Path, namespace: str, server: str
) -> None:
    shutil.copytree(REPO / "examples" / "static", tmp_path / "site")
    path = tmp_path / "builds.yaml"
    path.write_text(
        f"registry: {namespace}\n"
        "platforms: [linux/amd64, linux/arm64]\n"
        "base_images: {busybox:1.35: localhost:5000/mirror/busybox:1.35}\n"
        "targets:\n"
        "  site:\n"
        "    context: site\n"
        "    template: static\n"
        f"    vars: {{server: {server}, busybox_version: '1.35', port: 8080}}\n"
        "    tags: ['1.0']\n"
    )
    lint = run_mab("lint", "-f", str(path), "--no-hadolint", cwd=tmp_path)
    assert lint.code == 0, lint.output
    result = run_mab("build", "-f", str(path), cwd=tmp_path)
    assert result.code == 0, result.output
    ref = f"{namespace}/site:1.0"
    assert platforms_of(crane_json("manifest", ref)) == ["linux/amd64", "linux/arm64"]
    page = (tmp_path / "site" / "index.html").read_text()
    for platform, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        smoke = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--pull",
                "always",
                "--platform",
                platform,
                ref,
                "sh",
                "-c",
                "id -u; uname -m; httpd -p 8080 -h /www && sleep 1 && "
                "wget -q -O- http://127.0.0.1:8080/index.html",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert smoke.returncode == 0, smoke.stderr
        uid, arch, served = smoke.stdout.split("\n", 2)
        assert uid == "65534"  # non-root
        assert arch == machine
        assert served.strip() == page.strip()


def test_cpp_template_cross_compiles_statically_for_three_platforms(
    tmp_path: Path, namespace: str
) -> None:
    """The C sample, built by the cpp template with Debian's cross toolchains on the build
    platform (the mirror debian-cross carries them), shipped in scratch, run on each CPU."""
    shutil.copytree(REPO / "examples" / "cpp", tmp_path / "hello")
    path = tmp_path / "builds.yaml"
    path.write_text(
        f"registry: {namespace}\n"
        "platforms: [linux/amd64, linux/arm64, linux/arm/v7]\n"
        "base_images: {debian:bookworm: localhost:5000/mirror/debian-cross:bookworm}\n"
        "targets:\n"
        "  hello:\n"
        "    context: hello\n"
        "    template: cpp\n"
        "    vars: {static: true, binary: hello}\n"
        "    tags: ['1.0']\n"
    )
    result = run_mab("build", "-f", str(path), cwd=tmp_path, report=tmp_path / "r.json")
    assert result.code == 0, result.output
    ref = f"{namespace}/hello:1.0"
    assert platforms_of(crane_json("manifest", ref)) == [
        "linux/amd64",
        "linux/arm/v7",
        "linux/arm64",
    ]
    assert result.report is not None
    for entry in result.report["targets"][0]["platforms"]:
        assert entry["layers"] == 1 and entry["compressed_size"] < 1_000_000  # one binary
    for platform, machine in (
        ("linux/amd64", "x86_64"),
        ("linux/arm64", "aarch64"),
        ("linux/arm/v7", "armv7l"),
    ):
        run = subprocess.run(
            ["docker", "run", "--rm", "--pull", "always", "--platform", platform, ref],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == f"hello from C on {machine}"
