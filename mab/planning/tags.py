"""Tag strategies: from tag rules and one run's context to the tags of each image index.

Pure: the context (version, git facts, environment, one clock reading) is gathered once
by the caller, so every target of a run gets the same date tag and ``mab tags`` can show
a run's tags without any engine.

Immutable tags (a full version, a sha, a date, ...) name one build for good. Floating
tags (``latest``, ``MAJOR``, ``MAJOR.MINOR``, an environment, a branch) move. The semver
floating tags move only when the new version is the highest of their line among the tags
already in the registry (``should_move``), so a 1.4.9 backport never takes ``latest``
from 2.0.0 and a release candidate never takes anything but its own full version.

A rule may make no tag in a run (no version, a pull request); it says why in the
``TagSet``'s notes. Templates are builds.yaml text rendered in Jinja2's sandbox; what git
and the environment say is passed to them as data, never pasted into their source.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import semver

from mab.config.models import (
    DateRule,
    EnvironmentRule,
    GitRule,
    RawRule,
    SemverOptions,
    SemverRule,
    TagItem,
)
from mab.planning.git import GitInfo

MAX_TAG = 128
_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")
_HASH = 8  # hex digits of sha256 appended to a tag cut to MAX_TAG
_VERSION_FILE_MAX = 4096
_NO_VERSION_HINT = {
    "auto": "pass --version X.Y.Z, tag HEAD vX.Y.Z, or write it to {file}",
    "cli": "pass --version X.Y.Z",
    "git": "tag HEAD vX.Y.Z",
    "file": "write it to {file}",
}


class TagRuleError(ValueError):
    """A rule could not make its tags; ``index`` is the rule's position in its list."""

    def __init__(self, index: int, rule: str, message: str) -> None:
        super().__init__(f"tag rule {rule}: {message}")
        self.index = index
        self.rule = rule


@dataclass(frozen=True)
class TagContext:
    """Everything tag rules may read, read once per run."""

    now: datetime
    version: str | None = None  # --version
    environment: str | None = None  # --env
    git: GitInfo | None = None
    project_dir: Path = Path(".")
    # SOURCE_DATE_EPOCH: the env var, else the commit time (see mab.planning.labels)
    source_date_epoch: int | None = None
    # version files read so far: thousands of targets name the same VERSION file
    _read: dict[Path, str | None] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def empty(cls) -> TagContext:
        return cls(now=datetime(1970, 1, 1, tzinfo=UTC))

    def version_file(self, path: Path) -> str | None:
        """The text of version file *path*, read once per run."""
        if path not in self._read:
            self._read[path] = _version_file(path)
        return self._read[path]


@dataclass(frozen=True)
class PlannedTag:
    name: str
    rule: str  # e.g. "semver (minor)", shown by `mab tags`
    floating: bool
    # For semver floating tags: the run's version and the line it must top:
    # () for latest, (MAJOR,) for MAJOR, (MAJOR, MINOR) for MAJOR.MINOR.
    version: str | None = None
    line: tuple[int, ...] | None = None
    affix: tuple[str, str] = ("", "")

    @property
    def kind(self) -> str:
        if not self.floating:
            return "immutable"
        return "floating (if highest)" if self.line is not None else "floating"


@dataclass(frozen=True)
class TagSet:
    """A target's tags, and what the run should tell the user about them (a rule that
    made no tag, a tag cut to 128 characters, ...): one line each, for stderr."""

    tags: tuple[PlannedTag, ...]
    notes: tuple[str, ...] = ()


def sanitise(text: str) -> str:
    """Registry tag rules: at most 128 of [A-Za-z0-9_.-], not starting with '.' or '-'."""
    return _INVALID.sub("-", text).lstrip(".-")[:MAX_TAG]


def parse_version(text: str) -> semver.Version | None:
    candidate = text.strip()
    if candidate[:1] in ("v", "V"):
        candidate = candidate[1:]
    try:
        return semver.Version.parse(candidate)
    except ValueError:
        return None


