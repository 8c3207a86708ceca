"""Templates built for real, offline, for amd64 and arm64, and run on both (arm64 under
QEMU). Only the templates whose bases the mirrors already provide are here: go (the demo's
greeter, tests/integration/test_demo.py) and static with busybox httpd. The others need
mirror bases that scripts/make-mirrors does not make yet (see the closing note)."""

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
