"""builders: on the docker-container and remote drivers (issue 15): the model's checks of
driver options and the files they name, what `mab builders create` passes to buildx, a
builder that is down failing only its platforms, and a rebuild whose only difference is
BuildKit's attestations. tests/integration/test_drivers.py runs the same on real BuildKit
daemons."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from mab import api
from mab.config.project import load_project
from mab.engine.base import BuilderInfo, BuildOutcome, BuildRequest
from mab.engine.whales import _LOST, _create_argv
from mab.errors import ConfigError, EngineError
from mab.oci import ATTESTATION_TYPE, REF_DIGEST, REF_TYPE, platform_json
from mab.pipeline.build import run_build
from mab.pipeline.results import JobStatus, TargetStatus
from mab.planning.plan import make_plan

from .fakes import IMAGE, INDEX, FakeEngine, Recorder, digest_of

TARGETS = "targets:\n  app: {context: app}\n"


def _error(write_config: Callable[[str], Path], builders: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_project(write_config(f"builders:\n{builders}{TARGETS}"))
    return str(info.value)


@pytest.mark.parametrize(
    ("builder", "line", "message"),
    [
        (
            "  - {name: c, driver: docker-container, platforms: [linux/amd64],\n"
            "     driver_opts: {imgae: moby/buildkit}}\n",
            3,
            "builders[0].driver_opts.imgae: unknown docker-container driver option 'imgae'; "
            "did you mean 'image'?",
        ),
        (
            "  - {name: r, driver: remote, platforms: [linux/amd64]}\n",
            2,
            "builders[0].endpoint: a remote builder needs its BuildKit address",
        ),
        (
            "  - {name: r, driver: remote, endpoint: 'http://bk:1234', platforms: [linux/amd64]}\n",
            2,
            "tcp://HOST:PORT or unix:///PATH, not 'http://bk:1234'",
        ),
        (
            "  - name: r\n    driver: remote\n    endpoint: tcp://bk:1234\n"
            "    platforms: [linux/amd64]\n    driver_opts: {cacert: ca.pem, cert: c.pem}\n",
            6,
            "builders[0].driver_opts.cert: cert needs key too",
        ),
        (
            "  - name: r\n    driver: remote\n    endpoint: tcp://bk:1234\n"
            "    platforms: [linux/amd64]\n    driver_opts: {servername: bk}\n",
            6,
            "servername needs cacert too",
        ),
        (
            "  - name: r\n    driver: remote\n    endpoint: unix:///run/bk.sock\n"
            "    platforms: [linux/amd64]\n    driver_opts: {cacert: ca.pem}\n",
            6,
            "TLS options need a tcp:// endpoint",
        ),
        (
            "  - name: r\n    driver: remote\n    endpoint: tcp://bk:1234\n"
            "    platforms: [linux/amd64]\n    driver_opts: {timeout: 5s}\n",
            6,
            "unknown remote driver option 'timeout'",
        ),
        (
            "  - name: r\n    driver: remote\n    endpoint: tcp://bk:1234\n"
            "    platforms: [linux/amd64]\n    config: buildkitd.toml\n",
            6,
            "a remote builder's BuildKit is configured on its own machine",
        ),
        (
            "  - {name: d, platforms: [linux/amd64], driver_opts: {network: host}}\n",
            2,
            "the docker driver takes no driver options",
        ),
    ],
)
def test_driver_options_are_checked_where_they_are_written(
    write_config: Callable[[str], Path], builder: str, line: int, message: str
) -> None:
    text = _error(write_config, builder)
    assert f"builds.yaml:{line}:" in text and message in text, text


def test_tls_material_is_named_by_file_never_inlined(write_config: Callable[[str], Path]) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n"
    text = _error(
        write_config,
        "  - name: r\n    driver: remote\n    endpoint: tcp://bk:1234\n"
        "    platforms: [linux/amd64]\n"
        f'    driver_opts: {{cacert: ca.pem, cert: c.pem, key: "{pem}"}}\n',
    )
    assert "builds.yaml:6: builders[0].driver_opts.key: key holds the TLS material itself" in text
    assert "MIIEvQ" not in text and "BEGIN" not in text


def test_files_a_builder_names_must_exist(
    write_config: Callable[[str], Path], project_dir: Path
) -> None:
    (project_dir / "certs").mkdir()
    (project_dir / "certs" / "ca.pem").write_text("ca")
    token = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A9"
    text = _error(
        write_config,
        "  - name: r\n    driver: remote\n    endpoint: tcp://bk:1234\n"
        "    platforms: [linux/arm64]\n"
        f"    driver_opts: {{cacert: certs/ca.pem, cert: certs/client.pem, key: {token}}}\n"
        "  - name: c\n    driver: docker-container\n    platforms: [linux/amd64]\n"
        "    config: buildkitd.toml\n",
    )
    assert "builds.yaml:6: builders[0].driver_opts.cert: file not found: certs/client.pem" in text
    assert "builders[0].driver_opts.key: looks like a key or certificate, not a path" in text
    assert token not in text
    assert "builds.yaml:10: builders[1].config: file not found: buildkitd.toml" in text
    assert "cacert" not in text  # it exists


class CreatingEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[tuple[str, str, str | None, dict[str, str], list[str], Path | None]] = []

    def create_builder(
        self,
        name: str,
        driver: str,
        endpoint: str | None,
        driver_opts: Mapping[str, str],
        platforms: list[str],
        *,
        config: Path | None = None,
    ) -> None:
        self.created.append((name, driver, endpoint, dict(driver_opts), platforms, config))


def test_builders_create_passes_files_as_absolute_paths(
    write_config: Callable[[str], Path], project_dir: Path
) -> None:
    for name in ("ca.pem", "client.pem", "client-key.pem", "buildkitd.toml"):
        (project_dir / name).write_text("x")
    path = write_config(
        "builders:\n"
        "  - name: arm\n    driver: remote\n    endpoint: tcp://arm-box:1234\n"
        "    platforms: [linux/arm64, linux/arm/v7]\n"
        "    driver_opts: {cacert: ca.pem, cert: client.pem, key: client-key.pem,"
        " servername: arm-box}\n"
        "  - name: ci\n    driver: docker-container\n    platforms: [linux/amd64]\n"
        "    driver_opts: {image: 'moby/buildkit:v0.26.3', network: host, env.X: 1}\n"
        "    config: buildkitd.toml\n" + TARGETS
    )
    engine = CreatingEngine()
    project = load_project(path)
    assert api.create_builders(project, engine) == [("arm", True), ("ci", True)]
    arm, ci = engine.created
    assert arm == (
        "arm",
        "remote",
        "tcp://arm-box:1234",
        {
            "cacert": str(project_dir / "ca.pem"),
            "cert": str(project_dir / "client.pem"),
            "key": str(project_dir / "client-key.pem"),
            "servername": "arm-box",
        },
        ["linux/arm64", "linux/arm/v7"],
        None,
    )
    assert ci[3] == {"image": "moby/buildkit:v0.26.3", "network": "host", "env.X": "1"}
    assert ci[5] == project_dir / "buildkitd.toml"
    rows = {r.name: r.to_dict() for r in api.builders(project, engine)}
    assert rows["arm"]["options"]["key"] == "client-key.pem"  # as written: a file reference
    assert rows["ci"]["options"]["config"] == "buildkitd.toml"


def test_create_argv_is_buildx_create_with_the_config() -> None:
    argv = _create_argv(
        "ci",
        "docker-container",
        None,
        {"image": "moby/buildkit:v0.26.3", "network": "host"},
        ["linux/amd64"],
        config=Path("/etc/bk.toml"),
    )
    assert argv == [
        "docker",
        "buildx",
        "create",
        "--name",
        "ci",
        "--driver",
        "docker-container",
        "--driver-opt=image=moby/buildkit:v0.26.3",
        "--driver-opt=network=host",
        "--platform=linux/amd64",
        "--buildkitd-config=/etc/bk.toml",
    ]


@pytest.mark.parametrize(
    "line",
    [
        "ERROR: failed to build: failed to receive status: rpc error: code = Unavailable "
        "desc = error reading from server: EOF",
        "ERROR: failed to build: context deadline exceeded",
    ],
)
def test_a_lost_builder_is_recognised(line: str) -> None:
    assert _LOST.search(line)
    assert not _LOST.search('ERROR: process "/bin/sh -c exit 3" did not complete successfully')


FLEET = """\
registry: registry.test/fleet
platforms: [linux/amd64, linux/arm64]
builders:
  - {name: x86, driver: remote, endpoint: "tcp://x86:1234", platforms: [linux/amd64]}
  - {name: arm, driver: remote, endpoint: "tcp://arm:1234", platforms: [linux/arm64]}
