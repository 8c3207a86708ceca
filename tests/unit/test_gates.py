"""Publish gates (issue 12) against the fake engine and registry: builds.yaml's signing,
attestations, scan and test blocks; smoke tests and scans per platform before the index;
signing and verification before any tag; preflight; mab verify reporting every failed
check; promote copying signatures; clean keeping signatures with their images; cosign's
command line. tests/integration/test_gates.py runs the same paths on a real engine,
registry, QEMU and Debian's cosign."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Sequence
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from mab.cli.report import plan_table
from mab.config.project import load_project
from mab.engine.base import BuildRequest
from mab.engine.whales import _attestations, _build_argv
from mab.errors import BuildError, ConfigError
from mab.oci import OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest, cosign_tag, digest_of
from mab.pipeline.audit import run_verify
from mab.pipeline.build import run_build
from mab.pipeline.digests import DigestRecord
from mab.pipeline.gates import attestation_problems
from mab.pipeline.merge import run_merge
from mab.pipeline.promote import promote
from mab.pipeline.results import RunReport, TargetStatus
from mab.planning.plan import Plan, make_plan
from mab.planning.supply import GatePlan, SigningPlan
from mab.platforms import Platform
from mab.registry.base import split_repository
from mab.registry.retention import Policy, TagState, decide
from mab.signing import Cosign, Signer

from .fakes import FakeEngine, FakeRegistry, Recorder
from .test_retention import NOW, by_tag, index

PLATFORMS = "platforms: [linux/amd64, linux/arm64, linux/arm/v7]\n"


class FakeSigner:
    """Stands for cosign: signing writes a ``sha256-<hex>.sig`` manifest (config and
    payload blobs) into the fake store, as cosign does; verify looks for it."""

    def __init__(self, engine: FakeEngine, plan: SigningPlan, *, missing: str = "") -> None:
        self.engine, self.plan, self.missing = engine, plan, missing
        self.signed: list[str] = []

    def check(self) -> str:
        if self.missing:
            raise BuildError(f"cosign was not found on PATH ({self.missing})")
        return "v2.5.0"

    def sign(self, refs: Sequence[str]) -> None:
        for ref in refs:
            repository, digest = ref.split("@")
            host, repo = split_repository(repository)
            config, payload = b"{}", json.dumps({"digest": digest}).encode()
            stored = self.engine.store.blobs.setdefault(repository, {})
            for blob in (config, payload):
                stored[digest_of(blob)] = ("application/octet-stream", blob)
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "c", "digest": digest_of(config), "size": 2},
                "layers": [{"mediaType": "p", "digest": digest_of(payload), "size": 1}],
            }
            data = json.dumps(manifest).encode()
            FakeRegistry(self.engine.store, host).put_manifest(
                repo, cosign_tag(digest), data, OCI_MANIFEST
            )
            self.signed.append(ref)

    def verify(self, ref: str) -> list[str]:
        repository, digest = ref.split("@")
        if cosign_tag(digest) in self.engine.store.tags.get(repository, {}):
            return []
        return ["Error: no signatures found"]


def signers(engine: FakeEngine, **kw: str) -> Callable[[SigningPlan], Signer]:
    return lambda plan: FakeSigner(engine, plan, **kw)


def build(plan: Plan, engine: FakeEngine, **kw: str) -> RunReport:
    return run_build(
        plan, engine, Recorder(), registries=engine.registry, signers=signers(engine, **kw)
    )


@pytest.fixture
def keys(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (project_dir / "cosign.key").write_text("not read by the fake\n")
    (project_dir / "cosign.pub").write_text("not read by the fake\n")
    monkeypatch.setenv("COSIGN_PASSWORD", "hunter2-not-shown")
    return project_dir


# --- builds.yaml ---------------------------------------------------------------------------


def test_provenance_max_refuses_secret_named_args_unless_safe(
    write_config: Callable[[str], Path],
) -> None:
    text = (
        "attestations: {provenance: max}\n"
        "targets:\n"
        "  app:\n"
        "    context: app\n"
        "    args: {NPM_TOKEN: x, MODE: y}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_project(write_config(text))
    message = caught.value.message
    assert "builds.yaml:5: targets.app.args.NPM_TOKEN" in message
    assert "provenance: max records every build arg" in message and "safe_args" in message
    load_project(write_config(text.replace("{provenance: max}", "{provenance: min}")))
    safe = text.replace("{provenance: max}", "{provenance: max, safe_args: [NPM_TOKEN]}")
    load_project(write_config(safe))


def test_a_target_block_replaces_the_top_level_one(write_config: Callable[[str], Path]) -> None:
    text = (
        "scan: {command: 'scanner --image {ref}'}\n"
        "attestations: {provenance: max, sbom: {generator: reg.test/gen:1}}\n"
        "targets:\n"
        "  app: {context: app, scan: {command: [other, '{ref}', '{platform}']}}\n"
        "  plain: {context: app, attestations: {provenance: false}, "
        "test: {command: 'app --version', expect: '^app '}}\n"
    )
    app, plain = make_plan(load_project(write_config(text))).targets
    assert app.gates.scan is not None and app.gates.scan.argv == ("other", "{ref}", "{platform}")
    assert app.gates.provenance == "max" and app.gates.sbom_generator == "reg.test/gen:1"
    assert plain.gates.scan is not None and plain.gates.scan.argv == ("scanner", "--image", "{ref}")
    assert (plain.gates.provenance, plain.gates.sbom) == ("false", False)
    assert plain.gates.test is not None and plain.gates.test.argv == ("app", "--version")
    assert app.gates.names == ("scan", "provenance=max", "sbom")
    assert plain.gates.names == ("test", "scan")
    assert make_plan(load_project(write_config(text))).to_dict()["targets"][1]["gates"][
        "order"
    ] == [
        "test",
        "scan",
    ]


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("scan: {command: 'trivy {image}'}", "unknown placeholder '{image}'"),
        ("signing: {public_key: k.pub}", "give either 'key'"),
        ("signing: {key: '-----BEGIN ENCRYPTED', public_key: k.pub}", "not shown here"),
        ("attestations: {provenance: maximal}", "attestations.provenance"),
    ],
)
def test_gate_blocks_are_checked_with_their_line(
    write_config: Callable[[str], Path], block: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_project(write_config(f"{block}\ntargets: {{app: {{context: app}}}}\n"))
    assert "builds.yaml:1:" in caught.value.message and expected in caught.value.message
    assert "-----BEGIN" not in caught.value.message


# --- smoke tests and scans, per platform, before the index --------------------------------


def test_a_smoke_test_failing_on_one_platform_leaves_its_target_untagged(
    write_config: Callable[[str], Path],
) -> None:
    text = (
        "registry: registry.test/demo\n" + PLATFORMS + "targets:\n"
        "  tested: {context: app, tags: ['1.0'], test: {command: [uname, -m], "
        "expect: '^(x86_64|aarch64)$'}}\n"
        "  other: {context: app, tags: ['2.0'], test: {command: [uname, -m]}}\n"
    )
    engine = FakeEngine()
    report = build(make_plan(load_project(write_config(text))), engine)
    tested, other = report.targets
    assert other.status is TargetStatus.PUBLISHED
    assert tested.status is TargetStatus.FAILED
    assert "tested" not in {r.rpartition("/")[2] for r in engine.store.tags}
    assert "test gate failed on linux/arm/v7" in str(tested.error)
    assert "no tag was written or moved" in str(tested.error)
    outcome = {str(p.platform): p.gates for p in tested.platforms}
    assert [g.ok for g in outcome["linux/amd64"]] == [True]
    assert outcome["linux/arm/v7"][0].output[:2] == [
        "no match for '^(x86_64|aarch64)$' in its output",
        "armv7l",
    ]
    # every platform image ran by digest, each for its own platform
    ran = {(image.split("@")[0], platform) for image, _, platform, _ in engine.ran}
    assert ("registry.test/demo/tested", "linux/arm/v7") in ran
    assert all("@sha256:" in image for image, *_ in engine.ran)
    assert report.to_dict()["targets"][0]["platforms"][2]["gates"][0]["gate"] == "test"


def test_a_non_zero_exit_fails_the_smoke_test(write_config: Callable[[str], Path]) -> None:
    text = (
        "registry: registry.test/demo\n"
        + PLATFORMS
        + ("targets: {app: {context: app, tags: ['1.0'], test: {command: 'app --selftest'}}}\n")
    )
    engine = FakeEngine()
    engine.run_exit = {"linux/arm64": 3}
    engine.run_stderr = "selftest: FAIL"
    (app,) = build(make_plan(load_project(write_config(text))), engine).targets
    assert app.status is TargetStatus.FAILED
    assert "linux/arm64: exit code 3 | selftest: FAIL" in str(app.error)
    assert engine.store.tags == {}


def test_a_scan_failing_on_arm64_gets_digest_refs_and_stops_only_its_target(
    write_config: Callable[[str], Path], project_dir: Path
) -> None:
    text = (
        "registry: registry.test/demo\n" + PLATFORMS + "targets:\n"
        "  scanned:\n"
        "    context: app\n"
        "    tags: ['1.0']\n"
        "    scan: {command: [sh, -c, 'echo {ref} {platform} >> scans.log; "
        "echo CVE-1 critical; test {platform} != linux/arm64']}\n"
        "  other: {context: app, tags: ['2.0']}\n"
    )
    engine = FakeEngine()
    report = build(make_plan(load_project(write_config(text))), engine)
    scanned, other = report.targets
    assert other.status is TargetStatus.PUBLISHED and scanned.status is TargetStatus.FAILED
    assert "scan gate failed on linux/arm64: exit code 1 | CVE-1 critical" in str(scanned.error)
    lines = (project_dir / "scans.log").read_text().splitlines()  # ran in builds.yaml's folder
    assert [line.split()[1] for line in lines] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert all(line.startswith("registry.test/demo/scanned@sha256:") for line in lines)
    assert "registry.test/demo/scanned" not in engine.store.tags


# --- signing and verifying before any tag ---------------------------------------------------

SIGNED = (
    "registry: registry.test/demo\n"
    + PLATFORMS
    + "signing: {key: cosign.key, public_key: cosign.pub}\n"
    "targets: {app: {context: app, tags: ['1.0', latest]}}\n"
)


def test_the_index_and_every_platform_image_are_signed_before_the_tags(
    write_config: Callable[[str], Path], keys: Path
) -> None:
    engine = FakeEngine()
    report = build(make_plan(load_project(write_config(SIGNED))), engine)
    (app,) = report.targets
    assert app.status is TargetStatus.PUBLISHED, app.error
    tags = engine.store.tags["registry.test/demo/app"]
    index_digest = tags["1.0"]
    index = json.loads(engine.store.blobs["registry.test/demo/app"][index_digest][1])
    for digest in [index_digest, *(m["digest"] for m in index["manifests"])]:
        assert cosign_tag(digest) in tags
    assert [g.gate for g in app.gates] == ["sign", "signature"]
    assert all(p.gates[-1].gate == "signature" and p.gates[-1].ok for p in app.platforms)
    assert "hunter2" not in json.dumps(report.to_dict())


def test_a_signature_that_does_not_verify_writes_no_tag(
    write_config: Callable[[str], Path], keys: Path
) -> None:
    engine = FakeEngine()
    plan = make_plan(load_project(write_config(SIGNED)))

    class Forgetful(FakeSigner):  # signs, but the signatures then do not verify
        def verify(self, ref: str) -> list[str]:
            return ["Error: no matching signatures: invalid signature"]

    report = run_build(
        plan, engine, Recorder(), registries=engine.registry, signers=lambda p: Forgetful(engine, p)
    )
    (app,) = report.targets
    assert app.status is TargetStatus.FAILED
    assert "verify gate failed: index sha256:" in str(app.error)
    assert "signature not valid" in str(app.error) and "no tag was written" in str(app.error)
    assert not any(
        t in engine.store.tags.get("registry.test/demo/app", {}) for t in ("1.0", "latest")
    )


def test_preflight_names_every_missing_tool_and_key_before_any_build(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    text = SIGNED.replace("targets:", "scan: {command: 'no-such-scanner-here {ref}'}\ntargets:")
    engine = FakeEngine()
    with pytest.raises(BuildError) as caught:
        build(make_plan(load_project(write_config(text))), engine, missing="cosign")
    message = caught.value.message
    assert "cosign.key does not exist" in message and "cosign.pub does not exist" in message
    assert "COSIGN_PASSWORD (the signing key's password) is not set" in message
    assert "cosign was not found on PATH" in message
    assert "the scanner 'no-such-scanner-here' was not found" in message
    assert caught.value.hint and "cosign generate-key-pair" in caught.value.hint
    assert engine.builds == []


def test_merge_checks_the_gates_before_it_publishes(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A split build's jobs push by digest only; the merge runs the publish gates, so it
    checks their tools and keys first, as a build does, and writes nothing when one is
    missing."""
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    engine = FakeEngine()
    plan = make_plan(load_project(write_config(SIGNED)))
    job = run_build(plan, engine, Recorder(), by_digest_only=True, registries=engine.registry)
    records = [
        DigestRecord(t.name, p.platform, t.repository, str(p.pushed_digest))
        for t in job.targets
        for p in t.platforms
    ]
    with pytest.raises(BuildError) as caught:
        run_merge(
            plan,
            engine,
            records,
            Recorder(),
            registries=engine.registry,
            signers=lambda p: FakeSigner(engine, p),
        )
    assert "cosign.key does not exist" in caught.value.message
    assert "COSIGN_PASSWORD (the signing key's password) is not set" in caught.value.message
    assert engine.store.tags == {}


