"""``mab init``: builds.yaml and .dockerignore for a project, from its detected stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from mab import api
from mab import init as generator
from mab.cli.console import err


def init(
    folder: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="The project folder.", show_default=True)
    ] = Path("."),
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            metavar="NAME",
            help="Use this template (" + ", ".join(generator.TEMPLATES) + ") instead of "
            "detecting the stack.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite builds.yaml and .dockerignore.")
    ] = False,
) -> None:
    """Write builds.yaml (one template target named after the folder, for linux/amd64 and
    linux/arm64) and a .dockerignore for the project's stack, detected from its files."""
    detection, files = api.init_files(folder, template, force)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        err.print(f"wrote {path}")
    err.print(Text(f"template {detection.template} (found {detection.reason})", style="green"))
    for note in detection.notes:
        err.print(Text(f"note: {note}", style="yellow"))
    builds = folder / "builds.yaml"
    err.print(Text(f"next: mab render -f {builds}; mab lint -f {builds}", style="dim"))