targets:
  both: {context: app, tags: ["1.0.0"]}
  amd: {context: app, platforms: [linux/amd64], tags: ["1.0.0"]}
"""


class FleetEngine(FakeEngine):
    """Builders by name, some of them down (their BuildKit does not answer)."""

    def __init__(self, down: set[str]) -> None:
        super().__init__(driver="remote")
        self.down = down

    def builder(self, name: str | None) -> BuilderInfo:
        if name in self.down:
            raise EngineError(
                f"builder '{name}' (remote driver) does not answer at tcp://{name}:1234: its "
                "BuildKit is down or unreachable (inactive)"
            )
        return super().builder(name)


def test_a_builder_that_is_down_fails_only_its_platforms(
    write_config: Callable[[str], Path],
) -> None:
    plan = make_plan(load_project(write_config(FLEET)))
    engine, recorder = FleetEngine({"arm"}), Recorder()
    report = run_build(plan, engine, recorder, registries=engine.registry, rebuild=True)
    both, amd = report.targets
    assert amd.status is TargetStatus.PUBLISHED
    assert both.status is TargetStatus.FAILED and "no tag was written" in (both.error or "")
    arm = next(p for p in both.platforms if str(p.platform) == "linux/arm64")
    assert arm.status is JobStatus.FAILED
    assert arm.error == (
        "not built: builder 'arm' (remote driver) does not answer at tcp://arm:1234: its "
        "BuildKit is down or unreachable (inactive)"
    )
    assert "\n" not in arm.error
    assert [str(r.platform) for r in engine.builds] == ["linux/amd64", "linux/amd64"]
    assert "1.0.0" not in engine.store.tags.get("registry.test/fleet/both", {})
    warnings = [m for kind, m in recorder.events if kind == "warning"]
    assert any("its platforms (linux/arm64) fail" in m for m in warnings)


def test_every_builder_down_is_one_error(write_config: Callable[[str], Path]) -> None:
    plan = make_plan(load_project(write_config(FLEET)))
    engine = FleetEngine({"arm", "x86"})
    with pytest.raises(EngineError, match="builder 'x86'"):
        run_build(plan, engine, Recorder(), registries=engine.registry, rebuild=True)
    assert engine.builds == []


class AttestingEngine(FakeEngine):
    """Pushes what BuildKit pushes on the docker-container and remote drivers: a
    per-platform index of the image and a provenance attestation that differs on every
    build (BuildKit records a build id and times in it)."""

    def _build_one(self, request: BuildRequest, on_line: Callable[[str], None]) -> BuildOutcome:
        outcome = super()._build_one(request, on_line)
        blobs = self.store.blobs[request.repository]
        attestation = json.dumps({"mediaType": IMAGE, "build": uuid.uuid4().hex}).encode()
        blobs[digest_of(attestation)] = (IMAGE, attestation)
        index = {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": IMAGE,
                    "digest": outcome.digest,
                    "size": len(blobs[outcome.digest][1]),
                    "platform": platform_json(request.platform),
                },
                {
                    "mediaType": IMAGE,
                    "digest": digest_of(attestation),
                    "size": len(attestation),
                    "platform": {"architecture": "unknown", "os": "unknown"},
                    "annotations": {REF_TYPE: ATTESTATION_TYPE, REF_DIGEST: outcome.digest},
                },
            ],
        }
        data = json.dumps(index).encode()
        blobs[digest_of(data)] = (INDEX, data)
        return replace(outcome, digest=digest_of(data))


SAME = """\
registry: registry.test/demo
platforms: [linux/amd64, linux/arm64]
targets:
  app: {context: app, args: {V: "1"}, tags: ["1.0.0", latest]}
