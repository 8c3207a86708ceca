"""How every mab command ends on an error: one line (plus a hint), redacted, with the
exit code of the error's kind (2 configuration or usage, 1 build/publish/verify/registry,
130 interrupted), and a traceback only with --debug.

``guarded`` wraps a command function so its whole body runs inside the guard and adds the
``--debug`` option to it: commands declare neither. (As copier wraps each command in one
exception handler.)"""

from __future__ import annotations

import functools
import inspect
import traceback
import typing
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.text import Text

from mab.cli.console import err
from mab.errors import ConfigError, MabError, Terminated
from mab.pipeline.results import Interrupted, RunReport
from mab.secrets import redact

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show the traceback of an error.", show_default=False)
]


class _State:
    debug = False  # set by `mab --debug`, for every command


state = _State()


def say_error(text: str, style: str = "bold red") -> None:
    err.print(Text(redact(text), style=style))


def fail(error: MabError, debug: bool = False) -> NoReturn:
    if debug or state.debug:
        err.print(Text(redact("".join(traceback.format_exception(error))), style="dim"))
    if isinstance(error, ConfigError):
        for issue in error.issues:
            say_error(f"error: {issue}")
    else:
        say_error(f"error: {error.message}")
    if error.hint:
        say_error(error.hint, "yellow")
    raise typer.Exit(error.exit_code)


def guard(debug: bool, action: Callable[[], T]) -> T:
    """Run *action*; turn mab's errors, interrupts and bugs into an exit as above."""
    try:
        return action()
    except MabError as error:
        fail(error, debug)
    except Interrupted as interrupt:
        say_error(f"interrupted: {interrupted_account(interrupt.report)}", "red")
        raise typer.Exit(interrupt.exit_code) from None
    except KeyboardInterrupt as interrupt:
        say_error("interrupted: tags this command had not written keep their old images", "red")
        raise typer.Exit(getattr(interrupt, "exit_code", 130)) from None
    except (typer.Exit, typer.Abort):
        raise
    except OSError as error:  # a file mab was told to read or write
        if debug or state.debug:
            err.print(Text(redact("".join(traceback.format_exception(error))), style="dim"))
        where = f" {error.filename}" if error.filename else ""
        say_error(f"error: cannot use{where}: {error.strerror or error}")
        raise typer.Exit(1) from None
    except Exception as error:  # an mab bug or an unexpected engine answer
        if debug or state.debug:
            err.print(Text(redact("".join(traceback.format_exception(error))), style="dim"))
        say_error(f"internal error: {type(error).__name__}: {error}")
        say_error("rerun with --debug for the traceback", "yellow")
        raise typer.Exit(1) from None


def interrupted_account(report: RunReport) -> str:
    """One true line: which targets were published before the signal, and which not."""
    done = [f"{t.name} ({', '.join(t.tags) or t.status})" for t in report.targets if t.ok]
    undone = [t.name for t in report.targets if not t.ok]
    parts = []
    if done:
        parts.append(f"published before the signal: {', '.join(done)}")
    if undone:
        parts.append(f"not published (no tag written or moved): {', '.join(undone)}")
    return "; ".join(parts) or "nothing was started"


def raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM handler: stop like SIGINT does (the guard exits 143 with an account)."""
    raise Terminated()


def guarded(func: F) -> F:
    """*func* as a typer command whose body runs inside ``guard``, with ``--debug``."""
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)
    parameters = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
    ]
    parameters.append(
        inspect.Parameter(
            "debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DebugOpt
        )
    )

    @functools.wraps(func)
    def command(*args: Any, debug: bool = False, **kwargs: Any) -> Any:
        return guard(debug, lambda: func(*args, **kwargs))

    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=hints.get("return", None)
    )
    command.__annotations__ = {**hints, "debug": DebugOpt}
    return typing.cast("F", command)


def command(app: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Register a function as a guarded command of *app* (``@command(app, "up")``)."""

    def register(func: F) -> F:
        app.command(name)(guarded(func))
        return func

    return register
