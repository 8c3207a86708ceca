"""Publish gates (issue 12): what a target's images must pass, after they are in the
registry by digest and before any of its tags is written or moved.

Order, per target:

1. smoke test, per platform: the target's ``test`` command run in the platform image, by
   digest (a foreign platform under QEMU); a non-zero exit, or no match for ``expect``,
   fails it;
2. scan, per platform: the ``scan`` command with ``{ref}`` (``REPOSITORY@DIGEST`` of the
   platform image) and ``{platform}`` filled in, run in the folder of builds.yaml; a
   non-zero exit fails it;
3. (publishing writes the image index by digest and verifies it)
4. sign the index and every platform image (cosign, tag-based signatures);
5. verify: the signatures are valid with ``public_key``, and each platform image has its
   attestations (provenance, SBOM) in the index, linked to it.

Every platform runs each step, so the report says which platforms passed; a step with a
failure stops the target there: it is not published, and no tag is written or moved. Each
gate's result is recorded per platform (and the index's on the target) in the report.
``verify_gates`` re-checks 4 and 5 for ``mab verify``, reporting every failed check.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mab import proc
from mab.engine.base import Engine
from mab.errors import BuildError, MabError, PublishError
from mab.oci import Descriptor, Manifest
from mab.pipeline.results import GateOutcome, PlatformResult, TargetResult
from mab.planning.plan import Plan, TargetPlan
from mab.planning.supply import GatePlan, ScanPlan, SigningPlan
from mab.platforms import Platform
from mab.registry.base import Registry, RegistryFactory, split_repository
from mab.signing import Cosign, Signer, SignerFactory, first_lines

TEST, SCAN, SIGN, SIGNATURE, ATTESTATIONS = "test", "scan", "sign", "signature", "attestations"
PREDICATE_TYPE = "in-toto.io/predicate-type"
PROVENANCE = "https://slsa.dev/provenance/"  # v0.2 and v1 both start so
SPDX = "https://spdx.dev/Document"
NOT_PUBLISHED = "no tag was written or moved"


class GateFailed(PublishError):
    """A publish gate failed: the target is not published."""


def _failure(gate: str, failed: list[tuple[str, list[str]]]) -> str:
    """``scan failed on linux/arm64: exit code 1 | CVE-... ; ...``."""
    parts = [f"{where}: {' | '.join(lines[:3]) or 'no output'}" for where, lines in failed]
    return f"{gate} gate failed on " + "; ".join(parts)


@dataclass
class Gates:
    """One target's gates, run by ``publish_target`` (steps 1-2) and ``publish`` (4-5)."""

    engine: Engine
    target: TargetPlan
    result: TargetResult
    step: Callable[[str], None] = lambda message: None
    signers: SignerFactory = Cosign

    @property
    def plan(self) -> GatePlan:
        return self.target.gates

    # --- 1, 2: before the index ----------------------------------------------------------

    def before_index(
        self, registries: RegistryFactory, on_retry: Callable[[str], None] | None = None
    ) -> None:
        """Smoke test, then scan, every platform image by digest; GateFailed if any fails."""
        if self.plan.test is None and self.plan.scan is None:
            return
        host, repo = split_repository(self.target.repository)
        with registries(host, on_retry=on_retry) as client:
            refs = {
                r.platform: f"{self.target.repository}@{_image_digest(client, repo, r)}"
                for r in self.result.platforms
            }
        test, scan = self.plan.test, self.plan.scan
        if test is not None:
            self._each(TEST, refs, lambda ref, p: self._smoke(ref, p, test.argv, test.expect))
        if scan is not None:
            self._each(SCAN, refs, lambda ref, p: _scan(scan, ref, p))

    def _each(
        self,
        gate: str,
        refs: Mapping[Platform, str],
        run: Callable[[str, Platform], tuple[bool, list[str]]],
    ) -> None:
        failed: list[tuple[str, list[str]]] = []
        for r in self.result.platforms:
            ok, lines = run(refs[r.platform], r.platform)
            r.gates.append(GateOutcome(gate, ok, lines))
            said = "passed" if ok else "FAILED: " + " | ".join(lines[:3])
            self.step(f"{gate} {r.platform}: {said}")
            if not ok:
                failed.append((str(r.platform), lines))
        if failed:
            raise GateFailed(f"{_failure(gate, failed)}; {NOT_PUBLISHED}")

    def _smoke(
        self, ref: str, platform: Platform, argv: tuple[str, ...], expect: str | None
    ) -> tuple[bool, list[str]]:
        ran = self.engine.run(ref, list(argv), str(platform), capture=True, quiet=True)
        output = f"{ran.stdout}\n{ran.stderr}"
        lines = first_lines(output)
        if ran.exit_code != 0:
            return False, [f"exit code {ran.exit_code}", *lines]
        if expect is not None and not re.search(expect, output, re.MULTILINE):
            return False, [f"no match for {expect!r} in its output", *lines]
        return True, lines

    # --- 4, 5: the index by digest, before any tag -----------------------------------------

    def check_index(self, client: Registry, repo: str, digest: str) -> None:
        """Sign the index *digest* and its platform images, then verify signatures and
        attestations; GateFailed naming every failed check."""
        if self.plan.signing is None and not self.plan.checks_attestations:
            return
        index = client.get_manifest(repo, digest)
        signer = self.signers(self.plan.signing) if self.plan.signing else None
        if signer is not None:
            refs = [self.target.repository + "@" + d for d in (digest, *_digests(index))]
            try:
                signer.sign(refs)
            except MabError as exc:
                self.result.gates.append(GateOutcome(SIGN, False, [exc.message]))
                raise GateFailed(f"sign gate failed on the index: {exc.message}") from exc
            self.result.gates.append(GateOutcome(SIGN, True, [f"signed {len(refs)} manifests"]))
            self.step(f"signed the index and {len(refs) - 1} platform images")
        problems = check_supply_chain(
            client,
            repo,
            index,
            repository=self.target.repository,
            plan=self.plan,
            signer=signer,
            result=self.result,
        )
        if problems:
            raise GateFailed("verify gate failed: " + "; ".join(problems))
        self.step("signatures and attestations verified")


