"""The demo builds.yaml, built for real, checked with crane and by running the images."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile

import pytest
import yaml

from .conftest import REPO, DemoRun, crane, crane_json, platforms_of, run_mab

pytestmark = pytest.mark.engine

DEMO = yaml.safe_load((REPO / "builds.yaml").read_text())
ELF_MACHINE = {"linux/amd64": 0x3E, "linux/arm64": 0xB7, "linux/arm/v7": 0x28}
UNAME = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm/v7": "armv7l"}


def test_demo_builds_and_every_tag_is_one_index_with_the_declared_platforms(demo: DemoRun) -> None:
    assert demo.code == 0, demo.output
    assert demo.report is not None and demo.report["ok"]
    targets = {t["name"]: t for t in demo.report["targets"]}
    assert set(targets) == set(DEMO["targets"]) and len(targets) >= 2
    for name, spec in DEMO["targets"].items():
        result = targets[name]
        assert result["status"] == "published"
        declared = sorted(spec.get("platforms", DEMO["platforms"]))
        repo = f"{demo.registry}/{name}"
        digests = set()
        for tag in spec["tags"]:
            ref = f"{repo}:{tag}"
            digests.add(crane("digest", ref).stdout.strip())
            index = crane_json("manifest", ref)
            assert index["mediaType"] in (
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
            )
            assert platforms_of(index) == declared, ref
        assert digests == {result["index_digest"]}, f"{name}: tags disagree or differ from report"
        # the report's per-platform figures are real: digests crane can fetch, sizes > 0
        for p in result["platforms"]:
            assert p["compressed_size"] > 0 and p["layers"] >= 1
            assert crane("digest", f"{repo}@{p['digest']}").stdout.strip() == p["digest"]


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64", "linux/arm/v7"])
def test_runtime_image_runs_as_its_architecture(demo: DemoRun, platform: str) -> None:
    assert demo.code == 0, demo.output
    ref = f"{demo.registry}/hello:1.0.0"
    out = subprocess.run(
        ["docker", "run", "--rm", "--pull", "always", "--platform", platform, ref],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert f"running on {UNAME[platform]}" in out.stdout
    # the RUN step ran on the target CPU too (under QEMU for foreign ones)
    assert f"built for {platform}, build step ran on {UNAME[platform]}" in out.stdout


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64", "linux/arm/v7"])
def test_cross_compiled_binary_is_the_target_architecture(demo: DemoRun, platform: str) -> None:
    assert demo.code == 0, demo.output
    ref = f"{demo.registry}/greeter:0.1.0"
    exported = subprocess.run(
        ["crane", "export", "--platform", platform, ref, "-"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        member = tar.extractfile("greeter")
        assert member is not None
        header = member.read(20)
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[platform]
    out = subprocess.run(
        ["docker", "run", "--rm", "--pull", "always", "--platform", platform, ref, "ci"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    goarch = platform.split("/")[1]
    assert out.stdout.strip() == f"hello, ci, from linux/{goarch}"


def test_verify_passes_on_the_published_demo(demo: DemoRun) -> None:
    assert demo.code == 0, demo.output
    result = run_mab("verify", "--json", "-f", str(demo.file))
    assert result.code == 0, result.output
    assert all(t["status"] == "verified" for t in json.loads(result.stdout)["targets"])
