"""mab on the builders most users run (issue 15): buildx's docker-container driver (what
docker/setup-buildx-action makes) and the remote driver over standalone BuildKit nodes,
all real: BuildKit v0.26.3 built by scripts/buildkit-up, QEMU, the registry on
localhost:5000. Results are read with crane and, for routing, from each node's own build
history (``buildctl debug histories``), never from mab's report alone.

The builders are declared in builds.yaml and made by ``mab builders create``:

- ``container``: docker-container, the set-up's buildkit image, host network, and its
  buildkitd.toml (plain HTTP to localhost:5000) given as ``config:``;
- ``fleet``: two remote builders, one per node: node1 serves linux/amd64, node2
  linux/arm64 and linux/arm/v7 (emulated here, native on a real arm machine).

Registry: localhost:5000 with a fresh path per test (the ``namespace`` fixture). BuildKit
in a node or in the builder container must reach the registry itself (it pushes by digest
and exports the cache), and the configs scripts/buildkit-up writes mark only
localhost:5000 and 127.0.0.1:5000 as plain HTTP; a registry of its own on another port
would need node configs of its own, which the nodes' shared set-up does not take.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .buildkit_nodes import (
    BuildKitInfo,
    Node,
    container_builder,
    ensure_buildkit,
    start_nodes,
    stop_nodes,
)
from .conftest import REPO, MabRun, crane, crane_json, platforms_of, run_mab

pytestmark = pytest.mark.engine

FLEET_PLATFORMS = [["linux/amd64"], ["linux/arm64", "linux/arm/v7"]]
DEMO_PLATFORMS = ["linux/amd64", "linux/arm/v7", "linux/arm64"]
UNAME = {"linux/amd64": "x86_64", "linux/arm64": "aarch64", "linux/arm/v7": "armv7l"}
ELF_MACHINE = {"linux/amd64": 0x3E, "linux/arm64": 0xB7, "linux/arm/v7": 0x28}
MIRRORS = "base_images: {busybox:1.35: localhost:5000/mirror/busybox:1.35}\n"


@dataclass(frozen=True)
class Builders:
    """The builders: section of one kind of builder, and the names it declares."""

    yaml: str
    names: tuple[str, ...]


def _rm(*names: str) -> None:
    for name in names:
        subprocess.run(["docker", "buildx", "rm", name], capture_output=True, timeout=120)


def container_section(info: BuildKitInfo, name: str, platforms: list[str]) -> Builders:
    return Builders(
        "builders:\n"
        f"  - name: {name}\n"
        "    driver: docker-container\n"
        f"    driver_opts: {{image: '{info.image}', network: host}}\n"
        f"    config: {info.container_config}\n"
        f"    platforms: [{', '.join(platforms)}]\n",
        (name,),
    )


def fleet_section(prefix: str, nodes: list[Node]) -> Builders:
    text = "builders:\n"
    for node in nodes:
        text += (
            f"  - name: {prefix}-{node.name}\n"
            "    driver: remote\n"
            f"    endpoint: {node.address}\n"
            f"    platforms: [{', '.join(node.requested_platforms)}]\n"
        )
    return Builders(text, tuple(f"{prefix}-{n.name}" for n in nodes))


def create(builders: Builders, folder: Path) -> None:
    """``mab builders create`` from a builds.yaml holding just *builders*, then ``mab
    builders`` shows them running with their options."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app").mkdir(exist_ok=True)
    (folder / "app" / "Dockerfile").write_text("FROM busybox:1.35\n")
    path = folder / "builds.yaml"
    path.write_text(builders.yaml + "targets:\n  app: {context: app}\n")
    made = run_mab("builders", "create", "-f", str(path), cwd=folder)
    assert made.code == 0, made.output
    shown = run_mab("builders", "--json", "-f", str(path), cwd=folder)
    assert shown.code == 0, shown.output
    rows = {r["name"]: r for r in json.loads(shown.stdout)}
    for name in builders.names:
        assert rows[name]["state"] != "missing (mab builders create)", rows[name]


@pytest.fixture(scope="module")
def info() -> BuildKitInfo:
    return ensure_buildkit()


@pytest.fixture(scope="module")
def nodes(info: BuildKitInfo) -> Iterator[list[Node]]:
    """node1 (linux/amd64) and node2 (linux/arm64, linux/arm/v7); stopped at the end."""
    started = start_nodes(FLEET_PLATFORMS)
    yield started
    stop_nodes()


