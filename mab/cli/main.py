"""The ``mab`` command: a thin typer layer over mab's typed API.

This is the only module that prints final summaries or exits. Errors are printed as one
line (plus a hint) with exit code 2 for configuration problems and 1 for build, publish
and verify failures; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from mab import __version__
from mab.cli.builders import app as builders_app
from mab.cli.ci import ci_app
from mab.cli.console import console, live_display
from mab.cli.guard import guard as _guard
from mab.cli.init import init as init_command
from mab.cli.lint import lint as lint_command
from mab.cli.registry import clean, login, logout, registry_app
from mab.config.models import DEFAULT_REGISTRY, Project, json_schema, load_project
from mab.pipeline.results import RunReport
from mab.planning import git as gitinfo
from mab.planning.plan import Plan, make_plan
from mab.planning.tags import TagContext

if TYPE_CHECKING:
    from mab.engine.whales import Engine

app = typer.Typer(
    name="mab",
    help="Build one image for many CPU architectures from a declarative builds.yaml: "
    "plan, render, build with buildx, push, assemble the image index, verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="Also write the results as JSON to this file.")
]


def _context(project: Project, version: str | None, env: str | None) -> TagContext:
    """Everything tag rules and labels read, read once for the whole run."""
    git = gitinfo.read(project.base_dir)
    sde = os.environ.get("SOURCE_DATE_EPOCH", "")
    epoch = int(sde) if sde.isdigit() else (git.commit_time if git and git.commit_time else None)
    return TagContext(
        now=datetime.now(UTC),
        version=version or os.environ.get("MAB_VERSION") or None,
        environment=env or os.environ.get("MAB_ENV") or None,
        git=git,
        project_dir=project.base_dir,
        source_date_epoch=epoch,
    )


def _load(
    file: Path,
    targets: list[str] | None,
    platforms: list[str] | None,
    version: str | None = None,
    env: str | None = None,
) -> tuple[Project, Plan]:
    project = load_project(file)
    default = os.environ.get("MAB_DEFAULT_REGISTRY") or DEFAULT_REGISTRY
    context = _context(project, version, env)
    plan = make_plan(
        project, targets or (), platforms or (), default_registry=default, context=context
    )
    return project, plan


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
    version: VersionOpt = None,
    env: EnvOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show the work a build would do, target x platform, with tags and Dockerfile source.

    Touches no engine and no registry.
    """
    from mab.cli.report import plan_table

    _, the_plan = _guard(debug, lambda: _load(file, target, platform, version, env))
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
    from mab.planning.render import render_target

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
    cache_from: Annotated[
        list[str] | None,
        typer.Option(
            "--cache-from",
            help="buildx cache source (type=...,key=value), replacing builds.yaml's cache "
            "(repeatable); e.g. type=gha,scope=api-linux-arm64.",
            show_default=False,
        ),
    ] = None,
    cache_to: Annotated[
        str | None,
        typer.Option(
            "--cache-to",
            help="buildx cache export, replacing builds.yaml's cache.",
            show_default=False,
        ),
    ] = None,
    builder: Annotated[
        str | None,
        typer.Option(
            "--builder",
            help="Build every platform with this buildx builder ('current': the current "
            "one), instead of builds.yaml's builder/builders routing; e.g. on CI runners.",
            show_default=False,
        ),
    ] = None,
    push_by_digest: Annotated[
        bool,
        typer.Option(
            "--push-by-digest",
            help="Push the platform images by digest only and write no tag: one job of a "
            "split build (one CI job per platform); `mab merge` publishes.",
        ),
    ] = False,
    digests_out: Annotated[
        Path | None,
        typer.Option(
            "--digests-out",
            help="Write one TARGET@PLATFORM.json digest file per image here, for `mab merge`.",
        ),
    ] = None,
    version: VersionOpt = None,
    env: EnvOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Build every target for every platform, push, write the image index under each tag,
    and verify what the registry serves. Exit 1 if any target was not published."""
    from mab.cli.progress import ConsoleReporter
    from mab.cli.report import run_table
    from mab.engine.whales import Engine
    from mab.pipeline.build import run_build

    project, the_plan = _guard(debug, lambda: _load(file, target, platform, version, env))
    if cache_from is not None or cache_to is not None:
        the_plan = _guard(debug, lambda: _with_cache(the_plan, cache_from or [], cache_to))
    if builder is not None:
        the_plan = the_plan.with_builder(None if builder == "current" else builder)

    def work() -> RunReport:
        engine = Engine()
        _login(project, the_plan, engine)
        with ConsoleReporter(console, the_plan, live=live_display(), verbose=verbose) as reporter:
            return run_build(
                the_plan, engine, reporter, no_cache=no_cache, by_digest_only=push_by_digest
            )

    result = _guard(debug, work)
    console.print(run_table(result))
    _summarise(result)
    _write_report(result, report)
    if digests_out is not None:
        _write_digests(result, digests_out)
    if not result.ok:
        raise typer.Exit(1)


def _with_cache(plan: Plan, sources: list[str], export: str | None) -> Plan:
    from dataclasses import replace

    from mab.errors import UsageError
    from mab.planning.cache import parse_spec

    try:
        override = (tuple(parse_spec(s) for s in sources), parse_spec(export) if export else None)
    except ValueError as exc:
        raise UsageError(f"--cache-from/--cache-to: {exc}") from None
    return replace(plan, cache_override=override)


def _login(project: Project, plan: Plan, engine: Engine) -> None:
    """Log in with builds.yaml's credentials (registries:) before anything is pushed."""
    from mab.registry.credentials import login_for_build

    for host in login_for_build(project.config, [plan.registry_host], engine):
        console.print(Text(f"logged in to {host}", style="dim"))