def _digests(index: Manifest) -> list[str]:
    return [d.digest for d in index.images]


def _image_digest(client: Registry, repo: str, result: PlatformResult) -> str:
    """The platform image manifest a pushed digest names (BuildKit pushes an index of the
    image and its attestations when it makes attestations)."""
    pushed = str(result.pushed_digest)
    manifest = client.get_manifest(repo, pushed)
    if not manifest.is_index:
        return pushed
    images = manifest.images
    match = next((d for d in images if d.platform == result.platform), None)
    return (match or images[0]).digest if images else pushed


def _scan(scan: ScanPlan, ref: str, platform: Platform) -> tuple[bool, list[str]]:
    argv = scan.command_for(ref, str(platform))
    try:
        done = proc.call(argv, cwd=scan.cwd, timeout=scan.timeout)
    except proc.ProcessFailed as exc:  # not found, or timed out
        return False, [str(exc)]
    lines = first_lines(f"{done.stdout}\n{done.stderr}")
    if done.returncode != 0:
        return False, [f"exit code {done.returncode}", *lines]
    return True, lines


# --- checking what the registry holds (the gates, mab verify, mab promote) ------------------


def attestation_problems(
    client: Registry, repo: str, index: Manifest, image: Descriptor, plan: GatePlan
) -> list[str]:
    """What is missing of *image*'s attestations in *index*: an attestation manifest that
    names the image (``vnd.docker.reference.digest``), holding the provenance and SBOM
    statements the plan asks for (layer annotation ``in-toto.io/predicate-type``)."""
    linked = [d for d in index.manifests if d.attests == image.digest]
    if not linked:
        return ["no attestation manifest linked to its image"]
    kinds: set[str] = set()
    for entry in linked:
        layers = client.get_manifest(repo, entry.digest).layers
        kinds.update(layer.annotations.get(PREDICATE_TYPE, "") for layer in layers)
    problems = []
    if plan.provenance in ("min", "max") and not any(k.startswith(PROVENANCE) for k in kinds):
        problems.append("no SLSA provenance attestation")
    if plan.sbom and SPDX not in kinds:
        problems.append("no SPDX SBOM attestation")
    return problems


def check_supply_chain(
    client: Registry,
    repo: str,
    index: Manifest,
    *,
    repository: str,
    plan: GatePlan,
    signer: Signer | None,
    result: TargetResult | None = None,
) -> list[str]:
    """Every failed check of *index* (in *repository*): its signature and each platform
    image's, and each platform image's attestations. Outcomes are recorded on *result*."""
    problems: list[str] = []
    platforms = {r.platform: r for r in result.platforms} if result else {}

    def record(where: PlatformResult | None, gate: str, failed: list[str]) -> None:
        outcome = GateOutcome(gate, not failed, failed or ["valid"])
        if where is not None:
            where.gates.append(outcome)
        elif result is not None:
            result.gates.append(outcome)

    if signer is not None:
        failed = signer.verify(f"{repository}@{index.digest}")
        record(None, SIGNATURE, failed)
        if failed:
            problems.append(f"index {index.digest[:19]}: signature not valid: {failed[0]}")
    for image in index.images:
        where = platforms.get(image.platform) if image.platform else None
        name = str(image.platform or image.digest[:19])
        if plan.checks_attestations:
            missing = attestation_problems(client, repo, index, image, plan)
            record(where, ATTESTATIONS, missing)
            problems.extend(f"{name}: {m}" for m in missing)
        if signer is not None:
            failed = signer.verify(f"{repository}@{image.digest}")
            record(where, SIGNATURE, failed)
            if failed:
                problems.append(f"{name} {image.digest[:19]}: signature not valid: {failed[0]}")
    return problems


