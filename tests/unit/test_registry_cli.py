"""The registry commands without an engine or a registry: where passwords may come from,
exit codes, and what a dry run prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mab.cli import registry as registry_cli
from mab.cli.main import app
from mab.registry import credentials

runner = CliRunner()


def test_login_never_takes_a_password_from_argv(tmp_path: Path) -> None:
    result = runner.invoke(app, ["login", "reg.test", "-u", "me", "-f", str(tmp_path / "no.yaml")])
    assert result.exit_code == 2
    assert "no password given: mab never takes one on the command line" in result.stderr
    assert "--password-stdin" in result.stderr
    result = runner.invoke(app, ["login", "reg.test", "-u", "me", "--password", "x"])
    assert result.exit_code == 2  # there is no --password option


def test_login_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[credentials.LoginSecret] = []

    def fake_login(secret: credentials.LoginSecret) -> str:
        seen.append(secret)
        return "config.json"

    monkeypatch.setattr(registry_cli, "registry_login", fake_login)
    none = str(tmp_path / "none.yaml")
    ok = runner.invoke(
        app, ["login", "reg.test", "-u", "me", "--password-stdin", "-f", none], input="pw-1\n"
    )
    assert ok.exit_code == 0, ok.output
    assert "logged in to reg.test as me (password from stdin)" in ok.stderr
    assert "pw-1" not in ok.output
    empty = runner.invoke(
        app, ["login", "reg.test", "-u", "me", "--password-stdin", "-f", none], input="\n"
    )
    assert empty.exit_code == 2 and "no password on stdin" in empty.stderr
    both = runner.invoke(
        app, ["login", "reg.test", "-u", "me", "--password-stdin", "--password-env", "X"]
    )
    assert both.exit_code == 2
    # builds.yaml names the variable; the value comes from the environment
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "builds.yaml").write_text(
        "registries:\n  reg.test: {username: robot, password_env: REG_PW}\n"
        "targets:\n  app: {context: app}\n"
    )
    monkeypatch.setenv("REG_PW", "pw-from-env")
    from_file = runner.invoke(app, ["login", "reg.test", "-f", str(tmp_path / "builds.yaml")])
    assert from_file.exit_code == 0, from_file.output
    assert "as robot (password from $REG_PW)" in from_file.stderr
    assert [(s.username, s.password) for s in seen] == [("me", "pw-1"), ("robot", "pw-from-env")]
    assert "pw-from-env" not in from_file.output


def test_clean_skips_targets_without_a_policy(project_dir: Path) -> None:
    path = project_dir / "builds.yaml"
    path.write_text("registry: r.test/x\ntargets:\n  app: {context: app}\n")
    result = runner.invoke(app, ["clean", "-f", str(path)])
    assert result.exit_code == 0, result.output
    assert "app: no retention policy in builds.yaml; nothing to do" in result.stderr
    assert "dry run: would delete 0 tags; nothing was deleted" in result.stderr
    as_json = runner.invoke(app, ["clean", "-f", str(path), "--json"])
    assert json.loads(as_json.stdout) == {"dry_run": True, "repositories": [], "skipped": ["app"]}
    unknown = runner.invoke(app, ["clean", "-f", str(path), "-t", "nope"])
    assert unknown.exit_code == 2 and "no target named nope" in unknown.stderr


def test_registry_status_and_down_without_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAB_REGISTRIES_DIR", str(tmp_path))
    status = runner.invoke(app, ["registry", "status", "--json"])
    assert status.exit_code == 0 and json.loads(status.stdout) == []
    down = runner.invoke(app, ["registry", "down", "--port", "5999"])
    assert down.exit_code == 2
    assert "no registry started by mab on port 5999" in down.stderr


def test_registry_rm_needs_a_reference() -> None:
    for ref in ("localhost:5000", "reg.test"):
        result = runner.invoke(app, ["registry", "rm", ref])
        assert result.exit_code == 2
        assert f"'{ref}' names no repository" in result.stderr
