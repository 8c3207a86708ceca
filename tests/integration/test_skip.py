"""The everyday loop on the real engine (issue 11): what did not change is skipped with
the registry as the cache, digests stay put git or not, and each invalidation rebuilds
exactly its target. Digests are read with crane; builds are counted from the report
(status ``unchanged`` = neither built nor pushed) and from BuildKit's own cache counts."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mab.pipeline.inputs import context_entries
from mab.planning.dockerignore import Matcher, read_patterns
from tests.importtime import run_importtime

from .conftest import crane, crane_json, demo_copy, platforms_of, run_mab

pytestmark = pytest.mark.engine

MIRROR = "localhost:5000/mirror/busybox:1.35"


def project(root: Path, registry: str, base: str = MIRROR, platforms: str = "") -> Path:
    """Two targets: app (a context with a .dockerignore that re-includes one file) and
    other; both FROM busybox."""
    for name in ("app", "other"):
        (root / name).mkdir(exist_ok=True)
        (root / name / "Dockerfile").write_text(
            "FROM busybox:1.35\nCOPY . /ctx\nRUN find /ctx | sort > /list\n"
        )
    (root / "app" / "main.txt").write_text("v1\n")
    (root / "app" / ".dockerignore").write_text("logs\n!logs/keep.log\n*.tmp\n**/cache\n")
    (root / "app" / "logs").mkdir(exist_ok=True)
    (root / "app" / "logs" / "debug.log").write_text("noise\n")
    (root / "app" / "logs" / "keep.log").write_text("kept\n")
    (root / "app" / "x.tmp").write_text("tmp\n")
    (root / "app" / "sub" / "cache").mkdir(parents=True, exist_ok=True)
    (root / "app" / "sub" / "cache" / "blob").write_text("cached\n")
    (root / "app" / "sub" / "code.txt").write_text("code\n")
    path = root / "builds.yaml"
    path.write_text(
        f"registry: {registry}\n"
        "platforms: [linux/amd64, linux/arm64]\n"
        f"base_images: {{busybox:1.35: {base}}}\n"
        "targets:\n"
        f"  app: {{context: app, tags: [latest]{platforms}}}\n"
        "  other: {context: other, tags: ['1.0', latest]}\n"
    )
    return path


def build(path: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    report = path.parent / "report.json"
    result = run_mab("build", "-f", str(path), *extra, cwd=path.parent, env=env, report=report)
    assert result.code == 0, result.output
    assert result.report is not None
    return {t["name"]: t for t in result.report["targets"]}


def digest(ref: str) -> str:
    return crane("digest", ref).stdout.strip()


def test_unchanged_reruns_skip_and_keep_every_digest_outside_git(
    tmp_path: Path, namespace: str
) -> None:
    path = project(tmp_path, namespace)
    first = build(path)
    assert {t["status"] for t in first.values()} == {"published"}
    before = {tag: digest(f"{namespace}/{tag}") for tag in ("app:latest", "other:1.0")}
    # the fast path: no engine, no python-on-whales, no buildx process
    done, loaded = run_importtime("build", "-f", str(path), cwd=tmp_path)
    stderr = done.stderr
    assert "python_on_whales" not in loaded
    # nor what other commands need: the doctor (and the checks it loads), cryptography
    assert not loaded & {"mab.doctor", "cryptography"}
    assert "app: unchanged" in stderr and "other: unchanged" in stderr
    assert {tag: digest(f"{namespace}/{tag}") for tag in before} == before


def test_unchanged_rerun_in_a_git_repo(tmp_path: Path, namespace: str) -> None:
    path = project(tmp_path, namespace)
    git = ["git", "-c", "user.email=t@e", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=tmp_path, check=True)
    build(path)
    before = digest(f"{namespace}/other:1.0")
    again = build(path)
    assert {t["status"] for t in again.values()} == {"unchanged"}
    assert digest(f"{namespace}/other:1.0") == before


@pytest.mark.parametrize(
    ("change", "rebuilt"),
    [
        (lambda root: (root / "app" / "main.txt").write_text("v2\n"), {"app"}),
        (lambda root: (root / "app" / "logs" / "debug.log").write_text("more\n"), set()),
        (lambda root: (root / "app" / "sub" / "cache" / "blob").write_text("x\n"), set()),
        (lambda root: (root / "app" / "logs" / "keep.log").write_text("changed\n"), {"app"}),
    ],
    ids=["context-file", "ignored-file", "ignored-dir", "re-included-file"],
)
def test_a_context_change_rebuilds_its_target_alone(
    tmp_path: Path, namespace: str, change: Any, rebuilt: set[str]
) -> None:
    path = project(tmp_path, namespace)
    build(path)
    old = digest(f"{namespace}/app:latest")
    change(tmp_path)
    report = build(path)
    assert {n for n, t in report.items() if t["status"] != "unchanged"} == rebuilt
    assert (digest(f"{namespace}/app:latest") != old) == ("app" in rebuilt)
    if "app" in rebuilt:  # the changed target rebuilt from BuildKit's cache as usual
        steps = [p for p in report["app"]["platforms"]]
        assert all(p["steps"] and p["cached_steps"] < p["steps"] for p in steps)


def test_a_re_pushed_base_image_rebuilds(tmp_path: Path, namespace: str) -> None:
    base = f"{namespace}/base:1"
    crane("copy", MIRROR, base)
    path = project(tmp_path, namespace, base=base)
    build(path)
    published = digest(f"{namespace}/other:1.0")
    images = {
        m["digest"]
        for m in crane_json("manifest", f"{namespace}/other:1.0")["manifests"]
        if m.get("platform", {}).get("os") != "unknown"
    }
    # the same tag, another index: the two platforms the targets use, without the rest
    crane(
        "index",
        "filter",
        base,
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/arm64",
        "-t",
        base,
    )
    result = run_mab("build", "-f", str(path), cwd=tmp_path, report=tmp_path / "r.json")
    assert result.report is not None
    report = {t["name"]: t for t in result.report["targets"]}
    # the base's digest is an input: both targets are rebuilt, none skipped as unchanged
    for name in ("app", "other"):
        assert {p["status"] for p in report[name]["platforms"]} == {"built"}, report[name]
    assert report["app"]["status"] == "published"  # latest only: it moves to the new build
    # other's immutable 1.0: the filtered index keeps the base's platform images, so the
    # rebuild may give the very images 1.0 already names (BuildKit's cache, the same
    # created time from the same files), which mab keeps; any other bytes are refused.
    built = {p["pushed_digest"] for p in report["other"]["platforms"]}
    if built <= images:
        assert report["other"]["status"] == "published", report["other"]
        assert digest(f"{namespace}/other:1.0") == published
    else:
        assert report["other"]["status"] == "failed", report["other"]
        assert "1.0 already names another index" in report["other"]["error"]


def test_a_platform_added_rebuilds_and_its_index_has_it(tmp_path: Path, namespace: str) -> None:
    path = project(tmp_path, namespace)
    build(path)
    path = project(
        tmp_path, namespace, platforms=", platforms: [linux/amd64, linux/arm64, linux/arm/v7]"
    )
    report = build(path)
    assert report["app"]["status"] == "published" and report["other"]["status"] == "unchanged"
    assert platforms_of(crane_json("manifest", f"{namespace}/app:latest")) == [
        "linux/amd64",
        "linux/arm/v7",
        "linux/arm64",
    ]


def test_a_deleted_tag_is_republished_without_rebuilding(tmp_path: Path, namespace: str) -> None:
    path = project(tmp_path, namespace)
    build(path)
    old = digest(f"{namespace}/other:1.0")
    crane("delete", f"{namespace}/other@{old}")  # the index, and so every tag on it
    report = build(path)
    assert report["other"]["status"] == "published"
    assert all(p["cached_steps"] == p["steps"] for p in report["other"]["platforms"])
    assert digest(f"{namespace}/other:1.0") == old
    rebuilt = build(path, "--rebuild")
    assert {t["status"] for t in rebuilt.values()} == {"published"}
    assert digest(f"{namespace}/other:1.0") == old


def test_the_context_mab_hashes_is_what_buildkit_received(tmp_path: Path, namespace: str) -> None:
    path = project(tmp_path, namespace)
    build(path)
    exported = subprocess.run(
        ["crane", "export", "--platform", "linux/amd64", f"{namespace}/app:latest", "-"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        member = tar.extractfile("list")
        assert member is not None
        received = member.read().decode().split()
    root = tmp_path / "app"
    matcher = Matcher.from_patterns(read_patterns((root / ".dockerignore").read_text()))
    mine = sorted(["/ctx", *(f"/ctx/{rel}" for rel, _ in context_entries(root, matcher))])
    assert received == mine


def test_the_demo_rerun_keeps_every_digest(tmp_path: Path, namespace: str) -> None:
    path = demo_copy(tmp_path, namespace)
    first = run_mab("build", "-f", str(path), cwd=tmp_path)
    assert first.code == 0, first.output
    refs = [f"{namespace}/greeter:0.1.0", f"{namespace}/hello:1.0.0", f"{namespace}/hello:latest"]
    before = {ref: digest(ref) for ref in refs}
    again = run_mab("build", "-f", str(path), cwd=tmp_path)
    assert again.code == 0, again.output
    assert "greeter: unchanged" in again.stderr and "hello: unchanged" in again.stderr
    assert {ref: digest(ref) for ref in refs} == before