@pytest.fixture(scope="module")
def fleet(nodes: list[Node], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builders]:
    """Two remote builders, one per node, made by `mab builders create`."""
    section = fleet_section(f"t15f{uuid.uuid4().hex[:6]}", nodes)
    _rm(*section.names)
    create(section, tmp_path_factory.mktemp("fleet"))
    yield section
    _rm(*section.names)


@pytest.fixture(scope="module")
def container(info: BuildKitInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builders]:
    """A docker-container builder for every demo platform, made by `mab builders create`."""
    section = container_section(info, f"t15c{uuid.uuid4().hex[:6]}", DEMO_PLATFORMS)
    _rm(*section.names)
    create(section, tmp_path_factory.mktemp("container"))
    yield section
    _rm(*section.names)


# --- the demo ----------------------------------------------------------------------------


def demo_project(folder: Path, registry: str, builders: Builders) -> Path:
    """The repository's builds.yaml (greeter: go template, cross-compiled; hello: busybox
    with a RUN step per platform) pushing to *registry*, with *builders*."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "examples", folder / "examples", dirs_exist_ok=True)
    text = (REPO / "builds.yaml").read_text()
    lines = [
        f"registry: {registry}" if ln.startswith("registry:") else ln for ln in text.split("\n")
    ]
    path = folder / "builds.yaml"
    path.write_text("\n".join(lines) + "\n" + builders.yaml)
    return path


DEMO = yaml.safe_load((REPO / "builds.yaml").read_text())


@dataclass
class Demo:
    run: MabRun
    registry: str


def build_demo(folder: Path, builders: Builders) -> Demo:
    registry = f"localhost:5000/t15demo{uuid.uuid4().hex[:8]}"
    path = demo_project(folder, registry, builders)
    result = run_mab("build", "-f", str(path), cwd=folder, report=folder / "report.json")
    return Demo(result, registry)


def check_demo(demo: Demo) -> dict[str, Any]:
    """Every tag of every target is one index with exactly the declared platforms (and
    BuildKit's attestation entries beside them); the arm images are their architecture."""
    assert demo.run.code == 0, demo.run.output
    assert demo.run.report is not None and demo.run.report["ok"], demo.run.output
    targets = {t["name"]: t for t in demo.run.report["targets"]}
    for name, spec in DEMO["targets"].items():
        repo = f"{demo.registry}/{name}"
        digests = {crane("digest", f"{repo}:{tag}").stdout.strip() for tag in spec["tags"]}
        assert digests == {targets[name]["index_digest"]}, (name, digests)
        index = crane_json("manifest", f"{repo}:{spec['tags'][0]}")
        assert platforms_of(index) == sorted(DEMO_PLATFORMS), name
        attestations = [
            m
            for m in index["manifests"]
            if (m.get("annotations") or {}).get("vnd.docker.reference.type")
            == "attestation-manifest"
        ]
        # BuildKit's provenance (its default on these drivers), one per platform image,
        # kept in the index and set aside by verification
        assert len(attestations) == len(DEMO_PLATFORMS), index
    for platform in DEMO_PLATFORMS:
        files = exported(f"{demo.registry}/hello:1.0.0", platform, "etc/greeting", "bin/busybox")
        # the RUN step ran on the target CPU (under QEMU here)
        assert f"build step ran on {UNAME[platform]}" in files["etc/greeting"].decode()
        assert files["bin/busybox"][18:20] == ELF_MACHINE[platform].to_bytes(2, "little")
        (binary,) = exported(f"{demo.registry}/greeter:0.1.0", platform, "greeter").values()
        assert binary[:4] == b"\x7fELF"
        assert int.from_bytes(binary[18:20], "little") == ELF_MACHINE[platform], platform
    return targets


def exported(ref: str, platform: str, *names: str) -> dict[str, bytes]:
    """Files of the image of *platform* under *ref* (``crane export``)."""
    data = subprocess.run(
        ["crane", "export", "--platform", platform, ref, "-"], capture_output=True, check=True
    ).stdout
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for name in names:
            handle = tar.extractfile(name)  # links are followed
            assert handle is not None, (ref, platform, name)
            out[name] = handle.read()
    return out


def test_demo_on_a_docker_container_builder(
    container: Builders, tmp_path: Path, info: BuildKitInfo
) -> None:
    demo = build_demo(tmp_path, container)
    targets = check_demo(demo)
    (name,) = container.names
    for target in targets.values():
        for p in target["platforms"]:
            assert p["builder"] == name and p["build_ref"].startswith(f"{name}/"), p
            # BuildKit pushed a per-platform index (image + attestation) by digest itself;
            # the report's digest is the image inside it
            assert p["pushed_digest"] != p["digest"]
    assert "OCI layout" not in demo.run.output
    verified = run_mab("verify", "--json", "-f", str(tmp_path / "builds.yaml"), cwd=tmp_path)
    assert verified.code == 0, verified.output


@pytest.fixture(scope="module")
def fleet_demo(
    fleet: Builders, nodes: list[Node], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Demo, dict[str, set[str]]]]:
    """The demo built on the two remote nodes, with the refs of the builds each node
    recorded during it."""
    before = {n.name: {r.ref for r in n.history()} for n in nodes}
    demo = build_demo(tmp_path_factory.mktemp("fleet-demo"), fleet)
    new = {n.name: {r.ref for r in n.history()} - before[n.name] for n in nodes}
    yield demo, new


