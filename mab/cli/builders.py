"""``mab builders``: the declared builders, their native and emulated platforms and state;
``mab builders create`` creates the declared ones that are missing (idempotent)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mab.cli.console import console
from mab.cli.guard import fail as _fail
from mab.config.models import BuilderConfig, load_project
from mab.errors import MabError

app = typer.Typer(
    name="builders",
    help="List the builders of builds.yaml with their platforms and state; create missing ones.",
    invoke_without_command=True,
    no_args_is_help=False,
)

FileOpt = Annotated[Path, typer.Option("--file", "-f", help="The builds.yaml to use.")]


def _declared(file: Path) -> list[BuilderConfig]:
    try:
        return list(load_project(file).config.builders)
    except MabError as error:
        _fail(error)


@app.callback()
def builders(
    ctx: typer.Context,
    file: FileOpt = Path("builds.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """List builders: declared (native platforms) and what buildx reports (state, all
    platforms it offers; offered but not native means emulated)."""
    if ctx.invoked_subcommand is not None:
        return
    from mab.engine.whales import Engine

    declared = _declared(file)
    try:
        known = {b.name: b for b in Engine().builders()}
    except MabError as error:
        _fail(error)
    rows: list[dict[str, Any]] = []
    names = [b.name for b in declared] or list(known)
    for name in names:
        spec = next((b for b in declared if b.name == name), None)
        info = known.get(name)
        native = list(spec.platforms) if spec else []
        offered = list(info.platforms) if info else []
        rows.append(
            {
                "name": name,
                "driver": spec.driver if spec else (info.driver if info else ""),
                "endpoint": spec.endpoint if spec else None,
                "native": native,
                "emulated": [p for p in offered if native and p not in native],
                "offered": offered,
                "state": info.status if info else "missing (mab builders create)",
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="builders", title_justify="left")
    for column in ("name", "driver", "endpoint", "native", "emulated / offered", "state"):
        table.add_column(column)
    for row in rows:
        shown = row["emulated"] if row["native"] else row["offered"]
        table.add_row(
            str(row["name"]),
            str(row["driver"]),
            str(row["endpoint"] or "-"),
            ", ".join(row["native"]) or "-",
            ", ".join(shown) or "-",
            str(row["state"]),
        )
    console.print(table)


@app.command()
def create(file: FileOpt = Path("builds.yaml")) -> None:
    """Create the builders builds.yaml declares that buildx does not know yet."""
    from mab.engine.whales import Engine

    declared = _declared(file)
    if not declared:
        console.print("builds.yaml declares no builders: nothing to create")
        return
    engine = Engine()
    try:
        known = {b.name for b in engine.builders()}
        for spec in declared:
            if spec.name in known:
                console.print(f"{spec.name}: exists")
                continue
            engine.create_builder(
                spec.name, spec.driver, spec.endpoint, dict(spec.driver_opts), list(spec.platforms)
            )
            console.print(Text(f"{spec.name}: created ({spec.driver} driver)", style="green"))
    except MabError as error:
        _fail(error)
