"""``mab ci matrix`` and ``mab ci generate github|gitlab``: a typer sub-app (mab.cli.main
registers it). The generation itself is pure (mab.ci.generate); this layer finds the files, writes
and prints: JSON on stdout, messages on stderr through the one console."""

from __future__ import annotations

import json
import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from mab.ci import generate as ci
from mab.cli.console import err
from mab.cli.guard import command
from mab.cli.options import FileOpt, TargetOpt, sub_app
from mab.config.defaults import default_registry
from mab.config.project import Project, load_project
from mab.errors import UsageError

ci_app = sub_app(
    "ci",
    "Split builds in CI: the build matrix as JSON, and GitHub Actions or GitLab CI "
    "files with a build job per platform and a merge job.",
)


class PerChoice(StrEnum):
    platform = "platform"
    target_platform = "target-platform"


class ProviderChoice(StrEnum):
    github = "github"
    gitlab = "gitlab"


def repository_root(path: Path) -> Path:
    """The git work tree holding *path* (CI jobs start there), else *path*'s folder."""
    start = path.resolve().parent
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def _registry(project: Project) -> str:
    return project.config.registry or default_registry()


@command(ci_app)
def matrix(
    per: Annotated[
        PerChoice,
        typer.Option(
            "--per",
            metavar="FILE",
            help="One entry per platform (with the targets that declare it), or one per "
            "target x platform.",
        ),
    ] = PerChoice.platform,
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    platform: Annotated[
        list[str] | None,
        typer.Option(
            "--platform",
            "-p",
            metavar="OS/ARCH",
            help="Only this platform (repeatable).",
            show_default=False,
        ),
    ] = None,
    pretty: Annotated[bool, typer.Option("--pretty", help="Indent the JSON.")] = False,
) -> None:
    """Print the build matrix as JSON on stdout, for strategy.matrix.include.

    A list that GitHub's fromJSON takes as it is, on one line unless --pretty.

    Each entry: id, name, platform, slug, targets, runner (ci.runners), qemu (whether the
    runner needs QEMU for the platform) and artifact (the digest artifact's name).
    """

    project = load_project(file)
    entries = ci.matrix(project.config, per.value, target or (), platform or ())
    data = ci.matrix_json(entries)
    if pretty:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def _regenerate(
    provider: ci.Provider, file: str, out: Path | None, root: Path, target: list[str]
) -> str:
    """The command that writes the file again, run from the repository root."""
    words = ["mab", "ci", "generate", provider]
    if file != "builds.yaml":
        words += ["-f", file]
    if out is not None and str(out) != "-":
        try:
            shown = out.resolve().relative_to(root).as_posix()
        except ValueError:
            shown = str(out)
        if shown != ci.DEFAULT_PATHS[provider]:
            words += ["--out", shown]
    for name in target:
        words += ["--target", name]
    return shlex.join([*words, "--force"])


@command(ci_app)
def generate(
    provider: Annotated[
        ProviderChoice,
        typer.Argument(
            metavar="PROVIDER", help="github (Actions workflow) or gitlab (.gitlab-ci.yml)."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="PATH",
            help="Where to write ('-' for stdout). Default: .github/workflows/mab.yml or "
            ".gitlab-ci.yml at the top of the git work tree holding builds.yaml.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the file if it exists and differs.")
    ] = False,
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
) -> None:
    """Write a GitHub Actions workflow or a .gitlab-ci.yml that runs mab.

    A build job per platform on its runner (QEMU only where the runner is not native)
    pushes by digest; then a merge job assembles, verifies and tags the image indexes.
    Configured by builds.yaml's ci: section; registry credentials come from the CI
    secrets its registries: section names. An existing file is replaced only with --force.
    """
    kind: ci.Provider = "github" if provider is ProviderChoice.github else "gitlab"

    def work() -> tuple[ci.Generated, Path | None, bool]:
        project = load_project(file)
        root = repository_root(project.path)
        relative = project.path.resolve().relative_to(root).as_posix()
        options = ci.Options(
            file=relative,
            registry=_registry(project),
            targets=tuple(target or ()),
            command=_regenerate(kind, relative, out, root, target or []),
            current_builder=bool(project.config.builders),
        )
        result = ci.generate(kind, project, options)
        if out is not None and str(out) == "-":
            return result, None, False
        path = out if out is not None else root / ci.DEFAULT_PATHS[kind]
        if path.is_file() and path.read_text(encoding="utf-8") == result.text:
            return result, path, False
        if path.exists() and not force:
            raise UsageError(
                f"{path} exists and differs from what mab would write; it is not overwritten",
                hint="pass --force to replace it, or --out to write elsewhere",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.text, encoding="utf-8")
        return result, path, True

    result, path, written = work()
    for note in result.notes:
        err.print(Text(f"note: {note}", style="yellow"))
    if path is None:
        sys.stdout.write(result.text)
        return
    jobs = ", ".join(str(e.platform) for e in result.jobs)
    what = "wrote" if written else "up to date:"
    err.print(Text(f"{what} {path} (build jobs for {jobs}, then merge)", style="green"))
