"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def sub_app(
    name: str,
    help: str,
    *,
    invoke_without_command: bool = False,
    no_args_is_help: bool = True,
) -> typer.Typer:
    """A command group with mab's settings: plain help text (no rich markup, so
    ``HOST[/PATH]`` is text), no shell completion, no pretty tracebacks."""
    return typer.Typer(
        name=name,
        help=help,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        invoke_without_command=invoke_without_command,
        no_args_is_help=no_args_is_help,
    )


FileOpt = Annotated[
    Path,
    typer.Option("--file", "-f", metavar="FILE", help="The builds.yaml to use.", show_default=True),
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target", "-t", metavar="NAME", help="Only this target (repeatable).", show_default=False
    ),
]
PlatformOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--platform",
        "-p",
        metavar="OS/ARCH",
        help="Only this platform, e.g. linux/arm64 (repeatable). A run that builds fewer "
        "platforms than a target declares pushes its images by digest and writes no tag.",
        show_default=False,
    ),
]
VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version",
        metavar="VERSION",
        help="The version semver tag rules use (else the git tag at HEAD, else the VERSION "
        "file). Also MAB_VERSION.",
        show_default=False,
    ),
]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env",
        metavar="NAME",
        help="The environment environment tag rules use (also MAB_ENV).",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print JSON on stdout instead of a table.", show_default=False),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report",
        metavar="FILE",
        help="Also write the results as JSON to this file.",
        show_default=False,
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", metavar="FILE", help="Write to this file.", show_default=False),
]
PortOpt = Annotated[
    int,
    typer.Option(
        "--port", metavar="PORT", help="Port of the registry on this machine.", min=1, max=65535
    ),
]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from stdin (first line).", show_default=False
    ),
]
PasswordEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        metavar="VAR",
        help="Read the password from this environment variable.",
        show_default=False,
    ),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Overwrite an immutable tag (a full version, sha, date or literal) that "
        "already names another index; without it such a run publishes nothing.",
    ),
]
