"""builds.yaml loaded: the validated Project, and the loader that locates every error.

``load_project`` reads the file (mab.config.yamlsource keeps each key's line), validates it
with mab.config.models, turns pydantic's errors into ``FILE:LINE: FIELD: cause`` with the
closest valid key suggested for an unknown one, checks the files the config names
(contexts, Dockerfiles, templates, secret files, builder files) and collects the warnings
that do not stop a build.
"""

from __future__ import annotations

import difflib
import functools
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from mab.config.models import (
    RULE_KINDS,
    TLS_FILE_OPTS,
    BuilderConfig,
    BuildsConfig,
    FieldError,
    short_repr,
)
from mab.config.yamlsource import LineMap, Loc, load_yaml
from mab.errors import ConfigError, ConfigIssue
from mab.planning import templates
from mab.secrets import REDACTED, SECRET_NAME_RE, CredentialsInValue, looks_like_token


@dataclass(frozen=True)
class Project:
    """A validated builds.yaml with where it came from.

    ``warnings`` are problems that do not stop a build (a context outside the project, a
    build arg named like a secret), located like errors; the CLI prints them."""

    path: Path
    config: BuildsConfig
    lines: LineMap
    warnings: tuple[ConfigIssue, ...] = ()

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def locate(self, loc: Loc) -> int | None:
        return self.lines.line_of(loc)

    def issue(self, loc: Loc, message: str) -> ConfigIssue:
        """A problem with the value at *loc*, located: ``FILE:LINE: FIELD: message``."""
        return ConfigIssue(self.path, self.locate(loc), _dotted(loc), message)


def load_project(path: Path) -> Project:
    """Read, validate and check *path*; raise ConfigError listing every problem found."""
    path = Path(path)
    data, lines = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [ConfigIssue(path, lines.line_of(()), None, "expected a mapping with 'targets:'")]
        )
    try:
        config = BuildsConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_issue(path, lines, err) for err in exc.errors()]) from None
    project = Project(path=path, config=config, lines=lines)
    issues = [
        *_check_files(project),
        *_check_secret_files(project),
        *_check_builder_files(project),
    ]
    if issues:
        raise ConfigError(issues)
    return replace(project, warnings=(*_context_warnings(project), *_arg_warnings(project)))


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if len(part) <= 64 else part[:61] + "..."  # a 300-character key, say
        out += f".{text}" if out else text
    return out


def _clean_loc(raw: tuple[Any, ...]) -> Loc:
    """Drop pydantic's markers from an error location: ``[key]`` and the tag of a tagged
    union (it follows a list index: ``tags, 0, semver, semver, full`` -> ``tags, 0, semver,
    full``)."""
    out: list[str | int] = []
    for i, part in enumerate(raw):
        if part == "[key]":
            continue
        if i > 0 and isinstance(raw[i - 1], int) and part in ("literal", *RULE_KINDS):
            continue
        out.append(part)
    return tuple(out)


def _issue(path: Path, lines: LineMap, err: Any) -> ConfigIssue:
    loc: Loc = _clean_loc(tuple(err["loc"]))
    kind = err["type"]
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, FieldError):
        loc = (*loc, *error.loc)
    # A registries: key with credentials is the value at fault: not in the field either.
    shown = tuple(map(_hide_userinfo, loc)) if isinstance(error, CredentialsInValue) else loc
    if kind == "extra_forbidden":
        key = str(loc[-1])
        valid = _valid_keys(loc[:-1])
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        message = f"unknown key '{key}'"
        if close:
            message += f"; did you mean '{close[0]}'?"
        if valid:
            message += f" (valid keys: {', '.join(valid)})"
        return ConfigIssue(path, lines.line_of(loc), _dotted(loc), message)
    if kind == "missing":
        return ConfigIssue(path, lines.line_of(loc[:-1]), _dotted(loc), "required field is missing")
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind == "tag_rule" and isinstance(err.get("input"), dict):
        keys = [str(k) for k in err["input"] if k not in ("prefix", "suffix")]
        close = difflib.get_close_matches(keys[0], RULE_KINDS, n=1) if keys else []
        if close:
            message += f"; did you mean '{close[0]}'?"
    if kind.endswith("_type") or kind in {"literal_error", "int_parsing"}:
        message += f" (got {short_repr(err.get('input'))})"
    return ConfigIssue(path, lines.line_of(loc), _dotted(shown) or None, message)


def _hide_userinfo(part: str | int) -> str | int:
    """A location part (a mapping key) without what precedes its last '@'."""
    if isinstance(part, str) and "@" in part:
        return f"{REDACTED}@{part.rpartition('@')[2]}"
    return part


def _valid_keys(loc: Loc) -> list[str]:
    """Field names of the model found at *loc*, walking BuildsConfig's annotations."""
    current: Any = BuildsConfig
    parts = list(loc)
    while True:
        current = _unwrap(current, str(parts[0]) if parts else None)
        origin = typing.get_origin(current)
        if origin in (dict, list) and parts:
            parts.pop(0)
            current = typing.get_args(current)[-1 if origin is dict else 0]
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not parts:
                return sorted(current.model_fields)
            field = current.model_fields.get(str(parts.pop(0)))
            if field is None:
                return []
            current = field.annotation
            continue
        return []


