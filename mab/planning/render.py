"""Rendering: turn a template target into Dockerfile text (pure, no engine).

Templates render with StrictUndefined, so a variable the target forgot is an error that
names the template, its line and the variable, not an empty string baked into an image.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2

from mab.errors import ConfigError, ConfigIssue
from mab.planning.plan import TargetPlan

_UNDEFINED_RE = re.compile(r"'([^']+)' is undefined")


def render_template(path: Path, variables: dict[str, Any], *, target: str) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - output is a Dockerfile, not HTML
    )
    context = {"target": target, **variables}
    try:
        return env.get_template(path.name).render(context)
    except jinja2.UndefinedError as exc:
        match = _UNDEFINED_RE.search(str(exc))
        name = match.group(1) if match else str(exc)
        raise ConfigError(
            [
                ConfigIssue(
                    path,
                    _template_line(exc, path),
                    None,
                    f"undefined variable '{name}' (target '{target}'): set it under "
                    f"targets.{target}.vars",
                )
            ]
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            [
                ConfigIssue(
                    Path(exc.filename or path), exc.lineno, None, f"template syntax: {exc.message}"
                )
            ]
        ) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(
            [ConfigIssue(path, _template_line(exc, path), None, f"template error: {exc}")]
        ) from None


def _template_line(exc: BaseException, path: Path) -> int | None:
    """The template line an exception was raised at, read from its traceback."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_target(target: TargetPlan) -> str | None:
    """The Dockerfile text of a template target; None for a hand-written Dockerfile."""
    if target.source.kind != "template":
        return None
    return render_template(target.source.path, dict(target.source.vars), target=target.name)


def dockerfile_text(target: TargetPlan) -> str:
    rendered = render_target(target)
    return rendered if rendered is not None else target.source.path.read_text(encoding="utf-8")
