"""builds.yaml: the typed model (pydantic v2) and the loader that locates every error.

The model is strict: unknown keys are rejected with the closest valid key suggested,
platforms are normalised (``linux/arm64/v8`` -> ``linux/arm64``), and paths named in
the file are checked to exist. Every problem is reported as ``FILE:LINE: FIELD: cause``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from mab import templates
from mab.errors import ConfigError, ConfigIssue
from mab.platforms import PlatformValueError, normalize
from mab.yamlsource import LineMap, Loc, load_yaml

DEFAULT_REGISTRY = "localhost:5000"
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")

_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_REGISTRY_RE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
)


def _platform(value: str) -> str:
    try:
        return normalize(value)
    except PlatformValueError as exc:
        raise ValueError(str(exc)) from None


def _tag(value: str) -> str:
    if not _TAG_RE.match(value):
        raise ValueError(
            f"invalid tag '{value}': up to 128 characters of [A-Za-z0-9_.-], "
            "not starting with '.' or '-'"
        )
    return value


def _target_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"invalid target name '{value}': lowercase letters, digits and single . _ - "
            "between them (it becomes the repository name)"
        )
    return value


def _registry(value: str) -> str:
    value = value.strip().rstrip("/")
    if not _REGISTRY_RE.match(value):
        raise ValueError(
            f"invalid registry '{value}': write HOST[:PORT][/PATH], lowercase, "
            "e.g. 'localhost:5000/demo' or 'ghcr.io/acme'"
        )
    return value


def _scalar_to_str(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


PlatformStr = Annotated[str, AfterValidator(_platform)]
TagStr = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_tag)]
TargetName = Annotated[str, AfterValidator(_target_name)]
ScalarStr = Annotated[str, BeforeValidator(_scalar_to_str)]
RegistryStr = Annotated[str, AfterValidator(_registry)]


class TargetConfig(BaseModel):
    """One image: built from a Dockerfile or a template, for one or more platforms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context: str = Field(".", description="Build context folder, relative to builds.yaml.")
    dockerfile: str | None = Field(
        None,
        description="Dockerfile path relative to the context (default: Dockerfile). "
        "Exclusive with template.",
    )
    template: str | None = Field(
        None,
        description="Name of a template in templates/ (e.g. 'go'), or a path to a .j2 file "
        "relative to builds.yaml. Exclusive with dockerfile.",
    )
    vars: dict[str, Any] = Field(
        default_factory=dict, description="Variables for the template (StrictUndefined)."
    )
    args: dict[str, ScalarStr] = Field(default_factory=dict, description="Build arguments.")
    platforms: list[PlatformStr] | None = Field(
        None, description="Platforms for this target; default: the top-level platforms."
    )
    tags: list[TagStr] = Field(
        default_factory=lambda: ["latest"], min_length=1, description="Tags of the image index."
    )
    stage: str | None = Field(None, description="Build stage to stop at (--target).")
    labels: dict[str, ScalarStr] = Field(default_factory=dict, description="Image labels.")

    @model_validator(mode="after")
    def _one_source(self) -> TargetConfig:
        if self.dockerfile is not None and self.template is not None:
            raise ValueError("give either 'dockerfile' or 'template', not both")
        return self


class BuildsConfig(BaseModel):
    """The whole builds.yaml, version 1."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="mab builds.yaml",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    version: Literal[1] = Field(1, description="Format version of this file.")
    registry: RegistryStr | None = Field(
        None,
        description="Where images go, HOST[:PORT][/PATH]. Default: localhost:5000, started "
        "by mab if nothing answers there.",
    )
    platforms: list[PlatformStr] = Field(
        default_factory=lambda: list(DEFAULT_PLATFORMS),
        min_length=1,
        description="Default platforms of every target.",
    )
    base_images: dict[str, str] = Field(
        default_factory=dict,
        description="Map an image named in FROM to another image (a mirror); passed to buildx "
        "as named build contexts, so Dockerfiles keep their official names.",
    )
    builder: str | None = Field(None, description="buildx builder to use; default: current.")
    concurrency: int = Field(4, ge=1, le=64, description="Platform builds run at once.")
    targets: dict[TargetName, TargetConfig] = Field(
        min_length=1, description="The images to build, by name."
    )


@dataclass(frozen=True)
class Project:
    """A validated builds.yaml with where it came from."""

    path: Path
    config: BuildsConfig
    lines: LineMap

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def locate(self, loc: Loc) -> int | None:
        return self.lines.line_of(loc)


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
    issues = _check_files(project)
    if issues:
        raise ConfigError(issues)
    return project


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _issue(path: Path, lines: LineMap, err: Any) -> ConfigIssue:
    loc: Loc = tuple(p for p in err["loc"] if p != "[key]")
    kind = err["type"]
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
    if kind.endswith("_type") or kind in {"literal_error", "int_parsing"}:
        message += f" (got {_short(err.get('input'))})"
    return ConfigIssue(path, lines.line_of(loc), _dotted(loc) or None, message)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _valid_keys(loc: Loc) -> list[str]:
    """Field names of the model found at *loc*, walking BuildsConfig's annotations."""
    current: Any = BuildsConfig
    parts = list(loc)
    while True:
        current = _unwrap(current)
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


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0]
        else:
            return tp


def _check_files(project: Project) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    path, base = project.path, project.base_dir
    for name, target in project.config.targets.items():
        tloc: Loc = ("targets", name)
        context = base / target.context
        if not context.is_dir():
            issues.append(
                ConfigIssue(
                    path,
                    project.locate((*tloc, "context")),
                    _dotted((*tloc, "context")),
                    f"context folder '{target.context}' does not exist (looked for {context})",
                )
            )
            continue
        if target.template is not None:
            if templates.find_template(target.template, base) is None:
                names = templates.available(base)
                close = difflib.get_close_matches(target.template, names, n=1)
                message = f"template '{target.template}' not found"
                if close:
                    message += f"; did you mean '{close[0]}'?"
                message += f" (available: {', '.join(names) or 'none'})"
                issues.append(
                    ConfigIssue(
                        path,
                        project.locate((*tloc, "template")),
                        _dotted((*tloc, "template")),
                        message,
                    )
                )
        else:
            dockerfile = context / (target.dockerfile or "Dockerfile")
            if not dockerfile.is_file():
                issues.append(
                    ConfigIssue(
                        path,
                        project.locate((*tloc, "dockerfile")),
                        _dotted((*tloc, "dockerfile")),
                        f"Dockerfile not found: {dockerfile}",
                    )
                )
    return issues


def json_schema() -> dict[str, Any]:
    return BuildsConfig.model_json_schema()
