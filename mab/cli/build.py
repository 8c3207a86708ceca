"""The commands of the main job: plan, tags, render, build, merge, verify, promote, schema.

Each parses its options, calls ``mab.api`` and formats the result: tables and JSON on
stdout, progress and summaries on stderr. ``mab.cli.main`` registers them, guarded.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from mab import api, proc
from mab.cli.console import err, live_display, out
from mab.cli.options import (
    EnvOpt,
    FileOpt,
    ForceOpt,
    JsonOpt,
    OutOpt,
    PlatformOpt,
    ReportOpt,
    TargetOpt,
    VersionOpt,
)
from mab.cli.progress import ConsoleReporter, LogGroups
from mab.cli.report import TABLE_ROWS, markdown_summary, plan_table, run_table
from mab.config.models import json_schema
from mab.errors import UsageError
from mab.pipeline.results import PlatformResult, RunReport, TargetResult
from mab.planning.plan import Job
from mab.secrets import redact

DEFAULT_FILE = Path("builds.yaml")


def load(
    file: Path,
    targets: Sequence[str] = (),
    platforms: Sequence[str] = (),
    *,
    version: str | None = None,
    env: str | None = None,
    require_tags: bool = True,
) -> api.Loaded:
    """``api.load``, then builds.yaml's warnings and the tag rules' notes on stderr."""
    loaded = api.load(file, targets, platforms, version=version, env=env, require_tags=require_tags)
    for line in loaded.notices:
        err.print(Text(redact(line), style="yellow"))
    return loaded


def write_json(data: object) -> None:
    """Indented for a person at a terminal; compact into a pipe or file (the C encoder: a
    2,000-target plan in a tenth of the time)."""
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(data, indent=indent) + "\n")


def write_file(path: Path, text: str) -> None:
    """Write an output file the user named; its folder must exist (an OSError becomes one
    line in the guard)."""
    path.write_text(text, encoding="utf-8")


def _write_report(report: RunReport, path: Path | None) -> None:
    if path is not None:
        write_file(path, json.dumps(report.to_dict(), indent=2) + "\n")
        err.print(Text(f"report written to {path}", style="dim"))


def plan(
    file: FileOpt = DEFAULT_FILE,
    target: TargetOpt = None,
    platform: PlatformOpt = None,
    version: VersionOpt = None,
    env: EnvOpt = None,
    as_json: JsonOpt = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Also say which targets a build would skip as unchanged, and why (reads "
            "the registry and the build contexts; still no engine).",
        ),
    ] = False,
) -> None:
    """Show the work a build would do, target x platform, with tags and Dockerfile source.

    Touches no engine, and no registry unless --check.
    """
    loaded = load(file, target or (), platform or (), version=version, env=env)
    verdicts = api.check(loaded, _Quiet()) if check else {}
    if as_json:
        data = loaded.plan.to_dict()
        if check:
            data["check"] = {
                name: {"unchanged": v.unchanged, "why": v.why} for name, v in verdicts.items()
            }
        write_json(data)
        return
    out.print(plan_table(loaded.plan))
    for name, verdict in verdicts.items():
        word = "unchanged, would be skipped" if verdict.unchanged else "would be built"
        out.print(
            Text(f"{name}: {word}: {verdict.why}", style="green" if verdict.unchanged else "")
        )


class _Quiet:
    """A Reporter for a command that builds nothing: notes go to stderr, nothing else."""

    def notice(self, message: str) -> None:
        err.print(Text(redact(message), style="dim"))

    def warning(self, message: str) -> None:
        err.print(Text(f"warning: {redact(message)}", style="yellow"))

    def job_started(self, job: Job) -> None:
        pass

    def job_log(self, job: Job, line: str) -> None:
        pass

    def job_finished(self, job: Job, result: PlatformResult) -> None:
        pass

    def target_finished(self, result: TargetResult) -> None:
        pass


def tags(
    file: FileOpt = DEFAULT_FILE,
    target: TargetOpt = None,
    version: VersionOpt = None,
    env: EnvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the tags a run would produce and the rule behind each. Touches no engine.

    Floating tags marked "if highest" move only when this version is the highest of
    their line among the tags already in the registry.
    """
    loaded = load(file, target or (), version=version, env=env)
    rows = [(t.name, tag) for t in loaded.plan.targets for tag in t.tags]
    if as_json:
        write_json([{"target": n, "tag": g.name, "kind": g.kind, "rule": g.rule} for n, g in rows])
        return
    table = Table(title="tags", title_justify="left")
    for column in ("target", "tag", "kind", "rule"):
        table.add_column(column)
    for name, tag in rows[:TABLE_ROWS]:
        table.add_row(name, tag.name, tag.kind, tag.rule)
    if len(rows) > TABLE_ROWS:
        table.add_row(f"... {len(rows) - TABLE_ROWS} more tags", "", "", "(mab tags --json)")
    out.print(table)


