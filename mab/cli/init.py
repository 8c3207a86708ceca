"""``mab init [DIR]``: write builds.yaml and .dockerignore for the project in DIR.

Registered by mab.cli.main. The detection and the text come from mab.init; this layer writes
the files, never overwriting one without --force (exit 2 naming it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from mab import init as generator
from mab.cli.console import console
from mab.cli.guard import guard as _guard
from mab.errors import UsageError


def plan_files(
    folder: Path, template: str | None, force: bool
) -> tuple[generator.Detection, dict[Path, str]]:
    """What init would write, checked: a UsageError for an unknown stack or a file that
    exists without --force."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    if template is not None and template not in generator.TEMPLATES:
        raise UsageError(
            f"unknown template '{template}'",
            hint="templates: " + ", ".join(generator.TEMPLATES),
        )
    try:
        detection = generator.detect(folder, template)
    except generator.NotDetected:
        raise UsageError(
            generator.undetected_message(folder),
            hint="pick one with --template NAME",
        ) from None
    files = {
        folder / "builds.yaml": generator.builds_yaml(folder, detection),
        folder / ".dockerignore": generator.dockerignore(detection.template),
    }
    existing = [path for path in files if path.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise UsageError(
            f"{names} already {'exists' if len(existing) == 1 else 'exist'}; not overwritten "
            "(nothing written)",
            hint="rerun with --force to replace it",
        )
    return detection, files


def init(
    folder: Annotated[Path, typer.Argument(help="The project folder.", show_default=True)] = Path(
        "."
    ),
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            help="Use this template (" + ", ".join(generator.TEMPLATES) + ") instead of "
            "detecting the stack.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite builds.yaml and .dockerignore.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Write builds.yaml (one template target named after the folder, for linux/amd64 and
    linux/arm64) and a .dockerignore for the project's stack, detected from its files."""
    detection, files = _guard(debug, lambda: plan_files(folder, template, force))
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")
    console.print(Text(f"template {detection.template} (found {detection.reason})", style="green"))
    for note in detection.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    builds = folder / "builds.yaml"
    console.print(Text(f"next: mab render -f {builds}; mab lint -f {builds}", style="dim"))
