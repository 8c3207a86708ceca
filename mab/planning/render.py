"""Rendering: turn a template target into Dockerfile text (pure, no engine).

Templates render with StrictUndefined, so a variable the target forgot is an error that
names the template, its line and the variable, not an empty string baked into an image.

They render in Jinja2's sandbox: a template (or a value that flows into one) cannot reach
Python (``{{ cycler.__init__.__globals__.os }}`` is an error, never a call), and an
``{% include %}`` reads only regular files that really live in the template's own folder.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from mab.errors import ConfigError, ConfigIssue
from mab.planning.plan import TargetPlan

_UNDEFINED_RE = re.compile(r"'([^']+)' is undefined")
MAX_TEMPLATE_BYTES = 1024 * 1024


class _FolderLoader(jinja2.FileSystemLoader):
    """Jinja2's FileSystemLoader (which already refuses ``..``) that also refuses a symlink
    out of its folder, a file that is not a regular file and one over 1 MiB. The template
    being rendered (*entry*) was vetted by ``templates.find_template``."""

    def __init__(self, folder: Path, entry: str) -> None:
        super().__init__(str(folder))
        self._root = folder.resolve()
        self._entry = entry

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        filename = Path(self.searchpath[0], *template.split("/"))
        if template != self._entry and not filename.resolve().is_relative_to(self._root):
            raise jinja2.TemplateNotFound(f"{template}: outside {self._root}")
        try:
            info = filename.stat()
        except OSError:
            raise jinja2.TemplateNotFound(template) from None
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_TEMPLATE_BYTES:
            raise jinja2.TemplateNotFound(f"{template}: not a regular file of at most 1 MiB")
        return super().get_source(environment, template)


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    """Jinja2's sandbox, with ``*`` and ``**`` bounded: ``{{ 'x' * 10**10 }}`` is an error
    rather than the machine's memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 1000:
            raise jinja2.exceptions.SecurityError(f"exponent {right} is too large")
        if operator == "*" and _sized(left, right) > MAX_TEMPLATE_BYTES:
            raise jinja2.exceptions.SecurityError("a repetition larger than 1 MiB")
        return super().call_binop(context, operator, left, right)


def _sized(left: object, right: object) -> int:
    """The length ``left * right`` would have when it repeats a string or a list, else 0."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            return len(seq) * times
    return 0


def render_template(path: Path, variables: dict[str, Any], *, target: str) -> str:
    env = _Sandbox(
        loader=_FolderLoader(path.parent, path.name),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # output is a Dockerfile, not HTML
    )
    context = {"target": target, **variables}
    try:
        return env.get_template(path.name).render(context)
    except jinja2.TemplateError as exc:
        raise ConfigError([_template_issue(exc, path, target)]) from None
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as exc:
        # A template's own mistake ({{ 1 / 0 }}, a filter given the wrong type).
        message = f"template error: {type(exc).__name__}: {exc}"
        raise ConfigError([ConfigIssue(path, _template_line(exc, path), None, message)]) from None


def _template_issue(exc: jinja2.TemplateError, path: Path, target: str) -> ConfigIssue:
    line = _template_line(exc, path)
    if isinstance(exc, jinja2.UndefinedError):
        match = _UNDEFINED_RE.search(str(exc))
        if match is None:  # 'x' has no attribute 'y'
            return ConfigIssue(path, line, None, f"undefined: {exc} (target '{target}')")
        return ConfigIssue(
            path,
            line,
            None,
            f"undefined variable '{match.group(1)}' (target '{target}'): set it under "
            f"targets.{target}.vars",
        )
    if isinstance(exc, jinja2.exceptions.SecurityError):
        why = str(exc).rstrip(".")
        if why.startswith("access to"):
            why += " (templates render in a sandbox: no attribute starting with '_')"
        return ConfigIssue(path, line, None, f"unsafe template: {why}")
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return ConfigIssue(
            Path(exc.filename or path), exc.lineno, None, f"template syntax: {exc.message}"
        )
    if isinstance(exc, jinja2.TemplateNotFound):
        return ConfigIssue(
            path,
            line,
            None,
            f"template not found: {exc.message} (an include reads files in the template's "
            "own folder)",
        )
    return ConfigIssue(path, line, None, f"template error: {exc}")


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
