"""`mab init`: stack detection, the builds.yaml and .dockerignore it writes, no overwrites."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mab import init as generator
from mab.cli.main import app
from mab.config.project import load_project
from mab.lint import lint_dockerfile
from mab.planning.plan import make_plan
from mab.planning.render import render_target

runner = CliRunner()

# sample project files -> (template, vars expected in builds.yaml)
SAMPLES: dict[str, tuple[dict[str, str], str, dict[str, object]]] = {
    "go": ({"go.mod": "module x\n\ngo 1.21\n", "main.go": "package main\n"}, "go", {"main": "."}),
    "rust": (
        {"Cargo.toml": '[package]\nname = "hello"\nversion = "0.1.0"\n'},
        "rust",
        {"binary": "hello"},
    ),
    "pip": ({"requirements.txt": "", "app.py": ""}, "python", {"package_manager": "pip"}),
    "poetry": (
        {"pyproject.toml": "", "poetry.lock": "", "main.py": ""},
        "python",
        {"package_manager": "poetry", "command": ["python", "main.py"]},
    ),
    "uv": ({"pyproject.toml": "", "uv.lock": ""}, "python", {"package_manager": "uv"}),
    "npm": (
        {"package.json": '{"main": "server.js"}', "package-lock.json": "{}"},
        "node",
        {"package_manager": "npm", "command": ["node", "server.js"]},
    ),
    "pnpm": ({"package.json": "{}", "pnpm-lock.yaml": ""}, "node", {"package_manager": "pnpm"}),
    "yarn": (
        {"package.json": '{"scripts": {"build": "tsc"}}', "yarn.lock": "", "index.html": ""},
        "node",
        {"package_manager": "yarn", "build_script": "build"},
    ),
    "static": ({"index.html": "<h1>hi</h1>"}, "static", {}),
    "make": ({"Makefile": "all: hello\nhello: hello.c\n"}, "cpp", {"build_system": "make"}),
    "cmake": (
        {"CMakeLists.txt": "project(x C)\nadd_executable(tool main.c)\n"},
        "cpp",
        {"build_system": "cmake", "binary": "tool"},
    ),
}


def make_sample(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / f"My_{kind}.App"
    folder.mkdir()
    for name, text in SAMPLES[kind][0].items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_init_detects_writes_and_the_result_loads_renders_and_lints(
    tmp_path: Path, kind: str
) -> None:
    folder = make_sample(tmp_path, kind)
    _, template, expected_vars = SAMPLES[kind]
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"template {template}" in result.output

    project = load_project(folder / "builds.yaml")
    (name,) = project.config.targets
    assert name == f"my_{kind}.app"
    target = project.config.targets[name]
    assert target.template == template
    assert project.config.platforms == ["linux/amd64", "linux/arm64"]
    for key, value in expected_vars.items():
        assert target.vars[key] == value
    assert (folder / "builds.yaml").read_text().startswith("# builds.yaml written by `mab init`")

    planned = make_plan(project).targets[0]
    text = render_target(planned)
    assert text is not None
    assert lint_dockerfile(text, name, multi_platform=True) == []
    assert (folder / ".dockerignore").is_file()
    assert ".git" in (folder / ".dockerignore").read_text().splitlines()


def test_dockerignore_is_stack_appropriate() -> None:
    assert "node_modules" in generator.dockerignore("node").splitlines()
    assert "target" in generator.dockerignore("rust").splitlines()
    assert "__pycache__" in generator.dockerignore("python").splitlines()
    assert "build" in generator.dockerignore("cpp").splitlines()


def test_go_main_package_and_version_from_go_mod(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module x\n\ngo 1.19\n")
    (tmp_path / "cmd" / "api").mkdir(parents=True)
    (tmp_path / "cmd" / "api" / "main.go").write_text("package main\n")
    detection = generator.detect(tmp_path)
    assert detection.vars == {"main": "./cmd/api", "go_version": "1.19"}
    assert "go_version: '1.19'" in generator.builds_yaml(tmp_path, detection)


def test_version_file_gives_a_semver_rule(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("")
    (tmp_path / "VERSION").write_text("1.2.3\n")
    runner.invoke(app, ["init", str(tmp_path)])
    tags = (
        load_project(tmp_path / "builds.yaml").config.targets[generator.target_name(tmp_path)].tags
    )
    assert tags is not None and type(tags[0]).__name__ == "SemverRule"


@pytest.mark.parametrize(
    ("folder", "expected"),
    [("My App!", "my-app"), ("__x__", "x"), ("a..b--c", "a.b-c"), ("!!!", "app")],
)
def test_target_name_is_sanitised(tmp_path: Path, folder: str, expected: str) -> None:
    (tmp_path / folder).mkdir()
    assert generator.target_name(tmp_path / folder) == expected


@pytest.mark.parametrize("existing", ["builds.yaml", ".dockerignore"])
def test_never_overwrites_without_force(tmp_path: Path, existing: str) -> None:
    folder = make_sample(tmp_path, "static")
    (folder / existing).write_text("mine\n")
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 2
    assert existing in result.output and "--force" in result.output
    assert (folder / existing).read_text() == "mine\n"
    other = ({"builds.yaml", ".dockerignore"} - {existing}).pop()
    assert not (folder / other).exists(), "nothing is written when one file is refused"

    result = runner.invoke(app, ["init", str(folder), "--force"])
    assert result.exit_code == 0, result.output
    assert (folder / existing).read_text() != "mine\n"


def test_explicit_template_and_unknown_stack(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 2
    for name, files in generator.DETECTED_BY.items():
        assert name in result.output and files in result.output
    result = runner.invoke(app, ["init", str(tmp_path), "--template", "static"])
    assert result.exit_code == 0, result.output
    assert load_project(tmp_path / "builds.yaml").config.targets
    result = runner.invoke(app, ["init", str(tmp_path), "--template", "cobol", "--force"])
    assert result.exit_code == 2 and "unknown template 'cobol'" in result.output


def test_init_examples_render(tmp_path: Path) -> None:
    """The sample apps under examples/ are detected as their stack."""
    examples = Path(__file__).parents[2] / "examples"
    for stack in ("rust", "python", "node", "static", "cpp"):
        detection = generator.detect(examples / stack)
        assert detection.template == stack
        assert detection.notes == ()
