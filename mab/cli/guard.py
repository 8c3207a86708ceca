"""How every mab command ends on an error: one line (plus a hint), the exit code of the
error's kind (2 configuration, 1 build/publish/verify/registry, 130 interrupted), and a
traceback only with --debug. Shared by mab.cli.main and its sub-command modules."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import NoReturn, TypeVar

import typer
from rich.text import Text

from mab.cli.console import console
from mab.errors import ConfigError, MabError

T = TypeVar("T")


def fail(error: MabError, debug: bool = False) -> NoReturn:
    if debug:
        console.print(Text("".join(traceback.format_exception(error)), style="dim"))
    if isinstance(error, ConfigError):
        for issue in error.issues:
            console.print(Text(f"error: {issue}", style="bold red"))
    else:
        console.print(Text(f"error: {error.message}", style="bold red"))
    if error.hint:
        console.print(Text(error.hint, style="yellow"))
    raise typer.Exit(error.exit_code)


def guard(debug: bool, action: Callable[[], T]) -> T:
    """Run *action*; turn mab's errors, interrupts and bugs into an exit as above."""
    try:
        return action()
    except MabError as error:
        fail(error, debug)
    except KeyboardInterrupt:
        console.print(Text("interrupted: no tag was written for unfinished targets", style="red"))
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as error:  # an mab bug or an unexpected engine answer
        if debug:
            console.print(Text("".join(traceback.format_exception(error)), style="dim"))
        console.print(Text(f"internal error: {type(error).__name__}: {error}", style="bold red"))
        console.print(Text("rerun with --debug for the traceback", style="yellow"))
        raise typer.Exit(1) from None
