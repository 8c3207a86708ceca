"""Where Dockerfile templates are found.

Built-in templates live in the repository's top-level ``templates/`` folder; the wheel
carries the same files as ``mab/templates``. A project can add or override templates
with a ``templates/`` folder beside its builds.yaml, or name a ``.j2`` file by path.
"""

from __future__ import annotations

from pathlib import Path

SUFFIX = ".Dockerfile.j2"


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


def find_template(name: str, project_dir: Path) -> Path | None:
    """Resolve a ``template:`` value to a file, or None when there is no such template."""
    if is_path_like(name):
        candidate = project_dir / name
        return candidate if candidate.is_file() else None
    for directory in search_dirs(project_dir):
        candidate = directory / f"{name}{SUFFIX}"
        if candidate.is_file():
            return candidate
    return None


def available(project_dir: Path) -> list[str]:
    names = {p.name[: -len(SUFFIX)] for d in search_dirs(project_dir) for p in d.glob(f"*{SUFFIX}")}
    return sorted(names)
