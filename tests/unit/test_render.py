"""Template rendering with StrictUndefined, without Docker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mab.config.project import load_project
from mab.errors import ConfigError
from mab.planning import templates
from mab.planning.plan import make_plan
from mab.planning.render import render_target, render_template


def test_go_template_renders_cross_compiling_dockerfile(
    write_config: Callable[[str], Path],
) -> None:
    project = load_project(
        write_config(
            "targets:\n  api:\n    context: goapp\n    template: go\n"
            "    vars: {main: ./cmd/api, port: 8080}\n"
        )
    )
    text = render_target(make_plan(project).targets[0])
    assert text is not None
    assert "FROM --platform=$BUILDPLATFORM golang:1.22-bookworm AS build" in text
    assert "GOARCH=$TARGETARCH" in text
    assert 'go build -trimpath -ldflags="-s -w" -o /out/api ./cmd/api' in text
    assert "FROM scratch AS runtime" in text
    assert "USER 65532:65532" in text
    assert "EXPOSE 8080" in text
    assert 'ENTRYPOINT ["/api"]' in text
    assert "{{" not in text and "{%" not in text


def test_template_vars_override_defaults(write_config: Callable[[str], Path]) -> None:
    project = load_project(
        write_config(
            "targets:\n  api:\n    context: goapp\n    template: go\n"
            "    vars: {main: ., go_version: '1.19', binary: srv}\n"
        )
    )
    text = render_target(make_plan(project).targets[0])
    assert text is not None
    assert "golang:1.19-bookworm" in text
    assert "/out/srv ." in text
    assert "EXPOSE" not in text


def test_undefined_variable_names_template_line_and_variable(
    write_config: Callable[[str], Path],
) -> None:
    project = load_project(write_config("targets:\n  api:\n    context: goapp\n    template: go\n"))
    with pytest.raises(ConfigError) as info:
        render_target(make_plan(project).targets[0])
    (issue,) = info.value.issues
    assert issue.file.name == "go.Dockerfile.j2"
    assert "undefined variable 'main'" in issue.message
    assert "targets.api.vars" in issue.message
    template_text = issue.file.read_text().splitlines()
    assert issue.line is not None
    assert "main" in template_text[issue.line - 1]
    assert info.value.exit_code == 2


def test_project_template_by_path_and_syntax_error(project_dir: Path) -> None:
    (project_dir / "my.j2").write_text("FROM {{ base }}\nRUN {% if %}\n")
    (project_dir / "builds.yaml").write_text(
        "targets:\n  x:\n    context: app\n    template: my.j2\n    vars: {base: alpine}\n"
    )
    target = make_plan(load_project(project_dir / "builds.yaml")).targets[0]
    with pytest.raises(ConfigError) as info:
        render_target(target)
    (issue,) = info.value.issues
    assert issue.line == 2
    assert "template syntax" in issue.message


def test_project_templates_folder_overrides_builtin(project_dir: Path) -> None:
    (project_dir / "templates").mkdir()
    (project_dir / "templates" / "go.Dockerfile.j2").write_text("FROM custom:{{ target }}\n")
    assert (
        templates.find_template("go", project_dir) == project_dir / "templates" / "go.Dockerfile.j2"
    )
    assert "go" in templates.available(project_dir)


def test_builtin_templates_found_from_package() -> None:
    assert (templates.builtin_dir() / "go.Dockerfile.j2").is_file()


def test_render_template_plain_vars(tmp_path: Path) -> None:
    path = tmp_path / "t.Dockerfile.j2"
    path.write_text("FROM {{ image }}\nLABEL t={{ target }}\n")
    assert render_template(path, {"image": "busybox"}, target="x") == "FROM busybox\nLABEL t=x\n"


def test_project_template_includes_a_partial_beside_it(project_dir: Path) -> None:
    (project_dir / "templates").mkdir()
    (project_dir / "templates" / "base.j2").write_text("FROM {{ image }}\n")
    (project_dir / "templates" / "mine.Dockerfile.j2").write_text(
        "{% include 'base.j2' %}USER 1000\n"
    )
    (project_dir / "builds.yaml").write_text(
        "targets:\n  x:\n    context: app\n    template: mine\n    vars: {image: alpine}\n"
    )
    target = make_plan(load_project(project_dir / "builds.yaml")).targets[0]
    assert render_target(target) == "FROM alpine\nUSER 1000\n"


def test_render_is_sandboxed_with_the_template_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "t.Dockerfile.j2"
    path.write_text("FROM busybox\n{{ cycler.__init__.__globals__.os.system('touch PWNED') }}\n")
    with pytest.raises(ConfigError) as info:
        render_template(path, {}, target="x")
    assert str(info.value) == (
        f"{path}:2: unsafe template: access to attribute '__init__' of 'type' object is unsafe "
        "(templates render in a sandbox: no attribute starting with '_')"
    )
    assert not (tmp_path / "PWNED").exists()
