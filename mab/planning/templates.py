"""Where Dockerfile templates are found.

Built-in templates live in the repository's top-level ``templates/`` folder; the wheel
carries the same files as ``mab/templates``. A project can add or override templates
with a ``templates/`` folder beside its builds.yaml, or name a ``.j2`` file by path.

A template is read and its text printed by ``mab render``, so ``template:`` reaches only
mab's own templates and files inside the project folder (the folder of builds.yaml, after
resolving ``..`` and symlinks). builds.yaml's ``allow_external_templates: true`` lifts
that for a project that keeps its templates elsewhere.
"""

from __future__ import annotations

from pathlib import Path

SUFFIX = ".Dockerfile.j2"


class TemplateRefused(ValueError):
    """A ``template:`` value mab will not read; the message says why and what to write."""


def builtin_dir() -> Path:
    package = Path(__file__).resolve().parents[1]  # mab/
    packaged = package / "templates"  # in the wheel
    if packaged.is_dir():
        return packaged
    return package.parent / "templates"  # in a source checkout


def search_dirs(project_dir: Path) -> list[Path]:
    dirs = [project_dir / "templates", builtin_dir()]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def is_path_like(name: str) -> bool:
    return "/" in name or name.endswith(".j2")


def find_template(name: str, project_dir: Path, *, allow_external: bool = False) -> Path | None:
    """Resolve a ``template:`` value to a file, or None when there is no such template.

    Raise TemplateRefused for a path that is not a ``.j2`` file, or (unless
    *allow_external*) one outside *project_dir*."""
    if is_path_like(name):
        return _template_path(name, project_dir, allow_external)
    for directory in search_dirs(project_dir):
        candidate = directory / f"{name}{SUFFIX}"
        if candidate.is_file():
            if not allow_external:
                _confine(candidate, project_dir, f"template '{name}' ({candidate})")
            return candidate
    return None


def _template_path(name: str, project_dir: Path, allow_external: bool) -> Path | None:
    if not name.endswith(".j2"):
        raise TemplateRefused(
            f"'{name}' is not a .j2 file: a template path names a Jinja2 template "
            f"(NAME{SUFFIX}); for a plain Dockerfile write dockerfile: instead"
        )
    candidate = project_dir / name
    if not allow_external:
        if Path(name).is_absolute():
            raise TemplateRefused(
                f"template '{name}' is an absolute path: write it relative to the folder of "
                "builds.yaml, or set allow_external_templates: true to read templates from "
                "elsewhere"
            )
        _confine(candidate, project_dir, f"template '{name}'")
    return candidate if candidate.is_file() else None


def _confine(candidate: Path, project_dir: Path, what: str) -> None:
    """Refuse *candidate* unless it really lives in *project_dir* or among mab's own
    templates (``..`` and symlinks resolved)."""
    root = project_dir.resolve()
    real = candidate.resolve()
    if not (real.is_relative_to(root) or real.is_relative_to(builtin_dir().resolve())):
        raise TemplateRefused(
            f"{what} is outside the folder of builds.yaml ({root}) once '..' and symlinks are "
            "resolved: move it inside, or set allow_external_templates: true"
        )


def available(project_dir: Path) -> list[str]:
    names = {p.name[: -len(SUFFIX)] for d in search_dirs(project_dir) for p in d.glob(f"*{SUFFIX}")}
    return sorted(names)
