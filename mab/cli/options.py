"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

FileOpt = Annotated[
    Path, typer.Option("--file", "-f", help="The builds.yaml to use.", show_default=True)
]
TargetOpt = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help="Only this target (repeatable).", show_default=False),
]
PlatformOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--platform",
        "-p",
        help="Only this platform, e.g. linux/arm64 (repeatable). A run that builds fewer "
        "platforms than a target declares pushes its images by digest and writes no tag.",
        show_default=False,
    ),
]
VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version",
        help="The version semver tag rules use (else the git tag at HEAD, else the VERSION "
        "file). Also MAB_VERSION.",
        show_default=False,
    ),
]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env",
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
        "--report", help="Also write the results as JSON to this file.", show_default=False
    ),
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Write to this file.", show_default=False)
]
PortOpt = Annotated[
    int, typer.Option("--port", help="Port of the registry on this machine.", min=1, max=65535)
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
        help="Read the password from this environment variable.",
        show_default=False,
    ),
]
