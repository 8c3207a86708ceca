"""The ``mab`` command: a thin typer layer over ``mab.api``.

Every command is registered through ``guarded``: its whole body runs in the one error
guard (one line and a hint, exit 2 for configuration and usage, 1 for build, publish,
verify and registry failures, 130 when interrupted; a traceback only with --debug).
Help texts are plain paragraphs (no rich markup, so ``HOST[/PATH]`` is text).
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer
from rich.text import Text

from mab import proc
from mab.cli import build as commands
from mab.cli.builders import builders_app
from mab.cli.ci import ci_app
from mab.cli.console import err
from mab.cli.doctor import doctor
from mab.cli.guard import guarded, raise_terminated, say_error, state
from mab.cli.init import init
from mab.cli.lint import lint
from mab.cli.registry import clean, login, logout, registry_app
from mab.cli.run import run
from mab.config.install import DISTRIBUTION, running_version

try:  # typer vendors click since 0.20; before, it used the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

app = typer.Typer(
    name="mab",
    help="Build one image for many CPU architectures from a declarative builds.yaml: "
    "plan, render, build with buildx, push, assemble the image index, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        # the command is mab; the distribution that installs it is mab-build ("mab" on PyPI
        # is an unrelated project). A checkout that is not installed has mab.__version__.
        sys.stdout.write(f"mab {running_version()} (distribution {DISTRIBUTION})\n")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an error (every command).")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Print every command mab runs (docker, buildx, registry)."
        ),
    ] = False,
) -> None:
    """mab: multi-architecture image builds from builds.yaml."""
    state.debug = debug
    if verbose:
        proc.set_echo(lambda line: err.print(Text(line, style="dim")))


for function in (
    commands.plan,
    commands.tags,
    commands.render,
    commands.build,
    commands.merge,
    commands.verify,
    commands.promote,
    commands.schema,
    login,
    logout,
    clean,
    init,
    lint,
    doctor,
    run,
):
    app.command()(guarded(function))
app.add_typer(registry_app, name="registry")
app.add_typer(builders_app, name="builders")
app.add_typer(ci_app, name="ci")


def main() -> None:
    """The ``mab`` command. Command-line errors are printed here, not by click: click
    repeats the offending words (``Got unexpected extra argument (S3cret)``), and a
    password typed where mab never takes one must not be echoed."""
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        code = app(standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        err.print(exc.format_message(), markup=False, highlight=False)
        code = 2
    except click_exceptions.UsageError as exc:
        message = exc.format_message()
        if "extra argument" in message:
            message = (
                "unexpected extra argument (not shown: it may be a secret); mab never takes "
                "a password on the command line (--password-stdin or --password-env)"
            )
        code = _usage_error(exc, message)
    except (typer.Abort, KeyboardInterrupt):
        say_error("interrupted", "red")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: click_exceptions.UsageError, message: str) -> int:
    if exc.ctx is not None:
        err.print(exc.ctx.get_usage(), markup=False, highlight=False)
    say_error(f"error: {message}")
    if exc.ctx is not None:
        err.print(f"Try '{exc.ctx.command_path} --help' for help.", markup=False)
    return 2


if __name__ == "__main__":
    main()