def _unwrap(tp: Any, next_key: str | None = None) -> Any:
    """Strip Annotated and Optional; of a union of models, pick the one with *next_key*."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [_unwrap(a) for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            fallback = models[0] if models else args[0]  # rules share prefix/suffix
            tp = next((m for m in models if next_key in m.model_fields), fallback)
        else:
            return tp


def _check_files(project: Project) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    base = project.base_dir
    # thousands of targets may share one context and Dockerfile: each is looked at once
    is_dir = functools.cache(Path.is_dir)
    is_file = functools.cache(Path.is_file)
    for name, target in project.config.targets.items():
        tloc: Loc = ("targets", name)
        context = base / target.context
        if not is_dir(context):
            issues.append(
                project.issue(
                    (*tloc, "context"),
                    f"context folder '{target.context}' does not exist (looked for {context})",
                )
            )
            continue
        if target.template is not None:
            message = _template_problem(target.template, project)
            if message is not None:
                issues.append(project.issue((*tloc, "template"), message))
        else:
            dockerfile = context / (target.dockerfile or "Dockerfile")
            if not is_file(dockerfile):
                issues.append(
                    project.issue((*tloc, "dockerfile"), f"Dockerfile not found: {dockerfile}")
                )
    return issues


def _template_problem(name: str, project: Project) -> str | None:
    """What is wrong with a target's ``template:`` value, or None when it is usable."""
    base = project.base_dir
    try:
        found = templates.find_template(
            name, base, allow_external=project.config.allow_external_templates
        )
    except templates.TemplateRefused as exc:
        return str(exc)
    if found is not None:
        return None
    names = templates.available(base)
    close = difflib.get_close_matches(name, names, n=1)
    message = f"template '{name}' not found"
    if close:
        message += f"; did you mean '{close[0]}'?"
    return message + f" (available: {', '.join(names) or 'none'})"


def _check_secret_files(project: Project) -> list[ConfigIssue]:
    """A secret's ``file:`` that is missing and looks like a token is most likely the
    secret itself pasted in: an error that does not repeat it (``mab plan --json`` would
    print it, and the build would fail on the missing file anyway)."""
    issues: list[ConfigIssue] = []
    for name, target in project.config.targets.items():
        for sid, secret in target.secrets.items():
            if secret.file is None or _asked(Path.exists, project.base_dir / secret.file):
                continue
            if looks_like_token(secret.file):
                loc: Loc = ("targets", name, "secrets", sid, "file")
                issues.append(
                    project.issue(
                        loc,
                        "looks like a secret value, not a path (not shown here): write the "
                        "path of a file that holds the secret, or use env: NAME",
                    )
                )
    return issues


def builder_files(builder: BuilderConfig) -> list[tuple[Loc, str]]:
    """The files a builder names (its buildkitd config, a remote's TLS files), by where
    they are written in the builder (relative to it) and as written."""
    files: list[tuple[Loc, str]] = []
    if builder.config is not None:
        files.append((("config",), builder.config))
    if builder.driver == "remote":
        opts = builder.driver_opts
        files += [(("driver_opts", k), opts[k]) for k in TLS_FILE_OPTS if k in opts]
    return files


def _asked(test: Callable[[Path], bool], path: Path) -> bool:
    """*test* (``Path.is_file``, ``Path.exists``) of *path*; False where the path cannot
    even be asked about (a name too long for the file system, say)."""
    try:
        return test(path)
    except (OSError, ValueError):
        return False


def _check_builder_files(project: Project) -> list[ConfigIssue]:
    """Every file a builder names exists; a missing one that looks like a key or token is
    most likely the material itself pasted in: said without repeating it."""
    issues: list[ConfigIssue] = []
    for i, builder in enumerate(project.config.builders):
        for rel, value in builder_files(builder):
            if _asked(Path.is_file, project.base_dir / value):
                continue
            loc: Loc = ("builders", i, *rel)
            if looks_like_token(value):
                message = (
                    "looks like a key or certificate, not a path (not shown here): write the "
                    "path of a file that holds it"
                )
            else:
                found = (project.base_dir / value).absolute()
                message = f"file not found: {value} (looked for {found})"
            issues.append(project.issue(loc, message))
    return issues


def _context_warnings(project: Project) -> list[ConfigIssue]:
    """Build contexts outside the folder of builds.yaml: allowed (a monorepo may want it),
    but said, since everything in that folder is sent to the builder."""
    root = project.base_dir.resolve()
    warnings: list[ConfigIssue] = []
    # context as written -> resolved, if outside root: resolved once per distinct context
    outside: dict[str, Path | None] = {}
    for name, target in project.config.targets.items():
        if target.context not in outside:
            resolved = (project.base_dir / target.context).resolve()
            outside[target.context] = None if resolved.is_relative_to(root) else resolved
        resolved_outside = outside[target.context]
        if resolved_outside is None:
            continue
        resolved = resolved_outside
        if Path(target.context).is_absolute():
            how = "an absolute path"
        elif os.path.normpath(target.context).split(os.sep)[0] == os.pardir:
            how = "through '..'"
        else:
            how = "through a symlink"
        loc: Loc = ("targets", name, "context")
        warnings.append(
            project.issue(
                loc,
                f"the build context is outside the project folder ({how}: {resolved}); "
                "all of it is sent to the builder",
            )
        )
    return warnings


def _arg_warnings(project: Project) -> list[ConfigIssue]:
    """Build args named like secrets: their values stay in the image (history, provenance)
    for anyone who can pull it. The same names lint rule MAB005 flags in a Dockerfile."""
    warnings: list[ConfigIssue] = []
    for name, target in project.config.targets.items():
        for arg in target.args:
            if not SECRET_NAME_RE.search(arg):
                continue
            loc: Loc = ("targets", name, "args", arg)
            sid = arg.lower().replace("_", "-")
            warnings.append(
                project.issue(
                    loc,
                    f"build arg '{arg}' is named like a secret: build args stay in the image "
                    "(docker history, provenance); pass it as a build secret instead, "
                    f"secrets: {{{sid}: {{env: {arg}}}}} and RUN --mount=type=secret,id={sid}",
                )
            )
    return warnings