def test_demo_on_remote_builders(fleet_demo: tuple[Demo, dict[str, set[str]]]) -> None:
    demo, _ = fleet_demo
    check_demo(demo)


def test_two_nodes_each_build_the_platforms_routed_to_them(
    fleet_demo: tuple[Demo, dict[str, set[str]]], fleet: Builders, nodes: list[Node]
) -> None:
    demo, new = fleet_demo
    assert demo.run.code == 0, demo.run.output
    assert demo.run.report is not None
    node1, node2 = nodes
    records = {n.name: [r for r in n.history() if r.ref in new[n.name]] for n in nodes}
    # each node's own record: node1 built linux/amd64 only, node2 the arm platforms only
    built = {name: {p for r in rs for p in r.platforms} for name, rs in records.items()}
    assert built == {node1.name: {"linux/amd64"}, node2.name: {"linux/arm64", "linux/arm/v7"}}
    assert all(r.ok for rs in records.values() for r in rs), records
    # ... and the images in the published indexes are the ones those builds exported: a
    # node's record names what its build pushed, the image itself or, for platforms built
    # together (node2's two), the index of them that mab split per platform
    exported_by = {
        r.image_digest: name for name, rs in records.items() for r in rs if r.image_digest
    }
    for target in demo.run.report["targets"]:
        repository = f"{demo.registry}/{target['name']}"
        listed = {d: _listed(f"{repository}@{d}") for d in exported_by}
        for p in target["platforms"]:
            node = node1 if p["platform"] == "linux/amd64" else node2
            sources = {exported_by[d] for d, inside in listed.items() if p["digest"] in inside}
            assert exported_by.get(p["pushed_digest"], node.name) == node.name, p
            assert sources == {node.name}, (target["name"], p)
            assert p["builder"] == fleet.names[nodes.index(node)]
            index = crane_json("manifest", f"{demo.registry}/{target['name']}@{p['pushed_digest']}")
            assert p["digest"] in {m["digest"] for m in index["manifests"]}


def _listed(ref: str) -> set[str]:
    """The digests *ref* stands for: itself and, for an index, its entries (nothing when
    the repository has no such manifest)."""
    try:
        document = crane_json("manifest", ref)
    except (subprocess.CalledProcessError, ValueError):
        return set()
    return {ref.rsplit("@", 1)[1], *(m["digest"] for m in document.get("manifests", []))}


# --- failure isolation ---------------------------------------------------------------------


def flaky_project(root: Path, registry: str, builders: Builders) -> Path:
    for name, dockerfile in (
        ("ok", "FROM busybox:1.35\nRUN echo ok > /ok\n"),
        (
            "flaky",
            "FROM busybox:1.35\nARG TARGETARCH\n"
            'RUN if [ "$TARGETARCH" = arm64 ]; then echo "no arm64 today" >&2; exit 3; fi\n',
        ),
    ):
        (root / name).mkdir()
        (root / name / "Dockerfile").write_text(dockerfile)
    path = root / "builds.yaml"
    path.write_text(
        f"registry: {registry}\nplatforms: [linux/amd64, linux/arm64]\n"
        + MIRRORS
        + builders.yaml
        + "targets:\n"
        "  ok: {context: ok, tags: ['1.0', latest]}\n"
        "  flaky: {context: flaky, tags: ['1.0', latest]}\n"
    )
    return path


