"""Signatures: cosign (the CLI, run through ``mab.proc``) behind the ``Signer`` seam, and
the tag scheme signatures and attestations are stored under.

Key-based and offline by default: no transparency-log upload (``--tlog-upload=false``)
and no transparency-log check when verifying, unless builds.yaml's ``tlog_upload`` asks.
Signatures are stored as cosign stores them by default: a tag ``sha256-<hex>.sig`` beside
the image (many registries, distribution 2.8 included, have no referrers API). The key's
password reaches cosign only in its environment (``COSIGN_PASSWORD``), read from the
variable builds.yaml names; never in its arguments, never in mab's output.

``copy_signatures`` copies those tags to another repository with mab's registry client
(``cosign copy`` also writes a ``sha256-<hex>`` tag for every image it copies).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from mab import proc
from mab.errors import BuildError, PublishError
from mab.oci import COSIGN_SUFFIXES, Manifest, cosign_tag
from mab.planning.supply import SigningPlan
from mab.registry.base import Registry
from mab.registry.client import is_plain_http
from mab.scratch import scratch
from mab.secrets import redact, remember_secret

INSTALL_HINT = (
    "install cosign 2.x (Debian trixie and later: apt-get install cosign; here sudo "
    "scripts/engine-up installs it), or remove signing: from builds.yaml"
)


def first_lines(text: str, count: int = 5) -> list[str]:
    """The first *count* non-blank lines of *text*, redacted."""
    lines = [redact(line.rstrip()) for line in text.splitlines() if line.strip()]
    return lines[:count]


class Signer(Protocol):
    """Signs and verifies images by digest reference (``REPO@sha256:...``)."""

    def check(self) -> str: ...  # the tool is there and can do it: its version; BuildError if not
    def sign(self, refs: Sequence[str]) -> None: ...  # PublishError with the tool's output
    def verify(self, ref: str) -> list[str]: ...  # [] when valid, else why not (first lines)


SignerFactory = Callable[[SigningPlan], Signer]


class Cosign:
    """The cosign CLI, found on PATH (or *program*)."""

    def __init__(
        self,
        plan: SigningPlan,
        *,
        program: str = "cosign",
        environ: Mapping[str, str] | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.plan = plan
        self.program = program
        self.environ = environ if environ is not None else os.environ
        self.timeout = timeout
        self._help: dict[str, str] = {}

    def _run(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[int, str]:
        try:
            done = proc.call(argv, timeout=self.timeout, env=env)
        except proc.ProgramNotFound:
            raise BuildError(
                f"cosign was not found on PATH ({self.program})", hint=INSTALL_HINT
            ) from None
        except proc.ProcessTimedOut:
            return 124, f"{self.program} timed out after {self.timeout:.0f}s"
        return done.returncode, f"{done.stdout}\n{done.stderr}"

    def _flags(self, command: str) -> str:
        """``cosign COMMAND --help``: which flags this cosign has."""
        if command not in self._help:
            self._help[command] = self._run([self.program, command, "--help"])[1]
        return self._help[command]

    def check(self) -> str:
        """cosign runs, and its ``sign`` can skip the transparency log (cosign 2.0+).
        Debian's build reports no version number, so the flags are what is checked."""
        code, text = self._run([self.program, "version", "--json"])
        if code != 0:
            raise BuildError(
                f"cosign does not run: {' '.join(first_lines(text, 2))}", hint=INSTALL_HINT
            )
        try:
            version = str(json.loads(text.strip()).get("gitVersion") or "unknown")
        except ValueError:
            version = "unknown"
        major = re.match(r"v?(\d+)\.", version)
        if (major and int(major.group(1)) < 2) or "--tlog-upload" not in self._flags("sign"):
            raise BuildError(
                f"cosign {version} is too old: mab needs cosign 2.0 or newer (sign --tlog-upload)",
                hint=INSTALL_HINT,
            )
        return version

    def _registry_flags(self, ref: str) -> list[str]:
        host = ref.split("/", 1)[0]
        if is_plain_http(host):  # loopback, or MAB_INSECURE_REGISTRIES, as mab's own client
            return ["--allow-insecure-registry", "--allow-http-registry"]
        return []

    def _format_flags(self, command: str) -> list[str]:
        """cosign 3 (its sign has --use-signing-config) signs by default with a signing
        config and the new bundle format, stored through the referrers scheme: keep it at
        cosign 2's tag-based signatures, which any registry stores and cosign 2 and 3 both
        verify. Both flags are hidden (deprecated) in cosign 3's help, absent in cosign 2's."""
        if command != "sign" or "--use-signing-config" not in self._flags("sign"):
            return []
        return ["--use-signing-config=false", "--new-bundle-format=false"]

    def sign(self, refs: Sequence[str]) -> None:
        if not refs:
            return
        password = self.environ.get(self.plan.password_env, "")
        remember_secret(password)
        env = {**self.environ, "COSIGN_PASSWORD": password}
        argv = [
            self.program,
            "sign",
            "--key",
            self.plan.key,
            f"--tlog-upload={'true' if self.plan.tlog_upload else 'false'}",
            *self._format_flags("sign"),
            *self._registry_flags(refs[0]),
            "--yes",
            *refs,
        ]
        code, text = self._run(argv, env)
        if code != 0:
            lines = first_lines(text)
            raise PublishError(
                f"cosign sign failed (exit {code}): {' | '.join(lines[:3]) or 'no output'}",
                hint="check the key, its password variable "
                f"({self.plan.password_env}) and that the registry accepts pushes",
            )

    def verify(self, ref: str) -> list[str]:
        argv = [
            self.program,
            "verify",
            "--key",
            self.plan.public_key,
            *([] if self.plan.tlog_upload else ["--insecure-ignore-tlog=true"]),
            *self._format_flags("verify"),
            *self._registry_flags(ref),
            "--output",
            "json",
            ref,
        ]
        code, text = self._run(argv)
        if code == 0:
            return []
        errors = [line for line in first_lines(text, 20) if line.lower().startswith("error")]
        return errors[:3] or first_lines(text, 3) or [f"cosign verify exited {code}"]