def resolve_version(options: SemverOptions, context: TagContext) -> tuple[str | None, str]:
    """The version text a semver rule uses, and where it came from."""
    sources: Sequence[str] = (
        ("cli", "git", "file") if options.source == "auto" else (options.source,)
    )
    for source in sources:
        if source == "cli" and context.version:
            return context.version, "--version"
        git_tag = context.git.tag if source == "git" and context.git else None
        # auto takes a git tag only when it is a version (v1.2.3), not any tag
        if git_tag and (options.source == "git" or parse_version(git_tag) is not None):
            return git_tag, f"git tag {git_tag}"
        if source == "file":
            text = context.version_file(context.project_dir / options.file)
            if text:
                return text, str(options.file)
    return None, ""


def _version_file(path: Path) -> str | None:
    """The text of a version file. A VERSION file is a few bytes, so only the first 4 KiB
    of a big one is read (it is then no version, and its content is never quoted)."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            head = handle.read(_VERSION_FILE_MAX)
    except OSError:
        return None
    return head.decode("utf-8", errors="replace").strip() or None


def _release(version: semver.Version | None) -> semver.Version | None:
    """*version* without build metadata: ``1.2.3+build.5`` is tagged as 1.2.3 (a '+'
    cannot be in a tag, and ``1.2.3-build.5`` would read as a pre-release)."""
    return version.replace(build=None) if version is not None else None


def _values(context: TagContext, target: str, version: semver.Version | None) -> dict[str, object]:
    git = context.git
    return {
        "target": target,
        "version": str(version) if version else None,
        "major": version.major if version else None,
        "minor": version.minor if version else None,
        "patch": version.patch if version else None,
        "prerelease": version.prerelease if version else None,
        "sha": git.sha if git else None,
        "short_sha": git.short_sha if git else None,
        "branch": git.branch if git else None,
        "git_tag": git.tag if git else None,
        "env": context.environment,
        "date": context.now.strftime("%Y%m%d"),
        "datetime": context.now.strftime("%Y%m%d-%H%M%S"),
    }


def _auto_version(context: TagContext) -> semver.Version | None:
    text, _ = resolve_version(SemverOptions(), context)
    return _release(parse_version(text)) if text else None


def tag_set(rules: Sequence[TagItem], context: TagContext, target: str) -> TagSet:
    """The tags *rules* give for *target* in *context* (first occurrence kept), and the
    notes the run should print about them."""
    made: list[PlannedTag] = []
    notes: list[str] = []
    for index, rule in enumerate(rules):
        made.extend(_apply(index, rule, context, target, notes))
    unique: dict[str, PlannedTag] = {}
    for tag in made:
        first = unique.setdefault(tag.name, tag)
        if first is not tag and first.kind != tag.kind:
            notes.append(
                f"tag {tag.name} of rule {tag.rule} is also made by rule {first.rule}: "
                f"it is {first.kind}"
            )
    return TagSet(tuple(unique.values()), tuple(dict.fromkeys(notes)))


def compute_tags(
    rules: Sequence[TagItem], context: TagContext, target: str
) -> tuple[PlannedTag, ...]:
    """The tags *rules* give for *target* in *context*, first occurrence kept."""
    return tag_set(rules, context, target).tags


def _apply(
    index: int, rule: TagItem, context: TagContext, target: str, notes: list[str]
) -> list[PlannedTag]:
    made: list[PlannedTag]
    if isinstance(rule, str):
        made = _raw(index, rule, "literal", context, target)
        affix = ("", "")
    else:
        affix = (rule.prefix, rule.suffix)
        if isinstance(rule, SemverRule):
            made = _semver(index, rule.semver, context, notes)
        elif isinstance(rule, EnvironmentRule):
            made = _environment(rule, context)
        elif isinstance(rule, GitRule):
            made = _git(index, rule, context, notes)
        elif isinstance(rule, DateRule):
            made = [PlannedTag(context.now.strftime(rule.date.format), "date", floating=False)]
        else:
            assert isinstance(rule, RawRule)
            made = _raw(index, rule.raw, "raw", context, target)
    return [_finish(index, tag, affix, notes) for tag in made]


def _finish(index: int, tag: PlannedTag, affix: tuple[str, str], notes: list[str]) -> PlannedTag:
    """*tag* with the rule's prefix and suffix, sanitised to the registry's rules; a name
    over 128 characters is cut in its variable part (see ``_cut``)."""
    parts = _lead_stripped([_INVALID.sub("-", p) for p in (affix[0], tag.name, affix[1])])
    name = "".join(parts)
    if not name:
        raise TagRuleError(index, tag.rule, f"makes an empty tag from '{tag.name}'")
    if len(name) > MAX_TAG:
        cut = _cut(index, tag.rule, parts)
        notes.append(f"rule {tag.rule}: tag {name[:40]}... ({len(name)} characters) cut to {cut}")
        name = cut
    return PlannedTag(name, tag.rule, tag.floating, tag.version, tag.line, affix)


def _lead_stripped(parts: list[str]) -> list[str]:
    """A tag may not start with '.' or '-': strip them from the first non-empty part."""
    out: list[str] = []
    stripping = True
    for part in parts:
        if stripping:
            part = part.lstrip(".-")  # noqa: PLW2901 - the loop rebuilds the list
            stripping = not part
        out.append(part)
    return out


def _cut(index: int, rule: str, parts: list[str]) -> str:
    """Cut the middle (the variable part) so the prefix and suffix survive, and append a
    short hash of the whole name, so two long names that share their first 119
    characters (``...-amd64``, ``...-arm64``) stay two tags."""
    prefix, core, suffix = parts
    room = MAX_TAG - len(prefix) - len(suffix) - _HASH - 1
    if room < 1:
        raise TagRuleError(index, rule, f"prefix and suffix leave no room in {MAX_TAG} characters")
    digest = hashlib.sha256("".join(parts).encode()).hexdigest()[:_HASH]
    return f"{prefix}{core[:room]}-{digest}{suffix}"


def _semver(
    index: int, options: SemverOptions, context: TagContext, notes: list[str]
) -> list[PlannedTag]:
    text, source = resolve_version(options, context)
    if text is None:
        hint = _NO_VERSION_HINT[options.source].format(file=options.file)
        notes.append(f"semver rule: no version in this run ({hint}); it makes no tags")
        return []
    parsed = parse_version(text)
    if parsed is None:
        # a file's content is not quoted: it may hold a token rather than a version
        if source == str(options.file):
            raise TagRuleError(index, "semver", f"{source} holds no semver version (X.Y.Z)")
        raise TagRuleError(index, "semver", f"'{text}' (from {source}) is not a semver version")
    version = _release(parsed)
    assert version is not None
    full = str(version)
    tags: list[PlannedTag] = []
    if options.full or version.prerelease:
        # full: false keeps the full version of a pre-release, as metadata-action does,
        # so that a release candidate is never published by digest only
        why = "full" if options.full else "full, as a pre-release"
        tags.append(PlannedTag(full, f"semver ({why}, from {source})", floating=False))
    if version.prerelease:
        return tags  # a pre-release never moves a floating tag
    if options.minor:
        tags.append(
            PlannedTag(
                f"{version.major}.{version.minor}",
                "semver (minor)",
                True,
                full,
                (version.major, version.minor),
            )
        )
    if options.major:
        tags.append(PlannedTag(str(version.major), "semver (major)", True, full, (version.major,)))
    if options.latest:
        tags.append(PlannedTag("latest", "semver (latest)", True, full, ()))
    return tags


def _environment(rule: EnvironmentRule, context: TagContext) -> list[PlannedTag]:
    name = rule.environment.name or context.environment
    if not name:
        return []  # no environment in this run: the rule makes no tag
    tags = []
    if rule.environment.plain:
        tags.append(PlannedTag(name, "environment", floating=True))
    version = _auto_version(context)
    if rule.environment.versioned and version is not None:
        tags.append(PlannedTag(f"{version}-{name}", "environment (versioned)", floating=False))
    return tags


def _git(index: int, rule: GitRule, context: TagContext, notes: list[str]) -> list[PlannedTag]:
    git = context.git
    if git is None:
        raise TagRuleError(index, "git", "builds.yaml is not in a git checkout")
    options = rule.git
    tags = []
    if options.sha:
        tags.append(PlannedTag(git.sha[: options.sha_length], "git (sha)", floating=False))
    if options.branch:
        tags.extend(_branch(index, git, asked_for_pr=options.pull_request, notes=notes))
    if options.pull_request:
        tags.extend(_pull_request(git, notes))
    if options.tag and git.tag:
        tags.append(PlannedTag(git.tag, "git (tag)", floating=False))
    return tags


def _branch(index: int, git: GitInfo, *, asked_for_pr: bool, notes: list[str]) -> list[PlannedTag]:
    """The branch tag: none on a pull request (its head branch is the contributor's,
    maybe a fork's ``master``) nor on a tag build (the tag is not a branch)."""
    if git.kind == "pull_request":
        if not asked_for_pr:
            notes.append(
                "git rule: a pull-request build gets no branch tag "
                "(git: {pull_request: true} tags it pr-NUMBER)"
            )
        return []
    if git.kind == "tag":
        return []
    if not git.branch:
        raise TagRuleError(
            index, "git", "HEAD is on no branch (detached) and no CI branch variable is set"
        )
    return [PlannedTag(git.branch, "git (branch)", floating=True)]


def _pull_request(git: GitInfo, notes: list[str]) -> list[PlannedTag]:
    if git.kind != "pull_request":
        return []
    if not git.pull_request:
        notes.append("git rule: the pull request's number is unknown; no pr- tag")
        return []
    return [PlannedTag(f"pr-{git.pull_request}", "git (pull request)", floating=True)]


def _raw(index: int, text: str, kind: str, context: TagContext, target: str) -> list[PlannedTag]:
    if "{{" in text:
        # jinja2 loads only for a rule that is a template (mab plan starts faster)
        from mab.planning.tag_template import TagTemplateError, render  # noqa: PLC0415

        values = _values(context, target, _auto_version(context))
        try:
            text = render(text, values)
        except TagTemplateError as exc:
            raise TagRuleError(index, kind, str(exc)) from None
    return [PlannedTag(text, kind, floating=text == "latest")]


def highest_release(tag: PlannedTag, existing: Iterable[str]) -> tuple[semver.Version, str] | None:
    """The highest release (no pre-release) in *tag*'s line among *existing* tag names,
    with the tag that names it (prefix and suffix included); None for a tag without a line."""
    if tag.line is None:
        return None
    prefix, suffix = tag.affix
    highest: tuple[semver.Version, str] | None = None
    for name in existing:
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        core = name[len(prefix) : len(name) - len(suffix) if suffix else None]
        other = parse_version(core)
        if other is None or other.prerelease or other.build:
            continue
        if (other.major, other.minor)[: len(tag.line)] != tag.line:
            continue
        if highest is None or other > highest[0]:
            highest = (other, name)
    return highest


def should_move(tag: PlannedTag, existing: Iterable[str]) -> tuple[bool, str]:
    """Whether floating *tag* may move to this run's index, given the registry's tags."""
    if not tag.floating or tag.line is None or tag.version is None:
        return True, ""
    mine = semver.Version.parse(tag.version)
    highest = highest_release(tag, existing)
    if highest is not None and highest[0] > mine:
        return False, f"{highest[0]} is higher"
    return True, ""