@pytest.mark.parametrize("kind", ["container", "fleet"])
def test_a_platform_that_fails_leaves_no_tag(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> None:
    builders: Builders = request.getfixturevalue(kind)
    path = flaky_project(tmp_path, namespace, builders)
    result = run_mab("build", "-f", str(path), cwd=tmp_path, report=tmp_path / "r.json")
    assert result.code == 1, result.output
    assert "no arm64 today" in result.output
    assert result.report is not None
    assert {t["name"]: t["status"] for t in result.report["targets"]} == {
        "ok": "published",
        "flaky": "failed",
    }
    tags = crane("ls", f"{namespace}/flaky", check=False)
    assert tags.returncode != 0 or tags.stdout.strip() == "", tags.stdout
    assert platforms_of(crane_json("manifest", f"{namespace}/ok:1.0")) == [
        "linux/amd64",
        "linux/arm64",
    ]


def slow_project(root: Path, registry: str, builders: Builders) -> Path:
    """slow: amd64 and an arm64 step that takes a while; quick: amd64 only."""
    (root / "slow").mkdir()
    (root / "slow" / "Dockerfile").write_text(  # unique: the nodes keep their cache
        f"FROM busybox:1.35\nARG TARGETARCH\nRUN echo {uuid.uuid4()} > /id\n"
        'RUN if [ "$TARGETARCH" = arm64 ]; then sleep 25; fi; uname -m > /arch\n'
    )
    (root / "quick").mkdir()
    (root / "quick" / "Dockerfile").write_text("FROM busybox:1.35\nRUN uname -m > /arch\n")
    path = root / "builds.yaml"
    path.write_text(
        f"registry: {registry}\nplatforms: [linux/amd64, linux/arm64]\ncache: {{type: none}}\n"
        + MIRRORS
        + builders.yaml
        + "targets:\n"
        "  slow: {context: slow, tags: ['1.0.0']}\n"
        "  quick: {context: quick, platforms: [linux/amd64], tags: ['1.0.0']}\n"
    )
    return path


def _running_on(node: Node, platform: str, known: set[str]) -> bool:
    return any(
        platform in r.platforms and r.completed_at is None and r.ref not in known
        for r in node.history()
    )


def _failure_lines(output: str, key: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"[{key}] failed")]


def test_a_node_lost_mid_build_fails_only_its_platforms_and_a_rerun_completes(
    fleet: Builders, nodes: list[Node], tmp_path: Path, namespace: str
) -> None:
    node2 = nodes[1]
    path = slow_project(tmp_path, namespace, fleet)
    known = {r.ref for r in node2.history()}
    report = tmp_path / "lost.json"
    cmd = [sys.executable, "-m", "mab", "build", "-f", str(path), "--report", str(report)]
    running = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not _running_on(node2, "linux/arm64", known):
            assert running.poll() is None, running.communicate()[0]
            assert time.monotonic() < deadline, "node2 never started the arm64 build"
            time.sleep(0.5)
        time.sleep(3)  # inside the 25 s step
        node2.kill()
        output, _ = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 1, output
    data = json.loads(report.read_text())
    targets = {t["name"]: t for t in data["targets"]}
    assert targets["quick"]["status"] == "published", output
    assert targets["slow"]["status"] == "failed", output
    arm = next(p for p in targets["slow"]["platforms"] if p["platform"] == "linux/arm64")
    assert arm["status"] == "failed" and "was lost" in arm["error"], arm
    assert "\n" not in arm["error"]
    (line,) = _failure_lines(output, "slow linux/arm64")
    assert f"builder '{fleet.names[1]}' was lost" in line, line
    tags = crane("ls", f"{namespace}/slow", check=False)
    assert tags.returncode != 0 or tags.stdout.strip() == "", tags.stdout

    # while node2 is down: its platforms fail at once, with one line, and the rest builds
    started = time.monotonic()
    down = run_mab("build", "-f", str(path), cwd=tmp_path, report=tmp_path / "down.json")
    assert down.code == 1, down.output
    assert time.monotonic() - started < 60, "a down node must not stall the run"
    (line,) = _failure_lines(down.output, "slow linux/arm64")
    assert f"builder '{fleet.names[1]}' (remote driver) does not answer at {node2.address}" in line
    assert down.report is not None
    assert {t["name"]: t["status"] for t in down.report["targets"]}["slow"] == "failed"

    # the node is back: a rerun completes
    start_nodes(FLEET_PLATFORMS)
    again = run_mab("build", "-f", str(path), cwd=tmp_path, report=tmp_path / "again.json")
    assert again.code == 0, again.output
    index = crane_json("manifest", f"{namespace}/slow:1.0.0")
    assert platforms_of(index) == ["linux/amd64", "linux/arm64"]
    arch = exported(f"{namespace}/slow:1.0.0", "linux/arm64", "arch")["arch"]
    assert arch.decode().strip() == "aarch64"