# --- signatures follow the image -----------------------------------------------------------


def signature_tags(existing: Iterable[str], digests: Iterable[str]) -> list[str]:
    """The signature/attestation tags among *existing* that are about *digests*."""
    wanted = {cosign_tag(d, s) for d in digests for s in COSIGN_SUFFIXES}
    return [t for t in existing if t in wanted]


def copy_signatures(
    source: Registry, source_repo: str, dest: Registry, dest_repo: str, digests: Iterable[str]
) -> list[str]:
    """Copy the signature/attestation tags about *digests* (manifest and blobs) from one
    repository to another, possibly on another registry. Returns the tags copied."""
    copied = []
    for tag in signature_tags(source.list_tags(source_repo), digests):
        manifest = source.get_manifest(source_repo, tag)
        with scratch("mab-sig-") as tmp:
            layout = _layout(Path(tmp), source, source_repo, manifest)
            dest.push_layout(layout, dest_repo)
        dest.put_manifest(dest_repo, tag, manifest.data, manifest.media_type)
        copied.append(tag)
    return copied


def _layout(folder: Path, source: Registry, repo: str, manifest: Manifest) -> Path:
    """An OCI layout holding *manifest* and its blobs, for ``push_layout``."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    parts = [p for p in (manifest.config, *manifest.layers) if p is not None]
    for part in parts:
        (blobs / part.digest.split(":", 1)[1]).write_bytes(source.get_blob(repo, part.digest))
    (blobs / manifest.digest.split(":", 1)[1]).write_bytes(manifest.data)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": manifest.media_type,
                "digest": manifest.digest,
                "size": len(manifest.data),
            }
        ],
    }
    (folder / "index.json").write_text(json.dumps(index), encoding="utf-8")
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}', encoding="utf-8")
    return folder