# --- attestations ---------------------------------------------------------------------------


def _manifest(document: dict[str, object], media_type: str) -> Manifest:
    data = json.dumps(document).encode()
    return Manifest(digest_of(data), media_type, data)


def test_attestations_must_be_linked_to_their_image_and_hold_what_is_asked() -> None:
    engine = FakeEngine()
    registry = FakeRegistry(engine.store, "registry.test")
    image = Descriptor(OCI_MANIFEST, "sha256:" + "a" * 64, 10, Platform.parse("linux/arm64"))
    layers = [
        {
            "mediaType": "application/vnd.in-toto+json",
            "digest": "sha256:1",
            "size": 1,
            "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
        },
    ]
    attestation = _manifest({"mediaType": OCI_MANIFEST, "layers": layers}, OCI_MANIFEST)
    registry.put_manifest("demo/app", attestation.digest, attestation.data, OCI_MANIFEST)
    linked = {
        "mediaType": OCI_MANIFEST,
        "digest": attestation.digest,
        "size": 1,
        "platform": {"os": "unknown", "architecture": "unknown"},
        "annotations": {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": image.digest,
        },
    }
    index = _manifest({"manifests": [image.to_json(), linked]}, OCI_INDEX)
    unlinked = _manifest({"manifests": [image.to_json()]}, OCI_INDEX)
    provenance = GatePlan(provenance="max")
    assert attestation_problems(registry, "demo/app", index, image, provenance) == []
    assert attestation_problems(registry, "demo/app", unlinked, image, provenance) == [
        "no attestation manifest linked to its image"
    ]
    with_sbom = GatePlan(provenance="min", sbom=True)
    assert attestation_problems(registry, "demo/app", index, image, with_sbom) == [
        "no SPDX SBOM attestation"
    ]