def render(
    file: FileOpt = DEFAULT_FILE,
    target: TargetOpt = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="PATH",
            help="Write TARGET.Dockerfile files into this folder.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Render the Dockerfiles of template targets (to stdout, or into --out DIR)."""
    rendered = api.rendered(load(file, target or ()))
    if not rendered:
        err.print("no template targets selected: hand-written Dockerfiles need no rendering")
        return
    if out_dir is None:
        for name, text in rendered:
            if len(rendered) > 1:
                sys.stdout.write(f"# ---- {name}.Dockerfile ----\n")
            sys.stdout.write(text)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in rendered:
        path = out_dir / f"{name}.Dockerfile"
        write_file(path, text)
        err.print(f"wrote {path}")


def build(
    file: FileOpt = DEFAULT_FILE,
    target: TargetOpt = None,
    platform: PlatformOpt = None,
    report: ReportOpt = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Print every build log line, and every command mab runs.",
            show_default=False,
        ),
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not use BuildKit's build cache.")
    ] = False,
    cache_from: Annotated[
        list[str] | None,
        typer.Option(
            "--cache-from",
            metavar="SPEC",
            help="buildx cache source (type=...,key=value), replacing builds.yaml's cache "
            "(repeatable); e.g. type=gha,scope=api-linux-arm64.",
            show_default=False,
        ),
    ] = None,
    cache_to: Annotated[
        str | None,
        typer.Option(
            "--cache-to",
            metavar="SPEC",
            help="buildx cache export, replacing builds.yaml's cache.",
            show_default=False,
        ),
    ] = None,
    builder: Annotated[
        str | None,
        typer.Option(
            "--builder",
            metavar="NAME",
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
    load_local: Annotated[
        bool,
        typer.Option(
            "--load",
            help="Build for one platform (the engine's own, or the one --platform names, "
            "under QEMU if foreign) and load the images into the local engine's image store "
            "under their planned tags, to run and test them; push nothing.",
        ),
    ] = False,
    digests_out: Annotated[
        Path | None,
        typer.Option(
            "--digests-out",
            metavar="DIR",
            help="Write one TARGET@PLATFORM.json digest file per image here, for `mab merge`.",
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Build every target, even one whose published index already has this "
            "run's inputs (by default such a target is skipped as unchanged).",
        ),
    ] = False,
    version: VersionOpt = None,
    env: EnvOpt = None,
) -> None:
    """Build every target for every platform, push, write the image index under each tag,
    and verify what the registry serves. Exit 1 if any target was not published.

    With --load: build for one platform and load the images into the local image store
    (REGISTRY/TARGET:TAG, as planned) instead; `mab run TARGET` runs them."""
    if verbose:
        proc.set_echo(lambda line: err.print(Text(line, style="dim")))
    if load_local:
        if push_by_digest or digests_out is not None:
            raise UsageError(
                "--load loads the images into the local image store; --push-by-digest and "
                "--digests-out push them: choose one"
            )
        _build_load(
            file,
            target or (),
            platform or (),
            report,
            verbose=verbose,
            no_cache=no_cache,
            cache_from=cache_from,
            cache_to=cache_to,
            builder=builder,
            version=version,
            env=env,
        )
        return
    loaded = load(file, target or (), platform or (), version=version, env=env)
    loaded = api.Loaded(
        loaded.project,
        api.with_options(loaded.plan, cache_from=cache_from, cache_to=cache_to, builder=builder),
    )
    reporter = ConsoleReporter(
        err,
        loaded.plan,
        live=live_display(),
        verbose=verbose,
        groups=LogGroups.for_environment(),
    )
    with reporter:
        result = api.build(
            loaded,
            None,  # started only when a target must be built
            reporter,
            no_cache=no_cache,
            by_digest_only=push_by_digest,
            force=force,
            rebuild=rebuild,
            on_login=lambda host: err.print(Text(f"logged in to {host}", style="dim")),
        )
    _finish(result, report)
    if digests_out is not None:
        for path in api.write_digests(result, digests_out):
            err.print(Text(f"wrote {path}", style="dim"))
    if not result.ok:
        raise typer.Exit(1)


def merge(
    digests_dir: Annotated[
        Path,
        typer.Option(
            "--digests",
            metavar="DIR",
            help="Folder with the TARGET@PLATFORM.json files of the split build's jobs.",
            show_default=False,
        ),
    ],
    file: FileOpt = DEFAULT_FILE,
    target: TargetOpt = None,
    report: ReportOpt = None,
    summary: Annotated[
        Path | None,
        typer.Option(
            "--summary",
            metavar="FILE",
            help="Append a Markdown summary here ($GITHUB_STEP_SUMMARY).",
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
    version: VersionOpt = None,
    env: EnvOpt = None,
) -> None:
    """Publish the images of a split build: assemble each target's index from the digest
    files, verify it and write its tags, with the same safe publishing as `mab build`."""
    loaded = load(file, target or (), version=version, env=env)
    engine = api.docker_engine()
    for host in api.login(loaded, engine):
        err.print(Text(f"logged in to {host}", style="dim"))
    with ConsoleReporter(err, loaded.plan, live=False) as reporter:
        result = api.merge(loaded, digests_dir, engine, reporter, force=force)
    _finish(result, report)
    if summary is not None:
        with summary.open("a", encoding="utf-8") as handle:
            handle.write(markdown_summary(result))
    if not result.ok:
        raise typer.Exit(1)


def verify(
    file: FileOpt = DEFAULT_FILE,
    target: TargetOpt = None,
    report: ReportOpt = None,
    version: VersionOpt = None,
    env: EnvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check, without building, that every tag of each target is one image index with
    exactly the declared platforms. Exit 1 if any is not."""
    loaded = load(file, target or (), version=version, env=env)
    result = api.verify(loaded, api.docker_engine())
    if as_json:
        write_json(result.to_dict())
        _write_report(result, report)
    else:
        _finish(result, report)
    if not result.ok:
        raise typer.Exit(1)


def _finish(result: RunReport, report: Path | None) -> None:
    """The results table on stdout, the one-line account per target on stderr."""
    out.print(run_table(result))
    _summarise(result)
    _write_report(result, report)


def _summarise(result: RunReport) -> None:
    for t in result.targets:
        for tag, why in t.held.items():
            err.print(Text(f"{t.name}: {tag} not moved: {why}", style="yellow"))
        if t.ok and t.index_digest:
            err.print(
                Text(
                    f"{t.name}: {t.status} {t.repository} {', '.join(t.tags)} -> {t.index_digest}",
                    style="green",
                )
            )
        elif t.ok:
            err.print(Text(f"{t.name}: {t.status}: {t.error}", style="yellow"))
        else:
            err.print(Text(f"{t.name}: {t.status}: {t.error}", style="bold red"))
    published = sum(1 for t in result.targets if t.ok)
    err.print(
        Text(
            f"{published} of {len(result.targets)} targets ok in {result.duration:.1f}s",
            style="bold green" if result.ok else "bold red",
        )
    )


def promote(
    target: Annotated[
        str, typer.Argument(metavar="TARGET", help="The target whose image index to promote.")
    ],
    source: Annotated[
        str,
        typer.Option(
            "--from", metavar="REF", help="Tag or sha256: digest to promote.", show_default=False
        ),
    ],
    to: Annotated[
        list[str],
        typer.Option("--to", metavar="TAG", help="New tag (repeatable).", show_default=False),
    ],
    to_registry: Annotated[
        str | None,
        typer.Option(
            "--to-registry",
            metavar="HOST[/PATH]",
            help="Copy into this registry (HOST or HOST/PATH) instead.",
            show_default=False,
        ),
    ] = None,
    file: FileOpt = DEFAULT_FILE,
) -> None:
    """Give a published index new tags without rebuilding (e.g. --from staging --to
    production), optionally in another registry; verified like a build."""
    loaded = load(file, [target], require_tags=False)  # --to names the tags
    done = api.promote(loaded, source, to, api.docker_engine(), to_registry=to_registry)
    for ref in done.refs:
        out.print(Text(f"{ref} -> {done.digest}", style="green"))
    if done.digest_kept:
        err.print(Text(f"digest kept: {done.source_digest} (from {done.source_ref})"))
    else:
        err.print(
            Text(
                f"the destination changed the digest: {done.source_digest} -> {done.digest}",
                style="yellow",
            )
        )
    if done.signatures:
        err.print(Text(f"copied {len(done.signatures)} signature/attestation tags with it"))
    if done.verified_signatures:
        err.print(Text("signatures verified at the destination", style="green"))


def schema(out_file: OutOpt = None) -> None:
    """Print the JSON Schema of builds.yaml, for editors to complete and check it.

    With the YAML language server, start builds.yaml with
    '# yaml-language-server: $schema=builds.schema.json'.
    """
    text = json.dumps(json_schema(), indent=2) + "\n"
    if out_file is None:
        sys.stdout.write(text)
    else:
        write_file(out_file, text)
        err.print(f"wrote {out_file}")


def _build_load(
    file: Path,
    targets: Sequence[str],
    platforms: Sequence[str],
    report: Path | None,
    *,
    verbose: bool,
    no_cache: bool,
    cache_from: list[str] | None,
    cache_to: str | None,
    builder: str | None,
    version: str | None,
    env: str | None,
) -> None:
    """``mab build --load``: one platform, loaded into the local image store; each image
    ref on stdout, one a line."""
    if len(platforms) > 1:
        raise UsageError(
            f"--load builds one platform, but --platform names {len(platforms)} "
            f"({', '.join(platforms)})",
            hint="load one at a time (an image store tag holds one platform's image): "
            f"mab build --load --platform {platforms[0]}",
        )
    engine = api.docker_engine()
    chosen = platforms[0] if platforms else api.host_platform(engine)
    loaded = load(file, targets, [chosen], version=version, env=env)
    loaded = api.Loaded(
        loaded.project,
        api.with_options(loaded.plan, cache_from=cache_from, cache_to=cache_to, builder=builder),
    )
    reporter = ConsoleReporter(
        err, loaded.plan, live=live_display(), verbose=verbose, groups=LogGroups.for_environment()
    )
    with reporter:
        result = api.load_images(loaded, engine, reporter, no_cache=no_cache)
    for image in result.loaded:
        for ref in image.refs:
            sys.stdout.write(f"{ref}\n")
    if report is not None:
        write_file(report, json.dumps(result.to_dict(), indent=2) + "\n")
        err.print(Text(f"report written to {report}", style="dim"))
    if result.dropped_cache:
        err.print(
            Text(
                "the build cache was read but not exported (the export writes outside this "
                "machine, and --load pushes nothing)",
                style="dim",
            )
        )
    for failed in result.failed:
        err.print(Text(f"{failed.target} {failed.platform}: {failed.error}", style="bold red"))
    images = len(result.loaded)
    err.print(
        Text(
            f"loaded {images} image{'s' if images != 1 else ''} for {chosen} into the local "
            f"image store in {result.duration:.1f}s; nothing was pushed",
            style="bold green" if result.ok else "bold red",
        )
    )
    if not result.ok:
        raise typer.Exit(1)