# --- a remote BuildKit over TCP with mTLS ----------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 / buildkitd, a client certificate."""
    folder.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-days", "1", "-subj", "/CN=mab-test-ca",
             "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=folder)  # fmt: skip
    for name, ext in (
        ("daemon", "subjectAltName=IP:127.0.0.1,DNS:buildkitd\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (folder / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-subj", f"/CN={name}", "-keyout", f"{name}-key.pem",
                 "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext",
                 "-out", f"{name}.pem", cwd=folder)  # fmt: skip


@pytest.fixture
def tls_node(info: BuildKitInfo, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A buildkitd of this test's own on tcp://127.0.0.1:PORT that requires a client
    certificate (as on a real machine), with the set-up's registry settings; stopped and
    its state removed at the end. Yields (endpoint, certificate folder)."""
    if shutil.which("openssl") is None:
        message = "no openssl to make test certificates"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    certs = tmp_path / "certs"
    make_certs(certs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(tempfile.mkdtemp(prefix="mab-t15-tls-"))
    config = tmp_path / "buildkitd.toml"
    config.write_text(
        f'root = "{root}"\n[worker.oci]\n  enabled = true\n[worker.containerd]\n  enabled = false\n'
        '[registry."localhost:5000"]\n  http = true\n  insecure = true\n'
    )
    endpoint = f"tcp://127.0.0.1:{port}"
    log = (tmp_path / "buildkitd.log").open("w")
    daemon = subprocess.Popen(
        [
            str(info.buildkitd),
            "--config",
            str(config),
            "--addr",
            endpoint,
            "--tlscacert",
            str(certs / "ca.pem"),
            "--tlscert",
            str(certs / "daemon.pem"),
            "--tlskey",
            str(certs / "daemon-key.pem"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while "running server on" not in (tmp_path / "buildkitd.log").read_text():
            assert daemon.poll() is None, (tmp_path / "buildkitd.log").read_text()
            assert time.monotonic() < deadline, "buildkitd did not start"
            time.sleep(0.2)
        yield endpoint, certs
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_remote_builder_over_tcp_with_mtls(
    tls_node: tuple[str, Path], tmp_path: Path, namespace: str
) -> None:
    """builds.yaml names the TLS files (relative to it); mab passes them to buildx by
    absolute path, never their content; a client without the right certificate gets a
    one-line refusal, not a hang."""
    endpoint, _ = tls_node
    name = f"t15t{uuid.uuid4().hex[:6]}"
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox:1.35\nRUN uname -m > /arch\n")

    def write(opts: str) -> Path:
        path = tmp_path / "builds.yaml"
        path.write_text(
            f"registry: {namespace}\nplatforms: [linux/amd64, linux/arm64]\n"
            + MIRRORS
            + f"builders:\n  - name: {name}\n    driver: remote\n    endpoint: {endpoint}\n"
            f"    driver_opts: {{{opts}}}\n    platforms: [linux/amd64, linux/arm64]\n"
            "targets:\n  app: {context: app, tags: ['1.0.0']}\n"
        )
        return path

    good = "cacert: certs/ca.pem, cert: certs/client.pem, key: certs/client-key.pem"
    path = write(f"{good}, servername: buildkitd")
    _rm(name)
    try:
        made = run_mab("builders", "create", "-f", str(path), cwd=tmp_path)
        assert made.code == 0, made.output
        inspect = subprocess.run(
            ["docker", "buildx", "inspect", name], capture_output=True, text=True, check=True
        ).stdout
        assert f'key="{tmp_path}/certs/client-key.pem"' in inspect  # a path, not the key
        assert "PRIVATE KEY" not in inspect
        built = run_mab("build", "-f", str(path), cwd=tmp_path, report=tmp_path / "r.json")
        assert built.code == 0, built.output
        assert platforms_of(crane_json("manifest", f"{namespace}/app:1.0.0")) == [
            "linux/amd64",
            "linux/arm64",
        ]
        # the same endpoint with a certificate its CA did not sign: refused, in one line
        _rm(name)
        (tmp_path / "certs" / "other").mkdir()
        make_certs(tmp_path / "certs" / "other" / "x")
        path = write(
            "cacert: certs/ca.pem, cert: certs/other/x/client.pem,"
            " key: certs/other/x/client-key.pem, servername: buildkitd"
        )
        assert run_mab("builders", "create", "-f", str(path), cwd=tmp_path).code == 0
        refused = run_mab("build", "-f", str(path), "--rebuild", cwd=tmp_path)
        assert refused.code != 0, refused.output
        line = next(x for x in refused.output.splitlines() if f"builder '{name}'" in x)
        assert "does not answer" in line, refused.output
    finally:
        _rm(name)


# --- the registry cache --------------------------------------------------------------------


def test_registry_cache_per_target_and_platform_survives_the_builder(
    info: BuildKitInfo, tmp_path: Path, namespace: str
) -> None:
    """Exported per target and platform through a docker-container builder, imported by
    a new builder of the same name after the first was removed with its state."""
    section = container_section(info, f"t15k{uuid.uuid4().hex[:6]}", ["linux/amd64", "linux/arm64"])
    _rm(*section.names)
    unique = uuid.uuid4().hex
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Dockerfile").write_text(
            f'FROM busybox:1.35\nARG TARGETARCH\nRUN echo "{name} $TARGETARCH {unique}" > /x\n'
            "RUN uname -m > /arch\n"
        )
    path = tmp_path / "builds.yaml"
    path.write_text(  # export: always, as in CI (auto exports only there)
        f"registry: {namespace}\nplatforms: [linux/amd64, linux/arm64]\n"
        "cache: {export: always}\n"
        + MIRRORS
        + section.yaml
        + "targets:\n  one: {context: one, tags: ['1.0.0']}\n"
        "  two: {context: two, tags: ['1.0.0']}\n"
    )
    try:
        create(section, tmp_path / "create")
        first = run_mab("build", "-f", str(path), cwd=tmp_path, report=tmp_path / "first.json")
        assert first.code == 0, first.output
        for target in ("one", "two"):
            refs = crane("ls", f"{namespace}/{target}-buildcache").stdout.split()
            assert sorted(refs) == ["linux-amd64", "linux-arm64"], (target, refs)
        # the builder goes, its container and state volume with it; a new one is made
        _rm(*section.names)
        create(section, tmp_path / "create")
        second = run_mab(
            "build", "-f", str(path), "--rebuild", cwd=tmp_path, report=tmp_path / "second.json"
        )
        assert second.code == 0, second.output
    finally:
        _rm(*section.names)
    assert first.report is not None and second.report is not None
    for before, after in zip(first.report["targets"], second.report["targets"], strict=True):
        for p1, p2 in zip(before["platforms"], after["platforms"], strict=True):
            assert p1["cached_steps"] < p1["steps"], p1  # the unique step ran the first time
            assert p2["status"] == "built", p2
            assert p2["cached_steps"] == p2["steps"] >= 2, p2  # every step from the registry
            assert p2["digest"] == p1["digest"]  # the same image
        # the release stands: only BuildKit's attestations differ, the index is kept
        assert after["index_digest"] == before["index_digest"]


# --- the generated CI, as it runs there ----------------------------------------------------


def _workflow_runs(workflow: dict[str, Any]) -> tuple[list[str], str]:
    builds, merge = [], ""
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            run = step.get("run", "")
            if run.startswith("mab build"):
                builds.append(run)
            elif run.startswith("mab merge"):
                merge = run
    return builds, merge


def _git_commit(root: Path) -> None:
    for args in (["init", "-q", "."], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(
            ["git", "-c", "user.email=t@e", "-c", "user.name=t", *args],
            cwd=root,
            check=True,
            capture_output=True,
        )


def _images(ref: str) -> dict[str, str]:
    """platform -> image manifest digest of the index at *ref*, attestations aside."""
    out = {}
    for m in crane_json("manifest", ref)["manifests"]:
        p = m["platform"]
        if p["os"] != "unknown":
            out["/".join(x for x in (p["os"], p["architecture"], p.get("variant")) if x)] = m[
                "digest"
            ]
    return out


def test_generated_workflow_on_a_docker_container_builder(
    info: BuildKitInfo, tmp_path: Path, namespace: str
) -> None:
    """The build jobs' `mab build ... --push-by-digest` on a docker-container builder made
    as docker/setup-buildx-action makes one (named, then used by every later step: here
    BUILDX_BUILDER, which is what its `use` amounts to without changing this machine's
    current builder), then the merge job's `mab merge`: the same index as one machine."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(
        'FROM busybox:1.35\nARG TARGETARCH\nRUN echo "$TARGETARCH" > /arch && uname -m > /uname\n'
    )
    (tmp_path / "VERSION").write_text("3.1.0\n")
    path = tmp_path / "builds.yaml"  # no registry: MAB_DEFAULT_REGISTRY names it
    path.write_text(
        "platforms: [linux/amd64, linux/arm64]\nci: {cache: config}\n"
        + MIRRORS
        + "targets:\n  app: {context: app, tags: [{semver: {}}]}\n"
    )
    _git_commit(tmp_path)  # a reproducible source: same commit, same images
    generated = run_mab("ci", "generate", "github", "-f", str(path), "--out", "-", cwd=tmp_path)
    assert generated.code == 0, generated.output
    workflow = yaml.safe_load(generated.stdout)
    steps = [s.get("uses", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert any(u.startswith("docker/setup-buildx-action@") for u in steps)
    builds, merge = _workflow_runs(workflow)
    assert len(builds) == 2 and merge

    builder = f"builder-{uuid.uuid4()}"  # setup-buildx-action's naming
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "BUILDX_BUILDER": builder,
        "MAB_DEFAULT_REGISTRY": namespace,
    }

    def job(command: str, folder: Path, **extra: str) -> None:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=folder,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"

    with container_builder(builder):
        for number, command in enumerate(builds):
            folder = tmp_path / f"job{number}"  # a fresh runner: its own checkout
            shutil.copytree(tmp_path, folder, ignore=shutil.ignore_patterns("job*", "artifacts"))
            job(command, folder)
            shutil.copytree(folder / "digests", tmp_path / "artifacts" / f"job{number}")
            assert crane("ls", f"{namespace}/app", check=False).stdout.strip() == ""  # no tag yet
        merged = tmp_path / "merge"
        shutil.copytree(tmp_path, merged, ignore=shutil.ignore_patterns("job*", "artifacts"))
        for part in (tmp_path / "artifacts").iterdir():  # download-artifact, merge-multiple
            shutil.copytree(part, merged / "digests", dirs_exist_ok=True)
        job(merge, merged, GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
        split = crane("digest", f"{namespace}/app:3.1.0").stdout.strip()
        assert _images(f"{namespace}/app:3.1.0").keys() == {"linux/amd64", "linux/arm64"}
        assert "| app | published |" in (tmp_path / "summary.md").read_text()

        # one machine, same commit, same builder, a registry path of its own: the same
        # images (BuildKit's provenance differs in every build: a build id and times)
        other = f"{namespace}-single"
        single = run_mab(
            "build", "-f", str(path), "--builder", builder, cwd=tmp_path,
            env={"MAB_DEFAULT_REGISTRY": other}, report=tmp_path / "single.json",
        )  # fmt: skip
        assert single.code == 0, single.output
        assert _images(f"{other}/app:3.1.0") == _images(f"{namespace}/app:3.1.0")
        # ... and built again into the split build's path: the index digest is the same
        again = run_mab(
            "build", "-f", str(path), "--builder", builder, "--rebuild", cwd=tmp_path,
            env={"MAB_DEFAULT_REGISTRY": namespace}, report=tmp_path / "again.json",
        )  # fmt: skip
        assert again.code == 0, again.output
        assert again.report is not None
        (target,) = again.report["targets"]
        assert target["status"] == "published" and target["index_digest"] == split
        assert {p["status"] for p in target["platforms"]} == {"built"}
    for tag in ("3.1.0", "3.1", "3", "latest"):
        assert crane("digest", f"{namespace}/app:{tag}").stdout.strip() == split, tag
    arch = exported(f"{namespace}/app:3.1.0", "linux/arm64", "uname")["uname"]
    assert arch.decode().strip() == "aarch64"