def _write_digests(result: RunReport, folder: Path) -> None:
    from mab.pipeline import digests

    records = [
        digests.DigestRecord(t.name, p.platform, t.repository, p.pushed_digest)
        for t in result.targets
        for p in t.platforms
        if p.pushed_digest
    ]
    for path in digests.write(records, folder):
        console.print(Text(f"wrote {path}", style="dim"))


@app.command()
def merge(
    digests_dir: Annotated[
        Path,
        typer.Option(
            "--digests",
            help="Folder with the TARGET@PLATFORM.json files of the split build's jobs.",
            show_default=False,
        ),
    ],
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    report: ReportOpt = None,
    summary: Annotated[
        Path | None,
        typer.Option("--summary", help="Append a Markdown summary here ($GITHUB_STEP_SUMMARY)."),
    ] = None,
    version: VersionOpt = None,
    env: EnvOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Publish the images of a split build: assemble each target's index from the digest
    files, verify it and write its tags, with the same safe publishing as `mab build`."""
    from mab.cli.progress import ConsoleReporter
    from mab.cli.report import markdown_summary, run_table
    from mab.engine.whales import Engine
    from mab.pipeline import digests
    from mab.pipeline.build import run_merge

    project, the_plan = _guard(debug, lambda: _load(file, target, None, version, env))
    records = _guard(debug, lambda: digests.read(digests_dir))

    def work() -> RunReport:
        engine = Engine()
        _login(project, the_plan, engine)
        with ConsoleReporter(console, the_plan, live=False) as reporter:
            return run_merge(the_plan, engine, records, reporter)

    result = _guard(debug, work)
    console.print(run_table(result))
    _summarise(result)
    _write_report(result, report)
    if summary is not None:
        with summary.open("a", encoding="utf-8") as handle:
            handle.write(markdown_summary(result))
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def verify(
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    report: ReportOpt = None,
    version: VersionOpt = None,
    env: EnvOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check, without building, that every tag of each target is one image index with
    exactly the declared platforms. Exit 1 if any is not."""
    from mab.cli.report import run_table
    from mab.engine.whales import Engine
    from mab.pipeline.build import run_verify

    _, the_plan = _guard(debug, lambda: _load(file, target, None, version, env))
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
        for tag, why in t.held.items():
            console.print(Text(f"{t.name}: {tag} not moved: {why}", style="yellow"))
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
def tags(
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    version: VersionOpt = None,
    env: EnvOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show the tags a run would produce and the rule behind each. Touches no engine.

    Floating tags marked "if highest" move only when this version is the highest of
    their line among the tags already in the registry.
    """
    from rich.table import Table

    _, the_plan = _guard(debug, lambda: _load(file, target, None, version, env))
    rows = [(t.name, tag) for t in the_plan.targets for tag in t.tags]
    if as_json:
        data = [{"target": n, "tag": g.name, "kind": g.kind, "rule": g.rule} for n, g in rows]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table(title="tags", title_justify="left")
    for column in ("target", "tag", "kind", "rule"):
        table.add_column(column)
    for name, tag in rows:
        table.add_row(name, tag.name, tag.kind, tag.rule)
    console.print(table)


@app.command()
def promote(
    target: Annotated[str, typer.Argument(help="The target whose image index to promote.")],
    source: Annotated[
        str, typer.Option("--from", help="Tag or sha256: digest to promote.", show_default=False)
    ],
    to: Annotated[
        list[str], typer.Option("--to", help="New tag (repeatable).", show_default=False)
    ],
    to_registry: Annotated[
        str | None,
        typer.Option("--to-registry", help="Copy into this registry (HOST[/PATH]) instead."),
    ] = None,
    file: FileOpt = Path("builds.yaml"),
    debug: DebugOpt = False,
) -> None:
    """Give a published index new tags without rebuilding (e.g. --from staging --to
    production), optionally in another registry; verified like a build."""
    from mab.engine.whales import Engine
    from mab.pipeline.promote import promote as run_promote

    _, the_plan = _guard(debug, lambda: _load(file, [target], None))
    done = _guard(
        debug,
        lambda: run_promote(Engine(), the_plan.targets[0], source, to, to_registry=to_registry),
    )
    for ref in done.refs:
        console.print(Text(f"{ref} -> {done.digest}", style="green"))
    if done.digest_kept:
        console.print(Text(f"digest kept: {done.source_digest} (from {done.source_ref})"))
    else:
        console.print(
            Text(
                f"the destination changed the digest: {done.source_digest} -> {done.digest}",
                style="yellow",
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


# Registry commands (mab/registry_cli.py): login, logout, clean and the registry sub-app.
app.command()(login)
app.command()(logout)
app.command()(clean)
app.add_typer(registry_app, name="registry")


app.add_typer(builders_app, name="builders")
app.add_typer(ci_app, name="ci")

# Project generator and Dockerfile checks (mab/init_cli.py, mab/lint_cli.py).
app.command(name="init")(init_command)
app.command(name="lint")(lint_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
