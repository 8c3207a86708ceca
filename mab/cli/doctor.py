"""``mab doctor``: the set-up checks, a table (or JSON) on stdout, exit 1 on a problem."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from mab import api
from mab.cli.build import write_json
from mab.cli.console import err, out
from mab.cli.options import JsonOpt
from mab.secrets import redact

if TYPE_CHECKING:
    from mab.doctor import Report

_STYLE = {"ok": "green", "warning": "yellow", "problem": "bold red", "skipped": "dim"}


def doctor(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            metavar="FILE",
            help="The builds.yaml whose builders, platforms and registries to check "
            "(default: ./builds.yaml when there is one).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check what builds depend on, one line each with the fix for a problem: the docker
    CLI and engine, buildx, the containerd image store, each builder builds.yaml routes
    to, QEMU for every declared platform (a container of it is run), each registry and
    the stored credentials (never shown), free disk space, SOURCE_DATE_EPOCH and the
    clock. Exit 0 when nothing is wrong, 1 otherwise."""
    report = api.doctor(file, api.docker_engine())
    if as_json:
        write_json(report.to_dict())
    else:
        for line in table(report):
            out.print(line, soft_wrap=True)
    problems = report.problems
    warnings = sum(1 for c in report.checks if c.status == "warning")
    if problems:
        names = ", ".join(c.name for c in problems)
        counted = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        err.print(Text(redact(f"{counted}: {names}"), style="bold red"))
        raise typer.Exit(1)
    extra = f" ({warnings} warnings)" if warnings else ""
    err.print(Text(f"all {len(report.checks)} checks passed{extra}", style="bold green"))


def table(report: Report) -> list[Text]:
    """One line per check, columns aligned: status, check, what was found, and for a
    problem (or a warning) the fix after "fix:". Lines are never wrapped, so
    ``mab doctor | grep QEMU`` finds a whole check."""
    width = max((len(c.name) for c in report.checks), default=5)
    lines = [Text(f"{'status':<8} {'check':<{width}}  detail", style="bold")]
    for check in report.checks:
        line = Text(f"{check.status:<8}", style=_STYLE[check.status])
        line.append(f" {check.name:<{width}}  {redact(check.detail)}")
        if check.fix and check.status != "ok":
            line.append(f"  fix: {redact(check.fix)}", style="yellow")
        lines.append(line)
    return lines
