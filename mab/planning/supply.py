"""The publish gates a target has (issue 12), resolved from builds.yaml: signing,
attestations, scan and smoke test, each from the target's own block, else the top level.

Pure: paths are made absolute against the folder of builds.yaml, commands are split into
words, nothing is read or run. ``mab.pipeline.gates`` runs what this plans.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mab.config.models import BuildsConfig, SbomConfig, SigningConfig


def _words(command: str | list[str]) -> tuple[str, ...]:
    return tuple(shlex.split(command)) if isinstance(command, str) else tuple(command)


@dataclass(frozen=True)
class SigningPlan:
    """cosign's key (a file, ``env://NAME`` or a KMS URI) and public key."""

    key: str
    public_key: str
    password_env: str = "COSIGN_PASSWORD"  # noqa: S105 - the name of a variable
    tlog_upload: bool = False
    key_file: Path | None = None  # when the key is a file: it must exist to sign
    public_key_file: Path | None = None  # when the public key is a file

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "public_key": self.public_key,
            "password_env": self.password_env,
            "tlog_upload": self.tlog_upload,
        }


@dataclass(frozen=True)
class ScanPlan:
    argv: tuple[str, ...]
    cwd: Path
    timeout: float = 900.0

    def command_for(self, ref: str, platform: str) -> list[str]:
        """The scanner's words with ``{ref}`` and ``{platform}`` filled in."""
        return [w.replace("{ref}", ref).replace("{platform}", platform) for w in self.argv]


@dataclass(frozen=True)
class SmokeTestPlan:
    argv: tuple[str, ...]
    expect: str | None = None


@dataclass(frozen=True)
class GatePlan:
    """What stands between a target's pushed images and its tags.

    *provenance* None: BuildKit's default (mab passes nothing); "false", "min" or "max"
    otherwise. *sbom_generator* None with *sbom*: BuildKit's default generator image."""

    signing: SigningPlan | None = None
    provenance: str | None = None
    sbom: bool = False
    sbom_generator: str | None = None
    scan: ScanPlan | None = None
    test: SmokeTestPlan | None = None

    @property
    def checks_attestations(self) -> bool:
        return self.provenance in ("min", "max") or self.sbom

    @property
    def names(self) -> tuple[str, ...]:
        """The gates in the order they run, for ``mab plan``."""
        out: list[str] = []
        if self.test:
            out.append("test")
        if self.scan:
            out.append("scan")
        if self.signing:
            out.append("sign")
        if self.provenance in ("min", "max"):
            out.append(f"provenance={self.provenance}")
        if self.sbom:
            out.append("sbom")
        return tuple(out)

    def as_json(self) -> dict[str, Any]:
        return {
            "order": list(self.names),
            "test": {"command": list(self.test.argv), "expect": self.test.expect}
            if self.test
            else None,
            "scan": {"command": list(self.scan.argv), "timeout_s": self.scan.timeout}
            if self.scan
            else None,
            "signing": self.signing.as_json() if self.signing else None,
            "attestations": {
                "provenance": self.provenance,
                "sbom": self.sbom,
                "sbom_generator": self.sbom_generator,
            },
        }


def _signing(config: SigningConfig, base: Path) -> SigningPlan:
    def place(value: str) -> tuple[str, Path | None]:
        if "://" in value:
            return value, None  # a KMS URI (or env://NAME)
        path = (base / value).resolve()
        return str(path), path

    if config.key_env is not None:
        key, key_file = f"env://{config.key_env}", None
    else:
        assert config.key is not None, "the model requires key or key_env"
        key, key_file = place(config.key)
    public_key, public_file = place(config.public_key)
    return SigningPlan(
        key=key,
        public_key=public_key,
        password_env=config.password_env,
        tlog_upload=config.tlog_upload,
        key_file=key_file,
        public_key_file=public_file,
    )


def gates_for(config: BuildsConfig, name: str, base: Path) -> GatePlan:
    """The gates of target *name*: its own blocks replace the top-level ones."""
    target = config.targets[name]
    signing = target.signing or config.signing
    attestations = target.attestations or config.attestations
    scan = target.scan or config.scan
    provenance: str | None = None
    sbom, generator = False, None
    if attestations is not None:
        provenance = str(attestations.provenance).lower()  # False -> "false"
        sbom = attestations.sbom is not False
        if isinstance(attestations.sbom, SbomConfig):
            generator = attestations.sbom.generator
    return GatePlan(
        signing=_signing(signing, base) if signing else None,
        provenance=provenance,
        sbom=sbom,
        sbom_generator=generator,
        scan=ScanPlan(_words(scan.command), base, scan.timeout) if scan else None,
        test=SmokeTestPlan(_words(target.test.command), target.test.expect)
        if target.test
        else None,
    )