def test_missing_attestations_fail_the_verify_gate(write_config: Callable[[str], Path]) -> None:
    text = (
        "registry: registry.test/demo\n"
        + PLATFORMS
        + ("attestations: {provenance: min}\ntargets: {app: {context: app, tags: ['1.0']}}\n")
    )
    engine = FakeEngine()  # its images come without attestations
    (app,) = build(make_plan(load_project(write_config(text))), engine).targets
    assert app.status is TargetStatus.FAILED
    for platform in ("linux/amd64", "linux/arm64", "linux/arm/v7"):
        assert f"{platform}: no attestation manifest linked to its image" in str(app.error)
    assert engine.builds[0].provenance == "min" and not engine.builds[0].sbom


# --- mab verify, mab promote, mab clean -----------------------------------------------------


def test_verify_reports_every_failed_check_of_a_tampered_tag(
    write_config: Callable[[str], Path], keys: Path
) -> None:
    engine = FakeEngine()
    plan = make_plan(load_project(write_config(SIGNED)))
    build(plan, engine)
    assert run_verify(plan, engine, registries=engine.registry, signers=signers(engine)).ok
    # the tag replaced by an index of the same platform images, unsigned
    repo = engine.store.tags["registry.test/demo/app"]
    old = json.loads(engine.store.blobs["registry.test/demo/app"][repo["1.0"]][1])
    tampered = json.dumps({"schemaVersion": 2, "manifests": old["manifests"]}).encode()
    FakeRegistry(engine.store, "registry.test").put_manifest("demo/app", "1.0", tampered, OCI_INDEX)
    report = run_verify(plan, engine, registries=engine.registry, signers=signers(engine))
    (app,) = report.targets
    assert not report.ok
    error = str(app.error)
    assert "annotations missing" in error  # the index check and, with it ...
    assert (
        f"registry.test/demo/app:1.0 -> index {digest_of(tampered)[:19]}: signature not valid"
        in error
    )
    assert "registry.test/demo/app:latest" not in error  # latest still names the signed index