"""


def test_a_rebuild_that_differs_only_in_attestations_keeps_the_release(
    write_config: Callable[[str], Path],
) -> None:
    path = write_config(SAME)
    engine = AttestingEngine()
    first = run_build(
        make_plan(load_project(path)), engine, Recorder(), registries=engine.registry
    ).targets[0]
    assert first.status is TargetStatus.PUBLISHED and first.index_digest is not None
    index = json.loads(engine.store.blobs["registry.test/demo/app"][first.index_digest][1])
    assert len(index["manifests"]) == 4  # two images, two attestations: flattened
    recorder = Recorder()
    again = run_build(
        make_plan(load_project(path)),
        engine,
        recorder,
        registries=engine.registry,
        rebuild=True,
    ).targets[0]
    assert again.status is TargetStatus.PUBLISHED, again.error
    assert again.index_digest == first.index_digest
    tags = engine.store.tags["registry.test/demo/app"]
    assert tags["1.0.0"] == tags["latest"] == first.index_digest
    assert any("only attestations differ" in str(m) for _, m in recorder.events)
    # other images under the same immutable tag are still refused
    path.write_text(SAME.replace('V: "1"', 'V: "2"'))
    other = run_build(
        make_plan(load_project(path)), engine, Recorder(), registries=engine.registry, rebuild=True
    ).targets[0]
    assert other.status is TargetStatus.FAILED
    assert "already names another index" in (other.error or "")
