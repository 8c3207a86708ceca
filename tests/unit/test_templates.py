"""The shipped templates: each renders, lints clean, cross-compiles where it can, and
follows the image rules (non-root, cache mounts, manifests before source, OCI title)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mab.errors import ConfigError
from mab.lint import hadolint_findings, hadolint_path, lint_dockerfile, parse, stages
from mab.planning import templates
from mab.planning.render import render_template

# (template, vars): every template with its required vars, and each package manager or mode.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("go", {"main": "./cmd/api"}),
    ("rust", {}),
    ("rust", {"binary": "api", "port": 8080, "features": "tls", "args": ["--serve"]}),
    ("python", {}),
    ("python", {"package_manager": "poetry"}),
    ("python", {"package_manager": "uv", "port": 8000, "healthcheck": ["python", "hc.py"]}),
    ("node", {}),
    ("node", {"package_manager": "pnpm"}),
    ("node", {"package_manager": "yarn", "build_script": "build"}),
    (
        "node",
        {
            "build_script": "build",
            "command": ["node", "dist/a.js"],
            "healthcheck": ["node", "hc.js"],
        },
    ),
    ("static", {}),
    ("static", {"server": "busybox", "port": 8000}),
    ("static", {"build_script": "build", "site_dir": "dist"}),
    ("cpp", {}),
    ("cpp", {"build_system": "cmake", "packages": "libssl-dev zlib1g-dev"}),
    ("cpp", {"build_system": "make", "static": True, "binary": "out/hello"}),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in v.items()) or 'defaults'}" for name, v in CASES]
CROSS = {"go", "rust", "cpp"}


def render(name: str, variables: dict[str, Any]) -> str:
    path = templates.builtin_dir() / f"{name}{templates.SUFFIX}"
    return render_template(path, variables, target="demo")


def test_every_template_named_in_the_issue_ships() -> None:
    assert {"go", "rust", "python", "node", "static", "cpp"} <= set(
        templates.available(Path("/nonexistent"))
    )


@pytest.mark.parametrize(("name", "variables"), CASES, ids=IDS)
def test_renders_and_lints_clean(name: str, variables: dict[str, Any]) -> None:
    text = render(name, variables)
    assert "{{" not in text and "{%" not in text
    assert lint_dockerfile(text, name, multi_platform=True) == []
    program = hadolint_path()
    if program is not None:
        assert hadolint_findings(text, name, program) == []


@pytest.mark.parametrize(("name", "variables"), CASES, ids=IDS)
def test_image_rules(name: str, variables: dict[str, Any]) -> None:
    text = render(name, variables)
    all_stages = stages(parse(text))
    build, final = all_stages[-2], all_stages[-1]
    if name in CROSS or name == "static":
        assert build.platform == "$BUILDPLATFORM"
        assert "FROM --platform=$BUILDPLATFORM" in text
    else:  # the emulated install is marked as such
        assert "EMULATED" in text
    users = [i.args for i in final.body if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert 'LABEL org.opencontainers.image.title="demo"' in text
    body = [i for s in all_stages for i in s.body]
    source = next(i for i in body if i.keyword == "COPY" and i.args.split()[0] in (".", "./"))
    if name == "static" and "build_script" not in variables:
        return  # plain files: nothing to install, no package manager to cache
    assert any("type=cache" in f for i in body if i.keyword == "RUN" for f in i.flags)
    install = next(
        i for i in body if i.keyword == "RUN" and any("type=cache" in f for f in i.flags)
    )
    assert install.line < source.line, "dependencies install before the source is copied"
    if name != "cpp":  # C/C++ has no manifest: its toolchain and -dev packages come first
        manifest = next(
            i for i in body if i.keyword == "COPY" and i.args.split()[0] not in (".", "./")
        )
        assert manifest.line < source.line


def test_header_documents_every_variable() -> None:
    for path in templates.builtin_dir().glob(f"*{templates.SUFFIX}"):
        text = path.read_text()
        header = text.split("-#}", 1)[0]
        assert "Variables" in header, path.name
        for var in set(re.findall(r"{% set (\w+) = \1 \| default", text)) - {"target"}:
            assert var in header, f"{path.name}: {var} not documented"


@pytest.mark.parametrize(
    ("name", "variables", "expected"),
    [
        ("python", {"package_manager": "pipenv"}, "package_manager_must_be_pip_poetry_or_uv"),
        ("node", {"package_manager": "bun"}, "package_manager_must_be_npm_pnpm_or_yarn"),
        ("cpp", {"build_system": "meson"}, "build_system_must_be_make_or_cmake"),
        ("static", {"server": "caddy"}, "server_must_be_nginx_or_busybox"),
    ],
)
def test_bad_choice_is_a_named_error(name: str, variables: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        render(name, variables)
    assert expected in str(info.value)


def test_package_manager_picks_lock_file_and_install() -> None:
    assert "COPY pyproject.toml uv.lock ./" in render("python", {"package_manager": "uv"})
    assert "uv sync --frozen" in render("python", {"package_manager": "uv"})
    assert "COPY pyproject.toml poetry.lock ./" in render("python", {"package_manager": "poetry"})
    assert "COPY requirements.txt ./" in render("python", {})
    assert "COPY package.json pnpm-lock.yaml ./" in render("node", {"package_manager": "pnpm"})
    assert "COPY package.json yarn.lock ./" in render("node", {"package_manager": "yarn"})
    assert "npm ci --omit=dev" in render("node", {})


def test_cross_toolchains_follow_target_arch() -> None:
    rust = render("rust", {})
    cpp = render("cpp", {})
    for text in (rust, cpp):
        assert '"$TARGETARCH$TARGETVARIANT"' in text
        assert "crossbuild-essential-$debarch" in text
        assert "gnu=aarch64-linux-gnu debarch=arm64" in text
        assert "gnu=arm-linux-gnueabihf debarch=armhf" in text
    assert 'rustup target add "$triple"' in rust
    assert "linker = " in rust
    assert "CMAKE_TOOLCHAIN_FILE" in render("cpp", {"build_system": "cmake"})
    assert "FROM scratch AS runtime" in render("cpp", {"static": True})


def test_string_command_and_healthcheck_are_shell_form() -> None:
    text = render("node", {"command": "node a.js", "healthcheck": "node hc.js || exit 1"})
    assert "\nCMD node a.js\n" in text
    assert "CMD node hc.js || exit 1\n" in text
    listed = render("rust", {"healthcheck": ["/demo", "--health"], "port": 8080})
    assert 'CMD ["/demo", "--health"]' in listed
    assert "EXPOSE 8080" in listed


def test_find_template_reads_only_the_project_and_mab_itself(tmp_path: Path) -> None:
    assert templates.find_template("go", tmp_path) == templates.builtin_dir() / "go.Dockerfile.j2"
    with pytest.raises(templates.TemplateRefused, match="absolute path"):
        templates.find_template("/etc/x.j2", tmp_path)
    with pytest.raises(templates.TemplateRefused, match=r"outside the folder of builds\.yaml"):
        templates.find_template("../x.j2", tmp_path)
    with pytest.raises(templates.TemplateRefused, match=r"not a \.j2 file"):
        templates.find_template("/etc/passwd", tmp_path, allow_external=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "x.j2").write_text("FROM busybox\n")
    project = tmp_path / "project"
    project.mkdir()
    assert templates.find_template("../shared/x.j2", project, allow_external=True) == (
        project / "../shared/x.j2"
    )
    assert templates.find_template("../shared/missing.j2", project, allow_external=True) is None


def test_every_shipped_template_renders_in_the_sandbox() -> None:
    # The sandbox refuses what a template must not do; the shipped ones need none of it.
    for name, variables in CASES:
        assert "FROM" in render(name, variables)
