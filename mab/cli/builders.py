"""``mab builders`` and ``mab builders create``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from mab import api
from mab.cli.console import err, out
from mab.cli.guard import command, guarded
from mab.cli.options import FileOpt, sub_app
from mab.config.project import load_project
from mab.secrets import redact

builders_app = sub_app(
    "builders",
    "List the builders of builds.yaml with their platforms and state; create missing ones.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def builders(
    ctx: typer.Context,
    file: FileOpt = Path("builds.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """List builders: declared (native platforms) and what buildx reports (state, all
    platforms it offers; offered but not native means emulated)."""
    if ctx.invoked_subcommand is not None:
        return
    rows = api.builders(load_project(file), api.docker_engine())
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in rows], indent=2) + "\n")
        return
    table = Table(title="builders", title_justify="left")
    columns = ("name", "driver", "endpoint", "options", "native", "emulated / offered", "state")
    for column in columns:
        table.add_column(column)
    for row in rows:
        shown = row.emulated if row.native else row.offered
        table.add_row(
            row.name,
            row.driver,
            row.endpoint or "-",
            redact(", ".join(f"{k}={v}" for k, v in row.options)) or "-",
            ", ".join(row.native) or "-",
            ", ".join(shown) or "-",
            row.state,
        )
    out.print(table)


builders_app.callback()(guarded(builders))


@command(builders_app)
def create(file: FileOpt = Path("builds.yaml")) -> None:
    """Create the builders builds.yaml declares that buildx does not know yet."""
    project = load_project(file)
    if not project.config.builders:
        err.print("builds.yaml declares no builders: nothing to create")
        return
    for name, created in api.create_builders(project, api.docker_engine()):
        if created:
            driver = next(b.driver for b in project.config.builders if b.name == name)
            err.print(Text(f"{name}: created ({driver} driver)", style="green"))
        else:
            err.print(f"{name}: exists")
