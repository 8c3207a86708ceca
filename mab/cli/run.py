"""``mab run TARGET``: run a target's image (the loaded one, else the published index by
digest) for a platform, attached to this terminal, and exit with the container's code."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from mab import api
from mab.cli.build import DEFAULT_FILE, load
from mab.cli.console import err
from mab.cli.options import EnvOpt, FileOpt, VersionOpt
from mab.secrets import redact


def run(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="The target to run.")],
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ARGS",
            help="The command to run in the container (after --), instead of the image's own.",
            show_default=False,
        ),
    ] = None,
    platform: Annotated[
        str | None,
        typer.Option(
            "--platform",
            "-p",
            metavar="OS/ARCH",
            help="Run this platform's image (default: the engine's own, if the target "
            "declares it); a foreign one runs under QEMU.",
            show_default=False,
        ),
    ] = None,
    file: FileOpt = DEFAULT_FILE,
    version: VersionOpt = None,
    env: EnvOpt = None,
) -> None:
    """Run a target's image: the one `mab build --load` loaded (REGISTRY/TARGET:TAG, its
    first tag) when it is of that platform, else the published index by digest. Exits
    with the container's exit code.

    Example: mab run hello --platform linux/arm64 -- uname -m
    """
    loaded = load(file, [target], version=version, env=env)
    outcome = api.run(
        loaded,
        api.docker_engine(),
        platform=platform,
        argv=args or (),
        notify=lambda message: err.print(Text(redact(message), style="dim")),
    )
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)
