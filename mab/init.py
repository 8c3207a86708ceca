"""``mab init``: detect a project's stack and write its builds.yaml and .dockerignore.

Pure apart from reading the project folder: functions return the text; mab.cli.init
writes the files (and refuses to overwrite them without --force).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mab.errors import UsageError

# Stacks in detection order: the first whose files are present wins.
DETECTED_BY: dict[str, str] = {
    "go": "go.mod",
    "rust": "Cargo.toml",
    "python": "pyproject.toml, requirements.txt, uv.lock or poetry.lock",
    "node": "package.json (with package-lock.json, pnpm-lock.yaml or yarn.lock)",
    "static": "index.html (and no package.json)",
    "cpp": "Makefile or CMakeLists.txt",
}
TEMPLATES = tuple(DETECTED_BY)


@dataclass(frozen=True)
class Detection:
    template: str
    reason: str  # the files that decided it
    vars: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class NotDetected(Exception):
    """No template matches the folder's files."""


def target_name(folder: Path) -> str:
    """The folder's name as a valid target name (lowercase, digits, single . _ -)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", folder.resolve().name.lower())
    name = re.sub(r"[._-]*([._-])[._-]*", r"\1", name).strip("._-")
    return name or "app"


def detect(folder: Path, template: str | None = None) -> Detection:
    """The template for *folder* (or the one given) and the vars its files suggest."""
    files = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    name = target_name(folder)
    if template is None:
        template = _detect_template(files)
        if template is None:
            raise NotDetected(str(folder))
    elif template not in TEMPLATES:
        raise NotDetected(template)
    builder = _VARS[template]
    return builder(folder, files, name)


def _detect_template(files: set[str]) -> str | None:
    if "go.mod" in files:
        return "go"
    if "Cargo.toml" in files:
        return "rust"
    if files & {"pyproject.toml", "requirements.txt", "uv.lock", "poetry.lock"}:
        return "python"
    if "package.json" in files:
        return "node"
    if "index.html" in files:
        return "static"
    if files & {"Makefile", "makefile", "GNUmakefile", "CMakeLists.txt"}:
        return "cpp"
    return None


def _go(folder: Path, files: set[str], name: str) -> Detection:
    variables: dict[str, Any] = {}
    notes: list[str] = []
    gomod = folder / "go.mod"
    if gomod.is_file():
        match = re.search(r"^go\s+(\d+\.\d+)", gomod.read_text(encoding="utf-8"), re.M)
        if match:
            variables["go_version"] = match.group(1)
    if "main.go" in files:
        variables["main"] = "."
    else:
        mains = sorted(p.parent for p in (folder / "cmd").glob("*/main.go"))
        if mains:
            variables["main"] = "./" + mains[0].relative_to(folder).as_posix()
        else:
            variables["main"] = "."
            notes.append("no main.go found: set vars.main to the package to build")
    return Detection("go", "go.mod", {"main": variables.pop("main"), **variables}, tuple(notes))


def _rust(folder: Path, files: set[str], name: str) -> Detection:
    variables: dict[str, Any] = {}
    cargo = folder / "Cargo.toml"
    if cargo.is_file():
        try:
            data = tomllib.loads(cargo.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            data = {}
        bins = data.get("bin")
        package = data.get("package", {})
        if isinstance(bins, list) and bins and isinstance(bins[0], dict) and "name" in bins[0]:
            variables["binary"] = str(bins[0]["name"])
        elif isinstance(package, dict) and "name" in package:
            variables["binary"] = str(package["name"])
    return Detection("rust", "Cargo.toml", variables)


def _python(folder: Path, files: set[str], name: str) -> Detection:
    notes: list[str] = []
    if "uv.lock" in files:
        manager, reason = "uv", "uv.lock"
    elif "poetry.lock" in files:
        manager, reason = "poetry", "poetry.lock"
    else:
        manager = "pip"
        reason = "requirements.txt" if "requirements.txt" in files else "pyproject.toml"
        if "requirements.txt" not in files:
            notes.append(
                "no requirements.txt or lock file: the pip template installs "
                "requirements.txt; write one (pip freeze) or lock with uv or poetry"
            )
    script = next((s for s in ("main.py", "app.py", "manage.py") if s in files), None)
    command = ["python", script] if script else ["python", "-m", name.replace("-", "_")]
    if script == "manage.py":
        command = ["python", "manage.py", "runserver", "0.0.0.0:8000"]
    return Detection(
        "python", reason, {"package_manager": manager, "command": command}, tuple(notes)
    )


_LOCKS = (("package-lock.json", "npm"), ("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"))


def _node(folder: Path, files: set[str], name: str) -> Detection:
    notes: list[str] = []
    found = next(((lock, pm) for lock, pm in _LOCKS if lock in files), None)
    lock, manager = found or ("", "npm")
    if not found:
        notes.append("no lock file: run npm install (or pnpm/yarn) to write one; npm ci needs it")
    variables: dict[str, Any] = {"package_manager": manager}
    try:
        package = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        package = {}
    if not isinstance(package, dict):
        package = {}
    main = package.get("main")
    variables["command"] = ["node", main if isinstance(main, str) else "index.js"]
    scripts = package.get("scripts")
    if isinstance(scripts, dict) and "build" in scripts:
        variables["build_script"] = "build"
    reason = f"package.json + {lock}" if lock else "package.json"
    return Detection("node", reason, variables, tuple(notes))


def _static(folder: Path, files: set[str], name: str) -> Detection:
    return Detection("static", "index.html", {})


_MAKE_VAR_RE = re.compile(r"^(?:TARGET|BIN|BINARY|PROG|PROGRAM|EXE|NAME)\s*[:?]?=\s*(\S+)", re.M)
_MAKE_RULE_RE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:(?!=)", re.M)
_CMAKE_EXE_RE = re.compile(r"add_executable\s*\(\s*([A-Za-z0-9_.-]+)", re.I)
_NOT_PROGRAMS = {"all", "clean", "install", "test", "check", "distclean", "default"}


def _cpp(folder: Path, files: set[str], name: str) -> Detection:
    variables: dict[str, Any] = {}
    if "CMakeLists.txt" in files:
        variables["build_system"] = "cmake"
        reason = "CMakeLists.txt"
        match = _CMAKE_EXE_RE.search((folder / "CMakeLists.txt").read_text(encoding="utf-8"))
        binary = match.group(1) if match else None
    else:
        variables["build_system"] = "make"
        makefile = next((f for f in ("GNUmakefile", "makefile", "Makefile") if f in files), None)
        reason = makefile or "Makefile"
        binary = None
        if makefile:
            text = (folder / makefile).read_text(encoding="utf-8")
            match = _MAKE_VAR_RE.search(text)
            if match and "$" not in match.group(1):
                binary = match.group(1)
            else:
                rules = [r for r in _MAKE_RULE_RE.findall(text) if r not in _NOT_PROGRAMS]
                binary = next((r for r in rules if "." not in r), None)
    notes: tuple[str, ...] = ()
    if binary:
        variables["binary"] = binary
    else:
        notes = ("could not tell the program's name: set vars.binary",)
    return Detection("cpp", reason, variables, notes)


_VARS = {
    "go": _go,
    "rust": _rust,
    "python": _python,
    "node": _node,
    "static": _static,
    "cpp": _cpp,
}


def builds_yaml(folder: Path, detection: Detection) -> str:
    """The builds.yaml text for *folder*: one template target named after the folder."""
    name = target_name(folder)
    versioned = (folder / "VERSION").is_file()
    target: dict[str, Any] = {"context": ".", "template": detection.template}
    if detection.vars:
        target["vars"] = detection.vars
    target["tags"] = [{"semver": {}}] if versioned else ["latest"]
    body = yaml.safe_dump(
        {"platforms": ["linux/amd64", "linux/arm64"], "targets": {name: target}},
        sort_keys=False,
        default_flow_style=None,
        width=100,
    )
    header = (
        f"# builds.yaml written by `mab init` for a {detection.template} project "
        f"(found {detection.reason}).\n"
        f"#   mab render   the Dockerfile that templates/{detection.template}.Dockerfile.j2 makes\n"
        "#   mab lint     check it;   mab plan   the work;   mab build   build, push, verify\n"
        "# Template variables (vars:) are documented in the template's header and in\n"
        "# docs/templates.md. Images go to localhost:5000 unless you set registry:.\n"
    )
    if not versioned:
        header += "# For release tags, replace [latest] with a rule: tags: [{semver: {}}]\n"
    return header + body


_IGNORE_COMMON = (
    ".git",
    ".gitignore",
    ".dockerignore",
    "builds.yaml",
    ".mab-cache",
    "*.log",
    ".env",
    ".env.*",
    ".DS_Store",
    ".idea",
    ".vscode",
)
_IGNORE: dict[str, tuple[str, ...]] = {
    "go": ("bin", "*.test", "*.out", "coverage.*"),
    "rust": ("target",),
    "python": (
        ".venv",
        "venv",
        "__pycache__",
        "*.py[cod]",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".tox",
        "dist",
        "build",
        "*.egg-info",
    ),
    "node": (
        "node_modules",
        "npm-debug.log*",
        "yarn-error.log*",
        ".npm",
        ".pnpm-store",
        "coverage",
    ),
    "static": ("node_modules",),
    "cpp": ("build", "cmake-build-*", "*.o", "*.a", "*.so", "*.d"),
}


def dockerignore(template: str) -> str:
    """A .dockerignore for the stack: VCS data, local caches and build output stay out of
    the build context (smaller uploads, fewer needless cache misses, no local secrets)."""
    lines = [
        f"# Written by `mab init` ({template}): files the image build never needs.",
        *_IGNORE_COMMON,
        *_IGNORE.get(template, ()),
    ]
    return "\n".join(lines) + "\n"


def undetected_message(folder: Path) -> str:
    listing = "; ".join(f"{t} ({files})" for t, files in DETECTED_BY.items())
    return f"no known stack in {folder}: templates and the files that select them: {listing}"


def plan_files(
    folder: Path, template: str | None, force: bool
) -> tuple[Detection, dict[Path, str]]:
    """What init would write, checked: a UsageError for an unknown stack or a file that
    exists without --force."""
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    if template is not None and template not in TEMPLATES:
        raise UsageError(
            f"unknown template '{template}'",
            hint="templates: " + ", ".join(TEMPLATES),
        )
    try:
        detection = detect(folder, template)
    except NotDetected:
        raise UsageError(
            undetected_message(folder),
            hint="pick one with --template NAME",
        ) from None
    files = {
        folder / "builds.yaml": builds_yaml(folder, detection),
        folder / ".dockerignore": dockerignore(detection.template),
    }
    existing = [path for path in files if path.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise UsageError(
            f"{names} already {'exists' if len(existing) == 1 else 'exist'}; not overwritten "
            "(nothing written)",
            hint="rerun with --force to replace it",
        )
    return detection, files