def test_promote_to_another_registry_copies_the_signatures(
    write_config: Callable[[str], Path], keys: Path
) -> None:
    engine = FakeEngine()
    plan = make_plan(load_project(write_config(SIGNED)))
    build(plan, engine)
    done = promote(
        engine,
        plan.targets[0],
        "1.0",
        ["1.0"],
        to_registry="mirror.test/prod",
        registries=engine.registry,
        signers=signers(engine),
    )
    assert done.verified_signatures and len(done.signatures) == 4  # the index + 3 images
    assert all(t in engine.store.tags["mirror.test/prod/app"] for t in done.signatures)
    # without the copy, the destination's check fails: promote says so
    engine.store.tags["mirror.test/prod/app"] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mab.pipeline.promote.copy_signatures", lambda *a, **k: [])
        with pytest.raises(Exception, match="at the destination: index sha256:"):
            promote(
                engine,
                plan.targets[0],
                "1.0",
                ["again"],
                to_registry="mirror.test/prod",
                registries=engine.registry,
                signers=signers(engine),
            )


def test_clean_keeps_signatures_of_kept_images_and_deletes_those_of_deleted_ones() -> None:
    kept, gone = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    tags = [
        index("1.0.0", kept, 100, "sha256:" + "3" * 64),
        index("abc1234", gone, 100, "sha256:" + "4" * 64),
        TagState(cosign_tag(kept), "sha256:s1", None),
        TagState(cosign_tag(gone), "sha256:s2", None),
        TagState(cosign_tag("sha256:" + "4" * 64), "sha256:s4", None),
        TagState(cosign_tag("sha256:" + "3" * 64, "att"), "sha256:s3", None),
    ]
    plan = decide("r/app", tags, Policy(older_than_days=30), NOW)
    decided = by_tag(plan.decisions)
    assert decided[cosign_tag(kept)] == (True, f"signature of kept image {kept[:19]}")
    assert decided[cosign_tag(gone)] == (False, f"signature of deleted image {gone[:19]}")
    assert decided[cosign_tag("sha256:" + "4" * 64)][0] is False
    assert decided[cosign_tag("sha256:" + "3" * 64, "att")][0] is True
    assert plan.delete_manifests == [gone, "sha256:" + "4" * 64, "sha256:s2", "sha256:s4"]


