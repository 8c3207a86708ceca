"""Tag rules written as Jinja2 templates (``raw: "{{ branch }}-{{ short_sha }}"``),
rendered in a sandbox.

A module of its own so that jinja2 loads only for a builds.yaml that has such a rule:
``mab plan`` on plain rules starts without it.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

TEXT_MAX = 4096  # a longer string built in a tag template is refused


class TagTemplateError(Exception):
    """A tag template failed; the message is the rule's error, without the template's
    values (they may come from the environment)."""


class _Sandbox(SandboxedEnvironment):
    """Tag templates reach no Python (no ``__globals__``, no ``os``), and cannot build a
    huge value with ``*`` or ``**`` (``{{ 'x' * 10**10 }}``) that would exhaust memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "**" and isinstance(right, int) and right > 64:
            raise SecurityError(f"exponent {right} is too large for a tag")
        if operator == "*" and (_too_long(left, right) or _too_long(right, left)):
            raise SecurityError("the repeated text is too long for a tag")
        return super().call_binop(context, operator, left, right)


def _too_long(seq: Any, times: Any) -> bool:
    sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
    return sized and len(seq) * times > TEXT_MAX


_SANDBOX = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False)
_SANDBOX.globals.pop("lipsum", None)  # tags need no filler text, of any length


def render(template: str, values: dict[str, object]) -> str:
    """Render *template* (builds.yaml text) over *values*. The values (branch and tag
    names, --env, ...) are data passed to the template, never part of its source; a value
    this run does not have is undefined, so StrictUndefined names it."""
    defined = {k: v for k, v in values.items() if v is not None}
    try:
        return _SANDBOX.from_string(template).render(defined)
    except jinja2.UndefinedError as exc:
        raise TagTemplateError(f"{exc} in this run") from None
    except SecurityError as exc:
        raise TagTemplateError(f"template not allowed: {exc}") from None
    except jinja2.TemplateError as exc:
        raise TagTemplateError(f"template error: {exc}") from None
    except Exception as exc:  # any failure of builds.yaml text is the rule's error
        raise TagTemplateError(f"template error: {type(exc).__name__}") from None
