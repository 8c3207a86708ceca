"""Input digests: one sha256 per target and platform over everything that decides the
image, so an unchanged target can be recognised in the registry and skipped.

What goes in (format version 1): the build context exactly as BuildKit would send it
(.dockerignore applied as BuildKit does, see mab.planning.dockerignore; per file its path,
type, permission bits and content hash, symlinks by target), the rendered Dockerfile and
the template's source, the stage, the build args, the labels, the secret ids (never
values), the platform, and every base image resolved to its digest: base_images
mappings and plain FROM references, asked of their registry with one HEAD each.

What stays out: the labels and build args that change with every commit or run though
the image content does not (``org.opencontainers.image.created``, ``.revision``,
``SOURCE_DATE_EPOCH``): with them in, every commit would rebuild every target.

A base image that cannot be resolved means the target has no input digest (and so is
built), with the reason. The digest is recorded as the annotation ``INPUTS`` on each
platform's entry of the published index, and their combination on the index itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mab import lint
from mab.errors import MabError
from mab.planning.dockerignore import Matcher, PatternError, read_patterns
from mab.planning.labels import OCI
from mab.planning.plan import Plan, TargetPlan
from mab.platforms import Platform
from mab.registry.base import RegistryFactory

INPUTS = "dev.mab.inputs.digest"
FORMAT = 1
MAX_FILES = 200_000  # a bigger context is not fingerprinted (no skip), said so
_VOLATILE_LABELS = frozenset({OCI + "created", OCI + "revision"})
_VOLATILE_ARGS = frozenset({"SOURCE_DATE_EPOCH"})
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TargetInputs:
    """A target's input digests per declared platform, their combination, and the newest
    modification time among its inputs (``created`` where no commit time says it)."""

    target: str
    platforms: Mapping[Platform, str] = field(default_factory=dict)
    combined: str | None = None
    why_not: str | None = None  # why there is no input digest: the target is built
    newest: datetime | None = None


@dataclass
class _Context:
    digest: str
    newest: float
    files: int


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def context_entries(root: Path, matcher: Matcher) -> list[tuple[str, os.stat_result]]:
    """The paths BuildKit would send from *root* (relative, sorted), with their stat: the
    walk of BuildKit's context transfer (fsutil), excluded directories descended only
    when a ``!`` pattern could re-include something below them."""
    out: list[tuple[str, os.stat_result]] = []

    def walk(folder: Path, rel: str, parent: list[bool] | None) -> bool:
        sent = False
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise MabError(f"cannot read the build context {folder}: {exc.strerror}") from None
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            excluded, info = matcher.matches(path, parent)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if excluded and not matcher.exclusions:
                    continue
                mark = len(out)
                below = walk(Path(entry.path), path, info)
                if not excluded or below:
                    out.insert(mark, (path, st))
                    sent = True
            elif not excluded:
                out.append((path, st))
                sent = True
            if len(out) > MAX_FILES:
                raise MabError(f"more than {MAX_FILES} files")
        return sent

    walk(root, "", None)
    return out


def fingerprint_context(root: Path) -> _Context:
    """The digest of the build context as BuildKit would send it."""
    ignore = root / ".dockerignore"
    patterns = read_patterns(ignore.read_text(encoding="utf-8")) if ignore.is_file() else []
    try:
        matcher = Matcher.from_patterns(patterns)
    except PatternError as exc:
        raise MabError(f"{ignore}: {exc}") from None
    sha = hashlib.sha256()
    newest = 0.0
    entries = context_entries(root, matcher)
    for rel, st in entries:
        kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
        if kind == "f":
            content = _file_digest(root / rel)
        elif kind == "l":
            content = os.readlink(root / rel)
        else:
            content = ""
        sha.update(f"{kind} {stat.S_IMODE(st.st_mode):o} {rel}\0{content}\n".encode())
        if kind != "d":
            newest = max(newest, st.st_mtime)
    return _Context(sha.hexdigest(), newest, len(entries))


_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")


def base_images(dockerfile: str, build_args: Mapping[str, str]) -> tuple[list[str], str | None]:
    """The images the Dockerfile's FROM lines name (stage names and scratch set aside),
    global ARGs substituted (build args over their defaults), and the first FROM that
    cannot be named without running the build (None when all can)."""
    instructions = lint.parse(dockerfile)
    args: dict[str, str] = {}
    names: set[str] = set()
    images: list[str] = []
    seen_from = False
    for ins in instructions:
        if ins.keyword == "ARG" and not seen_from:
            for word in ins.args.split():
                key, has, value = word.partition("=")
                args[key] = build_args.get(key, value.strip("\"'") if has else "")
        elif ins.keyword == "FROM":
            seen_from = True
            words = ins.args.split()
            if not words:
                continue
            image = re.sub(
                r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
                lambda m: args.get(m.group(1) or m.group(2), m.group(0)),
                words[0],
            )
            if len(words) >= 3 and words[1].upper() == "AS":
                names.add(words[2].lower())
            if image.lower() in names or image == "scratch":
                continue
            if not _IMAGE_RE.match(image):
                return images, f"FROM {words[0]} depends on the build ({image})"
            images.append(image)
    return images, None


def split_image(ref: str) -> tuple[str, str, str]:
    """``busybox:1.35`` -> (registry-1.docker.io, library/busybox, 1.35);
    ``localhost:5000/mirror/x@sha256:..`` -> (localhost:5000, mirror/x, sha256:..)."""
    name, at, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "registry-1.docker.io", name
        if "/" not in path:
            path = f"library/{path}"
    if at:
        return host, path.rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path, digest
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = path.rpartition(":")
        return host, repo, tag
    return host, path, "latest"


class _Resolver:
    """Base image tags to digests, one HEAD per distinct reference per run."""

    def __init__(self, registries: RegistryFactory) -> None:
        self._registries = registries
        self._known: dict[str, str | None] = {}

    def digest(self, ref: str) -> str | None:
        if ref not in self._known:
            host, repo, reference = split_image(ref)
            try:
                with self._registries(host, attempts=2) as client:
                    self._known[ref] = client.head_manifest(repo, reference)
            except MabError:
                self._known[ref] = None
        return self._known[ref]


def compute(
    plan: Plan,
    dockerfiles: Mapping[str, Path],
    registries: RegistryFactory,
    on_note: Callable[[str], None] | None = None,
) -> dict[str, TargetInputs]:
    """The input digests of every target of *plan* (its declared platforms)."""
    resolver = _Resolver(registries)
    contexts: dict[Path, _Context | str] = {}
    out: dict[str, TargetInputs] = {}
    for target in plan.targets:
        out[target.name] = _target_inputs(target, dockerfiles[target.name], resolver, contexts)
        why = out[target.name].why_not
        if why and on_note is not None:
            on_note(f"{target.name}: no input digest, so it is built: {why}")
    return out


def _target_inputs(
    target: TargetPlan,
    dockerfile: Path,
    resolver: _Resolver,
    contexts: dict[Path, _Context | str],
) -> TargetInputs:
    if target.context not in contexts:
        try:
            contexts[target.context] = fingerprint_context(target.context)
        except MabError as exc:
            contexts[target.context] = f"build context not fingerprinted: {exc.message}"
    context = contexts[target.context]
    if isinstance(context, str):
        return TargetInputs(target.name, why_not=context)
    text = dockerfile.read_text(encoding="utf-8")
    args = {k: v for k, v in target.build_args if k not in _VOLATILE_ARGS}
    images, unnamed = base_images(text, dict(target.build_args))
    if unnamed:
        return TargetInputs(target.name, why_not=unnamed)
    mirrors = dict(target.build_contexts)
    bases: dict[str, str] = {}
    for image in images:
        mapped = mirrors.get(image, "").removeprefix("docker-image://")
        digest = resolver.digest(mapped or image)
        if digest is None:
            return TargetInputs(
                target.name, why_not=f"base image {mapped or image} could not be resolved"
            )
        bases[image] = digest
    for name, source in mirrors.items():
        if source.startswith("docker-image://") and name not in bases:
            digest = resolver.digest(source.removeprefix("docker-image://"))
            if digest is None:
                return TargetInputs(
                    target.name, why_not=f"base image {source} could not be resolved"
                )
            bases[name] = digest
    template = target.source.path if target.source.kind == "template" else None
    common = {
        "format": FORMAT,
        "context": context.digest,
        "dockerfile": hashlib.sha256(text.encode()).hexdigest(),
        "template": _file_digest(template) if template else None,
        "stage": target.stage,
        "args": sorted(args.items()),
        "labels": sorted((k, v) for k, v in target.labels if k not in _VOLATILE_LABELS),
        "secrets": sorted(s.id for s in target.secrets),
        "bases": sorted(bases.items()),
    }
    per_platform = {
        platform: "sha256:"
        + hashlib.sha256(
            json.dumps({**common, "platform": str(platform)}, sort_keys=True).encode()
        ).hexdigest()
        for platform in target.declared_platforms
    }
    combined = (
        "sha256:"
        + hashlib.sha256(
            "\n".join(f"{p} {d}" for p, d in per_platform.items()).encode()
        ).hexdigest()
    )
    newest = max(context.newest, dockerfile.stat().st_mtime if template is None else 0.0)
    if template is not None:
        newest = max(newest, template.stat().st_mtime)
    return TargetInputs(
        target.name,
        per_platform,
        combined,
        newest=datetime.fromtimestamp(int(newest), tz=UTC) if newest else None,
    )
