"""The ``mab`` command: a thin typer layer over ``mab.api``.

Every command is registered through ``guarded``: its whole body runs in the one error
guard (one line and a hint, exit 2 for configuration and usage, 1 for build, publish,
verify and registry failures, 130 when interrupted; a traceback only with --debug).
Help texts are plain paragraphs (no rich markup, so ``HOST[/PATH]`` is text).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.text import Text

from mab import __version__, proc
from mab.cli import build as commands
from mab.cli.builders import builders_app
from mab.cli.ci import ci_app
from mab.cli.console import err
from mab.cli.guard import guarded, state
from mab.cli.init import init
from mab.cli.lint import lint
from mab.cli.registry import clean, login, logout, registry_app

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
        sys.stdout.write(f"mab {__version__}\n")
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
):
    app.command()(guarded(function))
app.add_typer(registry_app, name="registry")
app.add_typer(builders_app, name="builders")
app.add_typer(ci_app, name="ci")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
