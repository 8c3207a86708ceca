"""Tag strategies: from tag rules and one run's context to the tags of each image index.

Pure: the context (version, git facts, environment, one clock reading) is gathered once
by the caller, so every target of a run gets the same date tag and ``mab tags`` can show
a run's tags without any engine.

Immutable tags (a full version, a sha, a date, ...) name one build for good. Floating
tags (``latest``, ``MAJOR``, ``MAJOR.MINOR``, an environment, a branch) move. The semver
floating tags move only when the new version is the highest of their line among the tags
already in the registry (``should_move``), so a 1.4.9 backport never takes ``latest``
from 2.0.0 and a release candidate never takes anything but its own full version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
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

    @classmethod
    def empty(cls) -> TagContext:
        return cls(now=datetime(1970, 1, 1, tzinfo=UTC))


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
            path = context.project_dir / options.file
            if path.is_file():
                text = path.read_text(encoding="utf-8").strip()
                if text:
                    return text, str(options.file)
    return None, ""


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


def _render(template: str, values: dict[str, object]) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701
    missing = [k for k, v in values.items() if v is None]
    # A value this run does not have is undefined, so StrictUndefined names it.
    defined = {k: v for k, v in values.items() if k not in missing}
    return env.from_string(template).render(defined)


def _auto_version(context: TagContext) -> semver.Version | None:
    text, _ = resolve_version(SemverOptions(), context)
    return parse_version(text) if text else None


def compute_tags(
    rules: Sequence[TagItem], context: TagContext, target: str
) -> tuple[PlannedTag, ...]:
    """The tags *rules* give for *target* in *context*, first occurrence kept."""
    out: list[PlannedTag] = []
    for index, rule in enumerate(rules):
        out.extend(_apply(index, rule, context, target))
    unique: dict[str, PlannedTag] = {}
    for tag in out:
        unique.setdefault(tag.name, tag)
    return tuple(unique.values())


def _apply(index: int, rule: TagItem, context: TagContext, target: str) -> list[PlannedTag]:
    made: list[PlannedTag]
    if isinstance(rule, str):
        made = _raw(index, rule, "literal", context, target)
        affix = ("", "")
    else:
        affix = (rule.prefix, rule.suffix)
        if isinstance(rule, SemverRule):
            made = _semver(index, rule.semver, context)
        elif isinstance(rule, EnvironmentRule):
            made = _environment(rule, context)
        elif isinstance(rule, GitRule):
            made = _git(index, rule, context)
        elif isinstance(rule, DateRule):
            made = [PlannedTag(context.now.strftime(rule.date.format), "date", floating=False)]
        else:
            assert isinstance(rule, RawRule)
            made = _raw(index, rule.raw, "raw", context, target)
    result = []
    for tag in made:
        name = sanitise(f"{affix[0]}{tag.name}{affix[1]}")
        if not name:
            raise TagRuleError(index, tag.rule, f"makes an empty tag from '{tag.name}'")
        result.append(PlannedTag(name, tag.rule, tag.floating, tag.version, tag.line, affix))
    return result


def _semver(index: int, options: SemverOptions, context: TagContext) -> list[PlannedTag]:
    text, source = resolve_version(options, context)
    if text is None:
        raise TagRuleError(
            index,
            "semver",
            f"no version: pass --version X.Y.Z, tag HEAD vX.Y.Z, or write it to {options.file}",
        )
    version = parse_version(text)
    if version is None:
        raise TagRuleError(index, "semver", f"'{text}' (from {source}) is not a semver version")
    full = str(version)
    tags: list[PlannedTag] = []
    if options.full:
        tags.append(PlannedTag(full, f"semver (full, from {source})", floating=False))
    if version.prerelease or version.build:
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


def _git(index: int, rule: GitRule, context: TagContext) -> list[PlannedTag]:
    git = context.git
    if git is None:
        raise TagRuleError(index, "git", "builds.yaml is not in a git checkout")
    options = rule.git
    tags = []
    if options.sha:
        tags.append(PlannedTag(git.sha[: options.sha_length], "git (sha)", floating=False))
    if options.branch:
        if not git.branch:
            raise TagRuleError(
                index, "git", "HEAD is on no branch (detached) and no CI branch variable is set"
            )
        tags.append(PlannedTag(git.branch, "git (branch)", floating=True))
    if options.tag and git.tag:
        tags.append(PlannedTag(git.tag, "git (tag)", floating=False))
    return tags


def _raw(index: int, text: str, kind: str, context: TagContext, target: str) -> list[PlannedTag]:
    if "{{" in text:
        values = _values(context, target, _auto_version(context))
        try:
            text = _render(text, values)
        except jinja2.UndefinedError as exc:
            raise TagRuleError(index, kind, f"{exc} in this run") from None
        except jinja2.TemplateError as exc:
            raise TagRuleError(index, kind, f"template error: {exc}") from None
    return [PlannedTag(text, kind, floating=text == "latest")]


def should_move(tag: PlannedTag, existing: Iterable[str]) -> tuple[bool, str]:
    """Whether floating *tag* may move to this run's index, given the registry's tags."""
    if not tag.floating or tag.line is None or tag.version is None:
        return True, ""
    mine = semver.Version.parse(tag.version)
    prefix, suffix = tag.affix
    line = tag.line
    highest: semver.Version | None = None
    for name in existing:
        if not (name.startswith(prefix) and name.endswith(suffix)):
            continue
        core = name[len(prefix) : len(name) - len(suffix) if suffix else None]
        other = parse_version(core)
        if other is None or other.prerelease or other.build:
            continue
        if (other.major, other.minor)[: len(line)] != line:
            continue
        if highest is None or other > highest:
            highest = other
    if highest is not None and highest > mine:
        return False, f"{highest} is higher"
    return True, ""
