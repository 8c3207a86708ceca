"""Templates built for real, offline, and run on each platform (foreign CPUs under QEMU).

Every template, against the mirror bases scripts/make-mirrors makes (builds.yaml's
base_images maps the official names the templates use to them):

- go, rust, python (pip, poetry and uv), node (npm, pnpm and yarn), static (nginx) and cpp
  (dynamically linked, in the distroless-cc runtime): each sample project in examples/ gets
  its builds.yaml from `mab init`, then all of them are built in one `mab build` for
  linux/amd64 and linux/arm64, and each image runs its smoke command on both CPUs;
- pip (with a dependency) and poetry install from a private index that needs credentials,
  which reach the build only as the pip.conf build secret; npm ci installs a dependency
  with the token of the npmrc build secret; corepack fetches pnpm from a private npm
  registry (COREPACK_NPM_REGISTRY). tests/integration/packageserver.py serves them on the
  Docker bridge, from the package cache make-mirrors fills;
- go also as the demo's greeter, for three CPUs (tests/integration/test_demo.py);
- static with busybox httpd, and cpp linked statically for three CPUs: the tests below.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import REGISTRY, REPO, MabRun, crane_json, platforms_of, run_mab
from .packageserver import (
    IS_NUMBER_INTEGRITY,
    IS_NUMBER_VERSION,
    PNPM_SHA512,
    PNPM_VERSION,
    PackageServer,
    package_server,
)

pytestmark = pytest.mark.engine

PLATFORMS = ("linux/amd64", "linux/arm64")
# The official names the templates use -> the offline mirrors (scripts/make-mirrors).
BASE_IMAGES = {
    "rust:1.63-bookworm": f"{REGISTRY}/mirror/rust:1.63-bookworm",
    "gcr.io/distroless/cc-debian12:nonroot": f"{REGISTRY}/mirror/distroless-cc:debian12-nonroot",
    "python:3.11-slim-bookworm": f"{REGISTRY}/mirror/python:3.11-slim-bookworm",
    "node:18-bookworm-slim": f"{REGISTRY}/mirror/node:18-bookworm-slim",
    "nginxinc/nginx-unprivileged:1.22-alpine": f"{REGISTRY}/mirror/nginx-unprivileged:1.22",
    "busybox:1.35": f"{REGISTRY}/mirror/busybox:1.35",
    "debian:bookworm": f"{REGISTRY}/mirror/debian-cross:bookworm",
    "ghcr.io/astral-sh/uv:0.4": f"{REGISTRY}/mirror/uv:0.4",
    "golang:1.19-bookworm": f"{REGISTRY}/mirror/golang:1.19-bookworm",
}


@dataclass(frozen=True)
class Stack:
    """A sample project, what `mab init` must pick for it, and how its image must behave."""

    name: str
    example: str
    template: str
    vars: dict[str, Any]  # the versions the mirrors carry (Debian bookworm's)
    user: str  # the image's USER: never root
    expect: Callable[[str], str]  # machine (uname -m) -> first line the image prints
    prepare: Callable[[Path], None] = lambda _: None
    index: str = ""  # "pypi": the pip.conf secret; "npmrc": the npmrc secret;
    # "npm": COREPACK_NPM_REGISTRY
    extra: tuple[tuple[str, str], ...] = ()  # (shell command, its output) in the image


def _yarn(project: Path) -> None:
    (project / "package-lock.json").unlink()
    (project / "yarn.lock").write_text("# yarn lockfile v1\n\n\n")


def _uv(project: Path) -> None:
    """The python sample as a uv project: pyproject.toml and the uv.lock uv 0.4 writes."""
    (project / "requirements.txt").unlink()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "hello"\nversion = "0.1.0"\n'
        'requires-python = ">=3.11"\ndependencies = []\n'
    )
    (project / "uv.lock").write_text(
        'version = 1\nrequires-python = ">=3.11"\n\n[[package]]\nname = "hello"\n'
        'version = "0.1.0"\nsource = { virtual = "." }\n'
    )


# Written into the dependency manifests of the stacks that use the private indexes, so
# their install steps run in every test run (never from the build cache) and really fetch.
RUN_MARK = f"# test run {uuid.uuid4().hex[:12]}\n"


def _pip_with_a_dependency(project: Path) -> None:
    """six from the private index: the install needs the pip.conf secret to succeed."""
    (project / "requirements.txt").write_text(f"six==1.16.0\n{RUN_MARK}")


def _npm_with_a_dependency(project: Path) -> None:
    """is-number from the private npm registry, pinned in package-lock.json as npm writes
    it (resolved on registry.npmjs.org, which npm maps to the configured registry): the
    install needs the npmrc secret's registry and token to succeed."""
    manifest = json.loads((project / "package.json").read_text())
    manifest["dependencies"] = {"is-number": IS_NUMBER_VERSION}
    (project / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    lock = json.loads((project / "package-lock.json").read_text())
    lock["packages"][""]["dependencies"] = {"is-number": IS_NUMBER_VERSION}
    lock["packages"]["node_modules/is-number"] = {
        "version": IS_NUMBER_VERSION,
        "resolved": f"https://registry.npmjs.org/is-number/-/is-number-{IS_NUMBER_VERSION}.tgz",
        "integrity": IS_NUMBER_INTEGRITY,
        "engines": {"node": ">=0.12.0"},
    }
    lock["//"] = RUN_MARK.strip()  # npm ignores unknown keys; the mark defeats the cache
    (project / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")


def _poetry(project: Path) -> None:
    """The python sample as a poetry project; poetry.lock as poetry 1.8.3 wrote it."""
    (project / "requirements.txt").unlink()
    (project / "pyproject.toml").write_text(
        '[tool.poetry]\nname = "hello"\nversion = "0.1.0"\n'
        'description = "A hello program with no dependencies"\nauthors = []\n'
        'package-mode = false\n\n[tool.poetry.dependencies]\npython = "^3.11"\n\n'
        '[build-system]\nrequires = ["poetry-core"]\n'
        'build-backend = "poetry.core.masonry.api"\n'
    )
    (project / "poetry.lock").write_text(
        "# This file is automatically @generated by Poetry 1.8.3 and should not be changed "
        'by hand.\npackage = []\n\n[metadata]\nlock-version = "2.0"\n'
        'python-versions = "^3.11"\n'
        'content-hash = "81b2fa642d7f2d1219cf80112ace12d689d053d81be7f7addb98144d56fc0fb2"\n'
        f"{RUN_MARK}"
    )


def _pnpm(project: Path) -> None:
    """The node sample as a pnpm project, pinned (with its hash) in packageManager; the
    lock file as pnpm 9.15.9 wrote it."""
    (project / "package-lock.json").unlink()
    manifest = json.loads((project / "package.json").read_text())
    manifest["packageManager"] = f"pnpm@{PNPM_VERSION}+sha512.{PNPM_SHA512}"
    # run by the template's build_script step, a second pnpm call in its own RUN
    manifest["scripts"] = {"build": "node -e \"require('fs').writeFileSync('built.txt', 'built')\""}
    (project / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (project / "pnpm-lock.yaml").write_text(
        "lockfileVersion: '9.0'\n\nsettings:\n  autoInstallPeers: true\n"
        f"  excludeLinksFromLockfile: false\n\nimporters:\n\n  .: {{}}\n{RUN_MARK}"
    )


NODE_ARCH = {"x86_64": "x64", "aarch64": "arm64"}
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}

STACKS = (
    Stack(
        "go",
        "greeter",
        "go",
        {},  # mab init reads go_version 1.19 from go.mod, which the mirror has
        "65532:65532",
        lambda m: f"hello, world, from linux/{GO_ARCH[m]}",
    ),
    Stack(
        "rust",
        "rust",
        "rust",
        {"rust_version": "1.63"},
        "65532:65532",
        lambda m: f"hello from rust on linux/{m}",
    ),
    Stack(
        "python-pip",
        "python",
        "python",
        {"python_version": "3.11"},
        "65532:65532",
        lambda m: f"hello from python 3.11.2 on {m}",
        _pip_with_a_dependency,
        index="pypi",
        extra=(("python -c 'import six; print(six.__version__)'", "1.16.0"),),
    ),
    Stack(
        "python-poetry",
        "python",
        "python",
        {"python_version": "3.11"},
        "65532:65532",
        lambda m: f"hello from python 3.11.2 on {m}",
        _poetry,
        index="pypi",
        # poetry ran in the build stage only: the image has the venv, not poetry
        extra=(("python -c 'import poetry' 2>/dev/null || echo no poetry", "no poetry"),),
    ),
    Stack(
        "python-uv",
        "python",
        "python",
        {"python_version": "3.11"},
        "65532:65532",
        lambda m: f"hello from python 3.11.2 on {m}",
        _uv,
    ),
    Stack(
        "node-npm",
        "node",
        "node",
        {"node_version": "18"},
        "1000:1000",
        lambda m: f"hello from node v18 on {NODE_ARCH[m]}",
        _npm_with_a_dependency,
        index="npmrc",
        extra=(("node -e \"console.log(require('is-number')(5))\"", "true"),),
    ),
    Stack(
        "node-pnpm",
        "node",
        "node",
        {"node_version": "18", "build_script": "build"},
        "1000:1000",
        lambda m: f"hello from node v18 on {NODE_ARCH[m]}",
        _pnpm,
        index="npm",
        extra=(("cat built.txt", "built"),),
    ),
    Stack(
        "node-yarn",
        "node",
        "node",
        {"node_version": "18"},
        "1000:1000",
        lambda m: f"hello from node v18 on {NODE_ARCH[m]}",
        _yarn,
    ),
    Stack("cpp-dynamic", "cpp", "cpp", {}, "65532:65532", lambda m: f"hello from C on {m}"),
    Stack(
        "static-nginx",
        "static",
        "static",
        {"nginx_version": "1.22", "busybox_version": "1.35"},
        "101:101",
        lambda _: "",  # served over HTTP, checked below
    ),
)


@dataclass
class InitBuild:
    result: MabRun
    registry: str
    init_yaml: dict[str, dict[str, Any]]  # stack name -> the target `mab init` wrote
    root: Path
    packages: PackageServer


@pytest.fixture(scope="module")
def packages() -> Iterator[PackageServer]:
    with package_server() as server:
        yield server


@pytest.fixture(scope="module")
def init_build(tmp_path_factory: pytest.TempPathFactory, packages: PackageServer) -> InitBuild:
    """`mab init` in a copy of each sample project, then one `mab build` of them all."""
    root = tmp_path_factory.mktemp("stacks")
    secret_dir = tmp_path_factory.mktemp("secrets")
    (secret_dir / "pip.conf").write_text(packages.pip_conf())
    (secret_dir / "npmrc").write_text(packages.npmrc())
    # a fresh path per run: an earlier run's 1.0 tags are immutable, and its inputs differ
    # (the package server's port and token), so a rebuild into them would be refused
    registry = f"{REGISTRY}/t{uuid.uuid4().hex[:10]}init"
    targets: dict[str, Any] = {}
    written: dict[str, dict[str, Any]] = {}
    for stack in STACKS:
        project = root / stack.name
        shutil.copytree(REPO / "examples" / stack.example, project)
        stack.prepare(project)
        init = run_mab("init", str(project), cwd=root)
        assert init.code == 0, init.output
        doc = yaml.safe_load((project / "builds.yaml").read_text())
        (name, target), *_ = doc["targets"].items()
        assert name == stack.name
        written[stack.name] = target
        target = {**target, "context": stack.name, "tags": ["1.0"]}
        target["vars"] = {**target.get("vars", {}), **stack.vars}
        if stack.index == "pypi":
            target["secrets"] = {"pip.conf": {"file": str(secret_dir / "pip.conf")}}
        elif stack.index == "npmrc":
            target["secrets"] = {"npmrc": {"file": str(secret_dir / "npmrc")}}
        elif stack.index == "npm":
            target["args"] = {"COREPACK_NPM_REGISTRY": packages.corepack_registry}
        targets[stack.name] = target
    (root / "builds.yaml").write_text(
        yaml.safe_dump(
            {
                "registry": registry,
                "platforms": list(PLATFORMS),
                "base_images": BASE_IMAGES,
                "targets": targets,
            }
        )
    )
    lint = run_mab("lint", "--no-hadolint", "--json", cwd=root)
    assert lint.code == 0, lint.output
    checks = json.loads(lint.stdout)["buildx_checks"]
    # BuildKit's own checks need Dockerfile frontend 1.8+; dockerd 26's BuildKit has none
    # and Docker Hub (for docker/dockerfile:1.8) is out of reach: lint says so and goes on.
    assert checks == "ran" or "frontend has none" in checks, checks
    # npm's cache mount would answer is-number without asking the registry: start it cold
    prune = _docker("buildx", "prune", "-f", "--filter", "type=exec.cachemount")
    assert prune.returncode == 0, prune.stderr
    result = run_mab("build", cwd=root, report=root / "r.json")
    return InitBuild(result, registry, written, root, packages)


def _docker(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _serve_once(ref: str, platform: str) -> str:
    """Start the image, fetch / from it over the bridge, stop it; return the page."""
    run = _docker("run", "-d", "--pull", "always", "--platform", platform, ref)
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()
    try:
        ip = _docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cid
        ).stdout.strip()
        deadline = time.monotonic() + 60  # nginx starts slowly under QEMU
        while True:
            try:
                response = httpx.get(f"http://{ip}:8080/", timeout=5)
                return response.raise_for_status().text
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    logs = _docker("logs", cid).stderr
                    raise AssertionError(f"{ref} ({platform}) served nothing: {logs}") from None
                time.sleep(1)
    finally:
        _docker("rm", "-f", cid)


@pytest.mark.parametrize("stack", STACKS, ids=[s.name for s in STACKS])
def test_init_template_builds_and_runs_on_both_platforms(
    init_build: InitBuild, stack: Stack
) -> None:
    written = init_build.init_yaml[stack.name]
    assert written["template"] == stack.template
    if stack.name in ("python-uv", "python-poetry", "node-yarn", "node-pnpm"):  # lock file
        assert written["vars"]["package_manager"] == stack.name.split("-")[1]
    assert init_build.result.code == 0, init_build.result.output
    ref = f"{init_build.registry}/{stack.name}:1.0"
    assert platforms_of(crane_json("manifest", ref)) == sorted(PLATFORMS)
    for platform, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        config = crane_json("config", "--platform", platform, ref)
        assert config["architecture"] == platform.split("/")[1]
        assert config["config"].get("User") == stack.user  # non-root
        if stack.name == "static-nginx":
            page = _serve_once(ref, platform)
            assert page.strip() == (REPO / "examples/static/index.html").read_text().strip()
            continue
        run = _docker("run", "--rm", "--pull", "always", "--platform", platform, ref)
        assert run.returncode == 0, run.stderr
        first = run.stdout.strip().splitlines()[0]
        want = stack.expect(machine)
        if stack.name.startswith("node"):  # v18.x.y: the minor version is Debian's
            assert first.startswith(want.split(" on ")[0]) and first.endswith(want.split(" on ")[1])
        else:
            assert first == want
        for command, output in stack.extra:
            extra = _docker("run", "--rm", "--platform", platform, ref, "sh", "-c", command)
            assert extra.returncode == 0, extra.stderr
            assert extra.stdout.strip() == output, (command, extra.stdout, extra.stderr)


def test_private_indexes_served_the_builds_and_their_credentials_stayed_out(
    init_build: InitBuild,
) -> None:
    """The builds got poetry and six from the private index with the credentials of the
    pip.conf secret, is-number with the token of the npmrc secret, and pnpm from the
    private npm registry; the password appears in no output, report, image config or
    image file, and the secrets' files in no image."""
    assert init_build.result.code == 0, init_build.result.output
    served = init_build.packages.served
    wheels = [p.rsplit("/", 1)[1] for p in served("/pypi/") if p.endswith(".whl")]
    assert any(w.startswith("six-1.16.0-") for w in wheels), wheels
    assert any(w.startswith("poetry-1.8.3-") for w in wheels), wheels
    # one pnpm download per platform build (each build stage has its own corepack cache)
    assert len(served(f"/npm/pnpm/-/pnpm-{PNPM_VERSION}.tgz")) == len(PLATFORMS)
    # npm ci fetched the dependency with the npmrc secret's token (once or once per
    # platform: the two builds share npm's cache mount)
    assert served(f"/npm/is-number/-/is-number-{IS_NUMBER_VERSION}.tgz")
    token = init_build.packages.token
    assert token not in init_build.result.output
    assert token not in json.dumps(init_build.result.report)
    for name, secret_file, app_file in (
        ("python-pip", "etc/pip.conf", "app/app.py"),
        ("python-poetry", "etc/pip.conf", "app/app.py"),
        ("node-npm", "root/.npmrc", "app/index.js"),
    ):
        ref = f"{init_build.registry}/{name}:1.0"
        for platform in PLATFORMS:
            assert token not in json.dumps(crane_json("config", "--platform", platform, ref))
            export = subprocess.run(
                ["crane", "export", "--platform", platform, ref, "-"],
                capture_output=True,
                timeout=300,
                check=True,
            )
            assert len(export.stdout) > 1_000_000  # the image's files, not an error
            assert token.encode() not in export.stdout, (name, platform)
            with tarfile.open(fileobj=io.BytesIO(export.stdout)) as files:
                names = files.getnames()
            assert app_file in names  # the image's files, read as such
            assert secret_file not in names  # the secret's mount left nothing behind


def test_init_template_images_are_small_and_say_what_they_are(init_build: InitBuild) -> None:
    """The report's per-platform size and layer count, and the OCI title label."""
    assert init_build.result.code == 0, init_build.result.output
    report = init_build.result.report
    assert report is not None
    sizes = {
        (t["name"], p["platform"]): p["compressed_size"]
        for t in report["targets"]
        for p in t["platforms"]
    }
    # Compiled stacks ship one binary on a distroless runtime: a few MiB, not hundreds.
    for name in ("go", "rust", "cpp-dynamic"):
        for platform in PLATFORMS:
            assert sizes[(name, platform)] < 8 * 2**20, (name, platform, sizes)
    for stack in STACKS:
        ref = f"{init_build.registry}/{stack.name}:1.0"
        labels = crane_json("config", "--platform", "linux/arm64", ref)["config"]["Labels"]
        assert labels["org.opencontainers.image.title"] == stack.name


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
