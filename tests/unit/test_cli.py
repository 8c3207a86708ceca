"""The CLI without an engine: exit codes, where output goes, and --json."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mab.cli.main import app

runner = CliRunner()

GOOD = """\
registry: r.test/x
targets:
  app: {context: app}
  api: {context: goapp, template: go, vars: {main: .}}
"""


def test_plan_json(project_dir: Path) -> None:
    (project_dir / "builds.yaml").write_text(GOOD)
    result = runner.invoke(app, ["plan", "--json", "-f", str(project_dir / "builds.yaml")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["name"] for t in data["targets"]] == ["app", "api"]


def test_plan_table_names_targets(project_dir: Path) -> None:
    (project_dir / "builds.yaml").write_text(GOOD)
    result = runner.invoke(app, ["plan", "-f", str(project_dir / "builds.yaml")])
    assert result.exit_code == 0
    # a result: on stdout, so `mab plan | grep arm64` works (issue 14)
    assert "r.test/x/api" in result.stdout and "linux/arm64" in result.stdout
    assert "r.test/x/api" not in result.stderr


def test_malformed_config_exits_2_with_file_and_line(project_dir: Path) -> None:
    path = project_dir / "builds.yaml"
    path.write_text("targets:\n  app:\n    context: app\n    tagz: [a]\n")
    result = runner.invoke(app, ["build", "-f", str(path)])
    assert result.exit_code == 2
    assert f"{path}:4: targets.app.tagz: unknown key 'tagz'; did you mean 'tags'?" in result.stderr
    assert "Traceback" not in result.output


def test_debug_shows_traceback(project_dir: Path) -> None:
    path = project_dir / "builds.yaml"
    path.write_text("targets: [\n")
    result = runner.invoke(app, ["plan", "--debug", "-f", str(path)])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr


def test_render_to_stdout_and_out_dir(project_dir: Path, tmp_path: Path) -> None:
    (project_dir / "builds.yaml").write_text(GOOD)
    result = runner.invoke(app, ["render", "-f", str(project_dir / "builds.yaml")])
    assert result.exit_code == 0
    assert result.stdout.startswith("# Rendered by mab")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["render", "-f", str(project_dir / "builds.yaml"), "--out", str(out)]
    )
    assert result.exit_code == 0
    assert (out / "api.Dockerfile").read_text().count("FROM ") == 2
    assert not (out / "app.Dockerfile").exists()


def test_render_undefined_variable_exits_2(project_dir: Path) -> None:
    path = project_dir / "builds.yaml"
    path.write_text("targets:\n  api: {context: goapp, template: go}\n")
    result = runner.invoke(app, ["render", "-f", str(path)])
    assert result.exit_code == 2
    assert "go.Dockerfile.j2:" in result.stderr and "undefined variable 'main'" in result.stderr


def test_unknown_target_exits_2(project_dir: Path) -> None:
    (project_dir / "builds.yaml").write_text(GOOD)
    result = runner.invoke(app, ["plan", "-t", "ap", "-f", str(project_dir / "builds.yaml")])
    assert result.exit_code == 2
    assert "no target 'ap'" in result.stderr


def test_schema_is_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert "targets" in schema["required"]
    assert "platforms" in schema["$defs"]["TargetConfig"]["properties"]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("mab ")


def test_promote_plans_a_target_whose_rules_make_no_tag(project_dir: Path) -> None:
    """`mab promote` writes the tags --to names: a target whose own rules make none in
    this run (an environment rule without --env) is still promotable; `mab plan` is not."""
    path = project_dir / "builds.yaml"
    path.write_text(
        "registry: r.test/x\n"
        "targets:\n  app:\n    context: app\n    tags: [{environment: {versioned: false}}]\n"
    )
    plan = runner.invoke(app, ["plan", "-f", str(path)])
    assert plan.exit_code == 2 and "no tag" in plan.stderr
    promote = runner.invoke(
        app,
        ["promote", "app", "--from", "staging", "--to", "prod", "-f", str(path)],
        env={"MAB_RETRY_ATTEMPTS": "1"},
    )
    assert "no tag" not in promote.output  # it got past planning (to the registry)
