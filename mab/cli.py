"""The ``mab`` command: a thin typer layer over mab's typed API.

This is the only module that prints final summaries or exits. Errors are printed as one
line (plus a hint) with exit code 2 for configuration problems and 1 for build, publish
and verify failures; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.text import Text

from mab import __version__
from mab.config import DEFAULT_REGISTRY, Project, json_schema, load_project
from mab.console import console, live_display
from mab.errors import ConfigError, MabError
from mab.plan import Plan, make_plan
from mab.results import RunReport

app = typer.Typer(
    name="mab",
    help="Build one image for many CPU architectures from a declarative builds.yaml: "
    "plan, render, build with buildx, push, assemble the image index, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

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
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="Also write the results as JSON to this file.")
]


def _fail(error: MabError, debug: bool) -> NoReturn:
    if debug:
        console.print(Text("".join(traceback.format_exception(error)), style="dim"))
    if isinstance(error, ConfigError):
        for issue in error.issues:
            console.print(Text(f"error: {issue}", style="bold red"))
    else:
        console.print(Text(f"error: {error.message}", style="bold red"))
    if error.hint:
        console.print(Text(error.hint, style="yellow"))
    raise typer.Exit(error.exit_code)


def _guard(debug: bool, action: Callable[[], T]) -> T:
    try:
        return action()
    except MabError as error:
        _fail(error, debug)
    except KeyboardInterrupt:
        console.print(Text("interrupted: no tag was written for unfinished targets", style="red"))
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as error:  # an mab bug or an unexpected engine answer
        if debug:
            console.print(Text("".join(traceback.format_exception(error)), style="dim"))
        console.print(Text(f"internal error: {type(error).__name__}: {error}", style="bold red"))
        console.print(Text("rerun with --debug for the traceback", style="yellow"))
        raise typer.Exit(1) from None


def _load(
    file: Path, targets: list[str] | None, platforms: list[str] | None
) -> tuple[Project, Plan]:
    project = load_project(file)
    default = os.environ.get("MAB_DEFAULT_REGISTRY") or DEFAULT_REGISTRY
    return project, make_plan(project, targets or (), platforms or (), default_registry=default)


def _write_report(report: RunReport, path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(Text(f"report written to {path}", style="dim"))


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"mab {__version__}\n")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """mab: multi-architecture image builds from builds.yaml."""


@app.command()
def plan(
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    platform: PlatformOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show the work a build would do, target x platform, with tags and Dockerfile source.

    Touches no engine and no registry.
    """
    from mab.report import plan_table

    _, the_plan = _guard(debug, lambda: _load(file, target, platform))
    if as_json:
        sys.stdout.write(json.dumps(the_plan.to_dict(), indent=2) + "\n")
    else:
        console.print(plan_table(the_plan))


@app.command()
def render(
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write TARGET.Dockerfile files into this folder."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Render the Dockerfiles of template targets (to stdout, or into --out DIR)."""
    from mab.render import render_target

    def work() -> list[tuple[str, str]]:
        _, the_plan = _load(file, target, None)
        rendered = [(t.name, render_target(t)) for t in the_plan.targets]
        return [(name, text) for name, text in rendered if text is not None]

    rendered = _guard(debug, work)
    if not rendered:
        console.print("no template targets selected: hand-written Dockerfiles need no rendering")
        return
    if out is None:
        for name, text in rendered:
            if len(rendered) > 1:
                sys.stdout.write(f"# ---- {name}.Dockerfile ----\n")
            sys.stdout.write(text)
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered:
        path = out / f"{name}.Dockerfile"
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")


@app.command()
def build(
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    platform: PlatformOpt = None,
    report: ReportOpt = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print every build log line.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not use BuildKit's build cache.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Build every target for every platform, push, write the image index under each tag,
    and verify what the registry serves. Exit 1 if any target was not published."""
    from mab.engine import Engine
    from mab.pipeline import run_build
    from mab.progress import ConsoleReporter
    from mab.report import run_table

    _, the_plan = _guard(debug, lambda: _load(file, target, platform))

    def work() -> RunReport:
        with ConsoleReporter(console, the_plan, live=live_display(), verbose=verbose) as reporter:
            return run_build(the_plan, Engine(), reporter, no_cache=no_cache)

    result = _guard(debug, work)
    console.print(run_table(result))
    _summarise(result)
    _write_report(result, report)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def verify(
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    report: ReportOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check, without building, that every tag of each target is one image index with
    exactly the declared platforms. Exit 1 if any is not."""
    from mab.engine import Engine
    from mab.pipeline import run_verify
    from mab.report import run_table

    _, the_plan = _guard(debug, lambda: _load(file, target, None))
    result = _guard(debug, lambda: run_verify(the_plan, Engine()))
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        console.print(run_table(result))
        _summarise(result)
    _write_report(result, report)
    if not result.ok:
        raise typer.Exit(1)


def _summarise(result: RunReport) -> None:
    for t in result.targets:
        if t.ok and t.index_digest:
            console.print(
                Text(
                    f"{t.name}: {t.status} {t.repository} {', '.join(t.tags)} -> {t.index_digest}",
                    style="green",
                )
            )
        elif t.ok:
            console.print(Text(f"{t.name}: {t.status}: {t.error}", style="yellow"))
        else:
            console.print(Text(f"{t.name}: {t.status}: {t.error}", style="bold red"))
    published = sum(1 for t in result.targets if t.ok)
    console.print(
        Text(
            f"{published} of {len(result.targets)} targets ok in {result.duration:.1f}s",
            style="bold green" if result.ok else "bold red",
        )
    )


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of builds.yaml, for editors to complete and check it.

    With the YAML language server, start builds.yaml with
    '# yaml-language-server: $schema=builds.schema.json'.
    """
    text = json.dumps(json_schema(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