# --- the adapters: cosign's command line, buildx's attestation flags --------------------------


def test_cosign_gets_the_password_in_its_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "cosign.log"
    program = tmp_path / "cosign"
    program.write_text(
        "#!/bin/sh\n"
        f'echo "ARGS $*" >> {log}\n'
        f'echo "PASSWORD=$COSIGN_PASSWORD" >> {log}\n'
        'case "$1" in version) echo \'{"gitVersion": "devel"}\';; '
        "sign|verify) echo '  --tlog-upload=true:';; esac\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("MY_KEY_PASSWORD", "s3cret-pass")
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    plan = SigningPlan(
        key="/k/cosign.key", public_key="/k/cosign.pub", password_env="MY_KEY_PASSWORD"
    )
    cosign = Cosign(plan, program=str(program))
    assert cosign.check() == "devel"
    cosign.sign(["localhost:5000/app@sha256:" + "a" * 64])
    assert cosign.verify("localhost:5000/app@sha256:" + "a" * 64) == []
    text = log.read_text()
    sign = next(line for line in text.splitlines() if line.startswith("ARGS sign --key"))
    assert "--tlog-upload=false" in sign and "--allow-http-registry" in sign
    assert "s3cret-pass" not in sign and "PASSWORD=s3cret-pass" in text
    verify = next(line for line in text.splitlines() if line.startswith("ARGS verify --key"))
    assert "/k/cosign.pub" in verify and "--insecure-ignore-tlog=true" in verify
    assert os.environ.get("COSIGN_PASSWORD") is None  # mab's own environment is left alone


def test_buildx_gets_provenance_and_the_sbom_generator(tmp_path: Path) -> None:
    request = BuildRequest(
        context=tmp_path,
        dockerfile=tmp_path / "Dockerfile",
        platform=Platform.parse("linux/arm64"),
        repository="registry.test/app",
        provenance="max",
        sbom=True,
        sbom_generator="registry.test/sbom-gen:1",
    )
    assert _attestations(request) == {
        "provenance": {"mode": "max"},
        "attest": {"type": "sbom", "generator": "registry.test/sbom-gen:1"},
    }
    argv = _build_argv(request, {"type": "oci"}, tmp_path / "m.json")
    assert "--provenance=mode=max" in argv
    assert "--attest=type=sbom,generator=registry.test/sbom-gen:1" in argv
    off = BuildRequest(
        context=tmp_path,
        dockerfile=tmp_path / "Dockerfile",
        platform=Platform.parse("linux/arm64"),
        repository="registry.test/app",
        provenance="false",
    )
    assert _attestations(off) == {"provenance": False}
    assert _attestations(BuildRequest(**{**off.__dict__, "load": True})) == {}


def test_mab_plan_shows_each_targets_gates(write_config: Callable[[str], Path]) -> None:
    text = (
        "signing: {key: cosign.key, public_key: cosign.pub}\n"
        "targets:\n"
        "  app: {context: app, test: {command: [app, --version]}}\n"
        "  plain: {context: app, signing: {key_env: KEY, public_key: awskms:///alias/k}}\n"
    )
    plan = make_plan(load_project(write_config(text)))
    console = Console(file=StringIO(), width=300)
    console.print(plan_table(plan))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "gates" in shown and "test, sign" in shown
    plain = plan.to_dict()["targets"][1]["gates"]["signing"]
    assert plain["key"] == "env://KEY" and plain["public_key"] == "awskms:///alias/k"


def test_a_split_build_job_needs_no_gate_tools(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    engine = FakeEngine()  # no key files, no password, cosign missing: the merge signs
    report = run_build(
        make_plan(load_project(write_config(SIGNED))),
        engine,
        Recorder(),
        registries=engine.registry,
        by_digest_only=True,
        signers=signers(engine, missing="cosign"),
    )
    assert report.ok and len(engine.builds) == 3