def verify_gates(
    target: TargetPlan,
    result: TargetResult,
    registries: RegistryFactory,
    signers: SignerFactory = Cosign,
) -> list[str]:
    """``mab verify``: every failed signature and attestation check of every index the
    target's tags point at (each index once)."""
    plan = target.gates
    if plan.signing is None and not plan.checks_attestations:
        return []
    host, repo = split_repository(target.repository)
    problems: list[str] = []
    try:
        signer = signers(plan.signing) if plan.signing else None
        with registries(host) as client:
            seen: dict[str, list[str]] = {}
            for tag in target.tag_names:
                digest = client.head_manifest(repo, tag)
                if digest is None:
                    continue
                if digest in seen:
                    seen[digest].append(tag)
                    continue
                seen[digest] = [tag]
                index = client.get_manifest(repo, digest)
                found = check_supply_chain(
                    client,
                    repo,
                    index,
                    repository=target.repository,
                    plan=plan,
                    signer=signer,
                    result=result,
                )
                problems.extend(f"{target.repository}:{tag} -> {p}" for p in found)
    except MabError as exc:
        problems.append(exc.message)
    return problems


def verify_copy(
    client: Registry,
    repo: str,
    digest: str,
    *,
    repository: str,
    plan: GatePlan,
    signers: SignerFactory,
) -> list[str]:
    """``mab promote``: the promoted index's signatures and attestations at the destination
    (*repository*, whose *repo* on the registry *client* is for)."""
    if plan.signing is None and not plan.checks_attestations:
        return []
    signer = signers(plan.signing) if plan.signing else None
    index = client.get_manifest(repo, digest)
    return check_supply_chain(client, repo, index, repository=repository, plan=plan, signer=signer)


# --- preflight ---------------------------------------------------------------------------------


def _program_found(program: str, cwd: Path) -> bool:
    if "/" in program:
        path = Path(program) if Path(program).is_absolute() else cwd / program
        return path.is_file() and os.access(path, os.X_OK)
    return shutil.which(program) is not None


def check_gate_tools(
    plan: Plan, environ: Mapping[str, str], signers: SignerFactory = Cosign
) -> list[str]:
    """Before any build: the configured gates can run. Raises BuildError listing every
    missing tool, key file and variable, with the fixes; returns what was checked."""
    problems, checked = gate_problems(((t.name, t.gates) for t in plan.targets), environ, signers)
    if problems:
        raise BuildError("publish gates cannot run: " + "; ".join(problems), hint=GATES_HINT)
    return checked


GATES_HINT = (
    "install what is missing (cosign: sudo scripts/engine-up here, or your distribution's "
    "cosign package), make a key pair with cosign generate-key-pair in the folder of "
    "builds.yaml, export the password variable (empty for a key without one), or fix "
    "signing:/scan: in builds.yaml"
)


def gate_problems(
    targets: Iterable[tuple[str, GatePlan]],
    environ: Mapping[str, str],
    signers: SignerFactory = Cosign,
) -> tuple[list[str], list[str]]:
    """(every problem that would stop the gates of *targets* (name, gates), what was
    checked and runs: "cosign ..."). Each signing set-up is asked of cosign once; no key
    or password is ever read into a message, only whether it is there."""
    problems: list[str] = []
    checked: dict[SigningPlan, str] = {}
    for name, gates in targets:
        where = f"target '{name}'"
        signing = gates.signing
        if signing is not None:
            if signing.key_file is not None and not signing.key_file.is_file():
                problems.append(f"{where}: signing key {signing.key_file} does not exist")
            if signing.public_key_file is not None and not signing.public_key_file.is_file():
                problems.append(f"{where}: public key {signing.public_key_file} does not exist")
            if signing.key.startswith("env://") and not environ.get(signing.key[6:]):
                problems.append(f"{where}: {signing.key[6:]} (the signing key) is not set")
            if signing.password_env not in environ:
                problems.append(
                    f"{where}: {signing.password_env} (the signing key's password) is not set"
                )
            if signing not in checked:
                try:
                    checked[signing] = f"cosign {signers(signing).check()}"
                except MabError as exc:
                    checked[signing] = ""
                    problems.append(exc.message)
        if gates.scan is not None and not _program_found(gates.scan.argv[0], gates.scan.cwd):
            problems.append(f"{where}: the scanner '{gates.scan.argv[0]}' was not found")
    return list(dict.fromkeys(problems)), [c for c in dict.fromkeys(checked.values()) if c]
