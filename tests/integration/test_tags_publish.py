"""Tags, labels and safe publishing on the real registry, checked with crane."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REGISTRY, crane, crane_json, platforms_of, run_mab
from .faultproxy import FaultProxy

pytestmark = pytest.mark.engine

OCI = "org.opencontainers.image."


def project(root: Path, registry: str, value: str, rules: str = "[{semver: {}}]") -> Path:
    (root / "app").mkdir(exist_ok=True)
    (root / "app" / "Dockerfile").write_text(
        'FROM busybox:1.35\nARG VALUE\nRUN echo "$VALUE" > /value\n'
    )
    path = root / "builds.yaml"
    path.write_text(
        f"registry: {registry}\n"
        "platforms: [linux/amd64, linux/arm64]\n"
        "base_images: {busybox:1.35: localhost:5000/mirror/busybox:1.35}\n"
        "defaults:\n  labels: {org.example.team: platform}\n"
        "targets:\n"
        f"  app:\n    context: app\n    args: {{VALUE: '{value}'}}\n    tags: {rules}\n"
    )
    return path


def git_commit(root: Path, remote: str) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.email=t@example.test", "-c", "user.name=t", *args],
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q", ".")
    git("remote", "add", "origin", remote)
    git("add", "-A")
    git("commit", "-qm", "test")
    return git("rev-parse", "HEAD")


def digest(ref: str) -> str:
    return crane("digest", ref).stdout.strip()


def test_floating_tags_after_publishing_2_0_0_then_1_4_9(tmp_path: Path, namespace: str) -> None:
    path = project(tmp_path, namespace, "two")
    assert run_mab("build", "-f", str(path), "--version", "2.0.0").code == 0
    project(tmp_path, namespace, "backport")
    result = run_mab("build", "-f", str(path), "--version", "v1.4.9")
    assert result.code == 0, result.output
    assert "latest not moved: 2.0.0 is higher" in result.output
    repo = f"{namespace}/app"
    two, backport = digest(f"{repo}:2.0.0"), digest(f"{repo}:1.4.9")
    assert two != backport
    assert digest(f"{repo}:latest") == digest(f"{repo}:2") == digest(f"{repo}:2.0") == two
    assert digest(f"{repo}:1") == digest(f"{repo}:1.4") == backport
    # a release candidate gets its own tag and moves nothing
    project(tmp_path, namespace, "rc")
    assert run_mab("build", "-f", str(path), "--version", "2.1.0-rc.1").code == 0
    assert digest(f"{repo}:latest") == two and digest(f"{repo}:2") == two
    tags = set(crane("ls", repo).stdout.split())
    assert tags == {"2.0.0", "2.0", "2", "latest", "1.4.9", "1.4", "1", "2.1.0-rc.1"}


def test_labels_and_annotations_read_back_with_crane(tmp_path: Path, namespace: str) -> None:
    path = project(tmp_path, namespace, "labels", "[{semver: {}}, {git: {}}]")
    sha = git_commit(tmp_path, "https://ci-user:t0ken@example.test/acme/app.git")
    result = run_mab("build", "-f", str(path), "--version", "3.2.1")
    assert result.code == 0, result.output
    repo = f"{namespace}/app"
    index = crane_json("manifest", f"{repo}:3.2.1")
    annotations = index["annotations"]
    assert annotations[OCI + "version"] == "3.2.1"
    assert annotations[OCI + "revision"] == sha
    assert annotations[OCI + "source"] == "https://example.test/acme/app"  # no credentials
    assert annotations[OCI + "title"] == "app"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", annotations[OCI + "created"])
    for platform in ("linux/amd64", "linux/arm64"):
        labels = crane_json("config", "--platform", platform, f"{repo}:3.2.1")["config"]["Labels"]
        for key in ("version", "revision", "source", "title", "created"):
            assert labels[OCI + key] == annotations[OCI + key], (platform, key)
        assert labels["org.example.team"] == "platform"
    assert digest(f"{repo}:{sha[:7]}") == digest(f"{repo}:3.2.1")
    assert "t0ken" not in result.output
    # mab verify reads the labels back (one imagetools call with the index) and notices
    # one that builds.yaml now plans differently
    verified = run_mab("verify", "-f", str(path), "--version", "3.2.1", cwd=tmp_path)
    assert verified.code == 0, verified.output
    path.write_text(path.read_text().replace("team: platform", "team: other"))
    drifted = run_mab("verify", "-f", str(path), "--version", "3.2.1", cwd=tmp_path)
    assert drifted.code == 1, drifted.output
    assert "labels missing or different: ['org.example.team']" in drifted.output


def test_registry_faults_mid_publish_keep_old_tags_and_rerun_completes(
    tmp_path: Path, namespace: str
) -> None:
    env = {"MAB_RETRY_ATTEMPTS": "3", "MAB_RETRY_MAX_SECONDS": "20"}
    with FaultProxy() as proxy:
        registry = f"localhost:{proxy.port}/{namespace.split('/', 1)[1]}"
        repo = f"{REGISTRY}/{namespace.split('/', 1)[1]}/app"  # the same storage, directly
        path = project(tmp_path, registry, "one", "[{semver: {}}, {environment: {}}]")
        git_commit(tmp_path, "https://example.test/acme/app.git")  # reproducible images
        first = run_mab("build", "-f", str(path), "--version", "1.0.0", "--env", "staging", env=env)
        assert first.code == 0, first.output
        old = {t: digest(f"{repo}:{t}") for t in ("1.0.0", "1.0", "1", "latest", "staging")}

        project(tmp_path, registry, "two", "[{semver: {}}, {environment: {}}]")
        subprocess.run(
            ["git", "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qam", "two"],
            cwd=tmp_path,
            check=True,
        )
        # the registry starts failing once the immutable tag is written: every write of a
        # floating tag gets a 503 or a dropped connection
        proxy.fail = lambda method, path: (
            method == "PUT" and bool(re.search(r"/manifests/(1\.1|1|latest|staging)$", path))
        )
        build = ["build", "-f", str(path), "--version", "1.1.0", "--env", "staging"]
        failed = run_mab(*build, env=env, report=tmp_path / "failed.json")
        assert failed.code == 1, failed.output
        assert proxy.faults >= 3  # retried, with both kinds of fault
        assert "failed after 3 attempts" in failed.output
        for tag, before in old.items():
            assert digest(f"{repo}:{tag}") == before, f"{tag} moved during a failed publish"
        new = digest(f"{repo}:1.1.0")  # the immutable tag went first, verified
        assert platforms_of(crane_json("manifest", f"{repo}:1.1.0")) == [
            "linux/amd64",
            "linux/arm64",
        ]

        proxy.fail = lambda method, path: False  # the registry is back
        # --rebuild: 1.1.0's inputs are published, which alone would skip
        rerun = run_mab(*build, "--verbose", "--rebuild", env=env)
        assert rerun.code == 0, rerun.output
    # no rebuild: every build step came from cache, and nothing new was uploaded
    # (one push of both platforms, or in CI, where each platform exports its own cache and
    # builds apart, one push each)
    sent = re.findall(r"\((\d+) blobs sent", rerun.output)
    assert sent in (["0"], ["0", "0"]), rerun.output
    assert re.search(r"RUN echo .* CACHED|CACHED", rerun.output)
    assert digest(f"{repo}:1.1.0") == new  # the same images, so the same index
    for tag in ("1.1", "1", "latest", "staging"):
        assert digest(f"{repo}:{tag}") == new
    assert digest(f"{repo}:1.0.0") == digest(f"{repo}:1.0") == old["1.0.0"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_promotion_keeps_the_digest(tmp_path: Path, namespace: str) -> None:
    path = project(tmp_path, namespace, "promo", "[{environment: {versioned: false}}]")
    assert run_mab("build", "-f", str(path), "--env", "staging").code == 0
    repo = f"{namespace}/app"
    staged = digest(f"{repo}:staging")
    result = run_mab("promote", "app", "--from", "staging", "--to", "production", "-f", str(path))
    assert result.code == 0, result.output
    assert digest(f"{repo}:production") == staged
    assert f"digest kept: {staged}" in result.output
    other = f"{namespace}-prod"
    result = run_mab(
        "promote", "app", "--from", staged, "--to", "1.0.0", "--to-registry", other, "-f", str(path)
    )
    assert result.code == 0, result.output
    assert digest(f"{other}/app:1.0.0") == staged
    # into another registry: a second distribution registry on a free port
    port = _free_port()
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    second = f"localhost:{port}"
    try:
        started = subprocess.run(
            [
                sys.executable,
                "-c",
                "from mab.registry.server import ensure_local; "
                f"print(ensure_local({second!r}, None).started)",
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        assert started.stdout.strip() == "True"
        result = run_mab(
            "promote",
            "app",
            "--from",
            "staging",
            "--to",
            "production",
            "--to-registry",
            f"{second}/prod",
            "-f",
            str(path),
        )
        assert result.code == 0, result.output
        assert digest(f"{second}/prod/app:production") == staged
        assert platforms_of(crane_json("manifest", f"{second}/prod/app:production")) == [
            "linux/amd64",
            "linux/arm64",
        ]
    finally:
        subprocess.run(["pkill", "-f", f"registries/{port}/config.yml"], check=False)
    missing = run_mab("promote", "app", "--from", "nope", "--to", "x", "-f", str(path))
    assert missing.code == 1 and "manifest unknown" in missing.output


def test_the_release_is_the_same_whether_the_platforms_build_together_or_apart(
    tmp_path: Path, namespace: str
) -> None:
    """Outside CI a target's platforms build in one buildx call; in CI (a cache exported
    per platform) one call each. On the docker driver buildx gives a build of several
    platforms a provenance attestation (with the build's id and times) and a build of one
    platform none: mab asks the combined build for what one platform gets, so both ways
    publish the very same index, and a rebuild does not move it (crane)."""
    path = project(tmp_path, namespace, "same", "[latest]")
    git_commit(tmp_path, "https://example.test/acme/app.git")  # reproducible images
    ref = f"{namespace}/app:latest"
    outside = {"CI": ""}
    together = run_mab("build", "-v", "-f", str(path), cwd=tmp_path, env=outside)
    assert together.code == 0, together.output
    assert "--platform=linux/amd64,linux/arm64" in together.output  # one call
    first = digest(ref)
    again = run_mab("build", "-f", str(path), "--rebuild", cwd=tmp_path, env=outside)
    assert again.code == 0, again.output
    assert digest(ref) == first
    apart = run_mab("build", "-v", "-f", str(path), "--rebuild", cwd=tmp_path, env={"CI": "true"})
    assert apart.code == 0, apart.output
    assert "--platform=linux/amd64 " in apart.output  # one call per platform
    assert digest(ref) == first
    entries = crane_json("manifest", ref)["manifests"]
    assert [e["platform"]["architecture"] for e in entries] == ["amd64", "arm64"]
