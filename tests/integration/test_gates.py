"""Publish gates (issue 12) on the real engine: dockerd's BuildKit (default docker driver,
so mab uploads each platform's OCI layout itself), QEMU for the foreign platforms, a
distribution registry of each test's own on 127.0.0.1, and Debian's cosign. What landed
is read with tools no one here wrote: cosign verify, crane, and Debian's pyspdxtools for
the SBOMs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import crane, crane_json, platforms_of, run_mab
from .test_faults import OwnRegistry

pytestmark = pytest.mark.engine

PASSWORD = "pw-Zq7-never-printed"  # the signing key's password: must show up nowhere
ENV = {"MAB_RETRY_ATTEMPTS": "3", "COSIGN_PASSWORD": PASSWORD}
BUSYBOX = "localhost:5000/mirror/busybox:1.35"
SBOM_GENERATOR = r"""#!/bin/sh
# A minimal BuildKit SBOM generator (BuildKit's docs/attestations/sbom-protocol.md): scan
# the rootfs at $BUILDKIT_SCAN_SOURCE, write an in-toto statement whose predicate is an
# SPDX 2.3 document to $BUILDKIT_SCAN_DESTINATION/<name>.spdx.json.
set -eu
src=${BUILDKIT_SCAN_SOURCE:?}
name=$(basename "$src")
out="${BUILDKIT_SCAN_DESTINATION:?}/$name.spdx.json"
ns="https://mab.invalid/spdx/$name-$(cat /proc/sys/kernel/random/uuid)"
{
  printf '{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://spdx.dev/Document",'
  printf '"subject":[],"predicate":{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0",'
  printf '"SPDXID":"SPDXRef-DOCUMENT","name":"%s","documentNamespace":"%s",' "$name" "$ns"
  printf '"creationInfo":{"created":"%s","creators":["Tool: mab-test-generator"]},' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '"documentDescribes":["SPDXRef-rootfs"],"packages":[{"name":"rootfs",'
  printf '"SPDXID":"SPDXRef-rootfs","downloadLocation":"NOASSERTION","filesAnalyzed":false}],'
  printf '"files":['
  cd "$src"
  find . -xdev -type f -links 1 | head -n 100 | {
    n=0
    while read -r f; do
      [ "$n" -eq 0 ] || printf ','
      n=$((n + 1))
      printf '{"fileName":"%s","SPDXID":"SPDXRef-File-%s","checksums":[' "$f" "$n"
      printf '{"algorithm":"SHA1","checksumValue":"%s"}]}' "$(sha1sum "$f" | cut -d' ' -f1)"
    done
  }
  printf '],"relationships":[{"spdxElementId":"SPDXRef-DOCUMENT",'
  printf '"relationshipType":"DESCRIBES","relatedSpdxElement":"SPDXRef-rootfs"}]}}\n'
} >"$out"
"""


@pytest.fixture(autouse=True)
def tools() -> None:
    missing = [t for t in ("cosign", "crane", "pyspdxtools") if shutil.which(t) is None]
    if missing and os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the gate tests, but {missing} is missing", pytrace=False)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (run: sudo scripts/engine-up)")


def _own(root: Path) -> Iterator[OwnRegistry]:
    root.mkdir()
    own = OwnRegistry(root)
    own.start()
    yield own
    own.stop()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[OwnRegistry]:
    yield from _own(tmp_path / "registry")


@pytest.fixture
def second(tmp_path: Path) -> Iterator[OwnRegistry]:
    yield from _own(tmp_path / "registry2")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A busybox app and a cosign key pair whose password is PASSWORD."""
    root = tmp_path / "project"
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text(
        'FROM busybox:1.35\nARG VALUE=one\nRUN echo "$VALUE" > /value\n'
    )
    subprocess.run(
        ["cosign", "generate-key-pair"],
        cwd=root,
        env={**os.environ, "COSIGN_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
    )
    return root


def cosign_verify(ref: str, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "cosign",
            "verify",
            "--key",
            str(key),
            "--insecure-ignore-tlog=true",
            "--allow-insecure-registry",
            "--allow-http-registry",
            ref,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def images_of(ref: str) -> dict[str, str]:
    """Platform -> image digest of an index, attestation entries set aside."""
    index = crane_json("manifest", ref)
    out = {}
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("vnd.docker.reference.type"):
            continue
        p = entry["platform"]
        out["/".join(x for x in (p["os"], p["architecture"], p.get("variant")) if x)] = entry[
            "digest"
        ]
    return out


def sbom_generator(registry: OwnRegistry, root: Path) -> str:
    """An SBOM generator image made here, offline, from the busybox mirror."""
    folder = root / "sbom-generator"
    folder.mkdir()
    (folder / "scan.sh").write_text(SBOM_GENERATOR)
    (folder / "scan.sh").chmod(0o755)
    (folder / "Dockerfile").write_text(
        f'FROM {BUSYBOX}\nCOPY scan.sh /scan.sh\nENTRYPOINT ["/scan.sh"]\n'
    )
    image = f"{registry.host}/sbom-generator:1"
    subprocess.run(
        [
            "docker",
            "buildx",
            "build",
            "--platform=linux/amd64,linux/arm64,linux/arm/v7",
            "--provenance=false",
            f"--output=type=image,name={image},push=true",
            str(folder),
        ],
        check=True,
        capture_output=True,
    )
    return image


def no_password_anywhere(texts: list[str], root: Path) -> None:
    for text in texts:
        assert PASSWORD not in text
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_signed_attested_build_verifies_with_cosign_and_follows_a_promotion(
    tmp_path: Path, project: Path, registry: OwnRegistry, second: OwnRegistry
) -> None:
    generator = sbom_generator(registry, tmp_path)
    path = project / "builds.yaml"
    path.write_text(
        f"registry: {registry.host}\n"
        "platforms: [linux/amd64, linux/arm64]\n"
        f"base_images: {{busybox:1.35: {BUSYBOX}}}\n"
        "cache: {type: none}\n"
        "signing: {key: cosign.key, public_key: cosign.pub}\n"
        f"attestations: {{provenance: max, sbom: {{generator: {generator}}}}}\n"
        "targets:\n"
        "  app: {context: app, tags: ['1.0.0', latest]}\n"
    )
    report = tmp_path / "report.json"
    built = run_mab("build", "-f", str(path), cwd=project, env=ENV, report=report)
    assert built.code == 0, built.output
    repository = f"{registry.host}/app"
    index = crane("digest", f"{repository}:1.0.0").stdout.strip()
    images = images_of(f"{repository}@{index}")
    assert sorted(images) == ["linux/amd64", "linux/arm64"]

    # cosign itself accepts the index and each platform image
    for digest in [index, *images.values()]:
        checked = cosign_verify(f"{repository}@{digest}", project / "cosign.pub")
        assert checked.returncode == 0, checked.stderr
    tags = crane("ls", repository).stdout.split()
    assert f"{index.replace(':', '-')}.sig" in tags

    # each platform image has its provenance and an SPDX SBOM, linked to it
    entries = crane_json("manifest", f"{repository}@{index}")["manifests"]
    for platform, digest in images.items():
        linked = [
            e
            for e in entries
            if e.get("annotations", {}).get("vnd.docker.reference.digest") == digest
        ]
        assert len(linked) == 1, platform
        layers = crane_json("manifest", f"{repository}@{linked[0]['digest']}")["layers"]
        kinds = {layer["annotations"]["in-toto.io/predicate-type"]: layer for layer in layers}
        assert any(k.startswith("https://slsa.dev/provenance/") for k in kinds), kinds
        provenance = next(v for k, v in kinds.items() if "slsa.dev" in k)
        statement = json.loads(crane("blob", f"{repository}@{provenance['digest']}").stdout)
        assert statement["predicateType"].startswith("https://slsa.dev/provenance/")
        assert "buildType" in statement["predicate"] and "invocation" in statement["predicate"]
        spdx = kinds["https://spdx.dev/Document"]
        document = json.loads(crane("blob", f"{repository}@{spdx['digest']}").stdout)
        sbom = tmp_path / f"{platform.replace('/', '-')}.spdx.json"
        sbom.write_text(json.dumps(document["predicate"]))
        valid = subprocess.run(["pyspdxtools", "-i", str(sbom)], capture_output=True, text=True)
        assert valid.returncode == 0, valid.stdout + valid.stderr
        assert any(f["fileName"] == "./value" for f in document["predicate"]["files"])

    # the report records each gate per platform
    assert built.report is not None
    (target,) = built.report["targets"]
    assert [g["gate"] for g in target["gates"]] == ["sign", "signature"]
    for p in target["platforms"]:
        assert [(g["gate"], g["ok"]) for g in p["gates"]] == [
            ("attestations", True),
            ("signature", True),
        ]
    verified = run_mab("verify", "-f", str(path), cwd=project)
    assert verified.code == 0, verified.output
    shown = run_mab("registry", "inspect", f"{repository}:1.0.0", cwd=project)
    assert f"{index.replace(':', '-')}.sig (of the index)" in shown.stdout

    # promoted to another registry: the signatures come along and verify there
    promoted = run_mab(
        "promote",
        "app",
        "--from",
        "1.0.0",
        "--to",
        "1.0.0",
        "--to-registry",
        second.host,
        "-f",
        str(path),
        cwd=project,
    )
    assert promoted.code == 0, promoted.output
    assert "signatures verified at the destination" in promoted.stderr
    for digest in [index, *images.values()]:
        checked = cosign_verify(f"{second.host}/app@{digest}", project / "cosign.pub")
        assert checked.returncode == 0, checked.stderr

    # a tag replaced by an unsigned index of the same platform images
    crane(
        "index",
        "append",
        *(f"--manifest={repository}@{d}" for d in images.values()),
        f"--tag={repository}:1.0.0",
    )
    tampered = crane("digest", f"{repository}:1.0.0").stdout.strip()
    assert tampered != index
    assert platforms_of(crane_json("manifest", f"{repository}:1.0.0")) == sorted(images)
    failed = run_mab("verify", "-f", str(path), cwd=project)
    assert failed.code == 1, failed.output
    assert f"{repository}:1.0.0 -> index {tampered[:19]}: signature not valid" in failed.output
    assert f"{repository}:latest" not in failed.output  # still the signed index
    no_password_anywhere(
        [built.output, verified.output, promoted.output, failed.output, report.read_text()],
        tmp_path,
    )


def test_registry_rm_takes_cosigns_signature_tags_with_the_image(
    project: Path, registry: OwnRegistry
) -> None:
    path = project / "builds.yaml"
    path.write_text(
        f"registry: {registry.host}\n"
        "platforms: [linux/amd64, linux/arm64]\n"
        f"base_images: {{busybox:1.35: {BUSYBOX}}}\n"
        "cache: {type: none}\n"
        "signing: {key: cosign.key, public_key: cosign.pub}\n"
        "targets:\n"
        "  app: {context: app, tags: ['1.0.0']}\n"
    )
    built = run_mab("build", "-f", str(path), cwd=project, env=ENV)
    assert built.code == 0, built.output
    repository = f"{registry.host}/app"
    index = crane("digest", f"{repository}:1.0.0").stdout.strip()
    signed = [index, *images_of(f"{repository}@{index}").values()]
    signatures = {f"{d.replace(':', '-')}.sig" for d in signed}
    assert signatures <= set(crane("ls", repository).stdout.split())  # index and images

    removed = run_mab("registry", "rm", f"{repository}:1.0.0", cwd=project, env=ENV)
    assert removed.code == 0, removed.output
    assert "and cosign's tags about them: " in removed.stderr
    assert crane("ls", repository).stdout.split() == []  # no signature of nothing is left
    for digest in signed:
        gone = crane("manifest", f"{repository}@{digest}", check=False)
        assert gone.returncode != 0 and "MANIFEST_UNKNOWN" in gone.stderr, gone.stderr


def test_a_failing_gate_leaves_only_its_target_untagged(
    tmp_path: Path, project: Path, registry: OwnRegistry
) -> None:
    scanner = project / "scan.sh"
    scanner.write_text(
        '#!/bin/sh\necho "$1 $2" >> scanned.log\necho "scanning $1"\n'
        '[ "$2" != linux/arm64 ] || { echo "CVE-2026-0001 CRITICAL"; exit 1; }\n'
    )
    scanner.chmod(0o755)
    path = project / "builds.yaml"
    path.write_text(
        f"registry: {registry.host}\n"
        "platforms: [linux/amd64, linux/arm64, linux/arm/v7]\n"
        f"base_images: {{busybox:1.35: {BUSYBOX}}}\n"
        "cache: {type: none}\n"
        "signing: {key: cosign.key, public_key: cosign.pub}\n"
        "targets:\n"
        "  smoke:\n"
        "    context: app\n"
        "    args: {VALUE: smoke}\n"
        "    tags: ['1.0']\n"
        "    test: {command: [uname, -m], expect: '^(x86_64|aarch64)$'}\n"
        "  scanned:\n"
        "    context: app\n"
        "    args: {VALUE: scanned}\n"
        "    tags: ['1.0']\n"
        "    scan: {command: './scan.sh {ref} {platform}'}\n"
        "  fine:\n"
        "    context: app\n"
        "    args: {VALUE: fine}\n"
        "    tags: ['1.0']\n"
        "    test: {command: [cat, /value], expect: '^fine$'}\n"
    )
    report = tmp_path / "report.json"
    result = run_mab("build", "-f", str(path), cwd=project, env=ENV, report=report)
    assert result.code == 1, result.output
    assert result.report is not None
    targets = {t["name"]: t for t in result.report["targets"]}
    assert targets["fine"]["status"] == "published"
    assert cosign_verify(f"{registry.host}/fine:1.0", project / "cosign.pub").returncode == 0

    smoke = targets["smoke"]
    assert smoke["status"] == "failed"
    assert "test gate failed on linux/arm/v7" in smoke["error"]
    assert "armv7l" in smoke["error"]  # the first lines of its output, run under QEMU
    outcome = {p["platform"]: p["gates"][0] for p in smoke["platforms"]}
    assert [outcome[p]["ok"] for p in ("linux/amd64", "linux/arm64", "linux/arm/v7")] == [
        True,
        True,
        False,
    ]

    scanned = targets["scanned"]
    assert scanned["status"] == "failed"
    assert "scan gate failed on linux/arm64: exit code 1" in scanned["error"]
    assert "CVE-2026-0001 CRITICAL" in scanned["error"]
    refs = (project / "scanned.log").read_text().split()
    assert all(r.startswith(f"{registry.host}/scanned@sha256:") for r in refs[0::2])
    assert refs[1::2] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]

    # neither failed target has any tag: not its own, not a signature
    for name in ("smoke", "scanned"):
        assert crane("ls", f"{registry.host}/{name}", check=False).stdout.split() == []
    assert "scan gate failed on linux/arm64" in result.stderr
    no_password_anywhere([result.output, report.read_text()], tmp_path)


def test_preflight_stops_a_gate_that_cannot_run_before_any_build(
    tmp_path: Path, project: Path, registry: OwnRegistry
) -> None:
    (project / "cosign.key").unlink()
    path = project / "builds.yaml"
    path.write_text(
        f"registry: {registry.host}\n"
        "platforms: [linux/amd64]\n"
        "signing: {key: cosign.key, public_key: cosign.pub}\n"
        "scan: {command: 'no-such-scanner {ref}'}\n"
        "targets: {app: {context: app}}\n"
    )
    result = run_mab("build", "-f", str(path), cwd=project, env=ENV)
    assert result.code == 1, result.output
    assert "cosign.key does not exist" in result.stderr
    assert "the scanner 'no-such-scanner' was not found" in result.stderr
    assert "cosign generate-key-pair" in result.stderr
    assert "#1 " not in result.output  # nothing was built
    plan = run_mab("plan", "-f", str(path), "--json", cwd=project)
    gates: dict[str, Any] = json.loads(plan.stdout)["targets"][0]["gates"]
    assert gates["order"] == ["scan", "sign"]
