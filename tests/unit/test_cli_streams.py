"""Where each command's output goes (results on stdout, everything else on stderr), every
--help, and the one error path for bad output files, bad environment values and secrets
typed where they do not belong (issues 13 and 14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mab import api
from mab.cli.main import app
from mab.engine.base import Engine
from mab.pipeline.audit import run_verify
from mab.pipeline.build import run_build
from mab.registry import query as registry_query
from mab.registry.client import RegistryClient
from tests.unit.fakes import FakeEngine, Recorder

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]

CONFIG = """\
registry: registry.test/demo
platforms: [linux/amd64, linux/arm64]
targets:
  app: {context: app, tags: ["1.0", latest]}
  api: {context: goapp, template: go, vars: {main: .}}
"""


def _write(project_dir: Path) -> Path:
    path = project_dir / "builds.yaml"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["plan"], "registry.test/demo/app"),
        (["tags"], "latest"),
        (["render", "-t", "api"], "FROM"),
        (["schema"], '"properties"'),
        (["ci", "matrix"], '"platform"'),
    ],
)
def test_results_go_to_stdout(project_dir: Path, args: list[str], expect: str) -> None:
    path = _write(project_dir)
    extra = [] if args == ["schema"] else ["-f", str(path)]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    assert expect in result.stdout
    assert expect not in result.stderr


def test_verify_table_on_stdout_summary_on_stderr(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(project_dir)
    engine = FakeEngine()
    loaded = api.load(path)
    assert run_build(loaded.plan, engine, Recorder(), registries=engine.registry).ok

    def verify(loaded: api.Loaded, engine_: Engine, **_: object) -> object:
        return run_verify(loaded.plan, engine, registries=engine.registry)

    monkeypatch.setattr(api, "verify", verify)
    monkeypatch.setattr(api, "docker_engine", lambda: engine)
    result = runner.invoke(app, ["verify", "-f", str(path)])
    assert result.exit_code == 0, result.output
    assert "mab verify: registry.test/demo" in result.stdout  # the table's title
    assert "2 of 2 targets ok" in result.stderr and "targets ok" not in result.stdout


def _registry_handler(request: httpx.Request) -> httpx.Response:
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [],
        }
    ).encode()
    path = request.url.path
    if path == "/v2/_catalog":
        return httpx.Response(200, json={"repositories": ["demo/app", "other/x"]})
    if path.endswith("/tags/list"):
        return httpx.Response(200, json={"tags": ["1.0"]})
    if "/manifests/" in path:
        return httpx.Response(
            200,
            content=index,
            headers={"content-type": "application/vnd.oci.image.index.v1+json"},
        )
    return httpx.Response(404)


@contextmanager
def _fake_client(host: str) -> Iterator[RegistryClient]:
    client = RegistryClient(host)
    client._http = httpx.Client(transport=httpx.MockTransport(_registry_handler))
    with client:
        yield client


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["registry", "ls", "registry.test/demo"], "registry.test/demo/app"),
        (["registry", "tags", "registry.test/demo/app"], "1.0"),
        (["registry", "inspect", "registry.test/demo/app:1.0"], "index"),
    ],
)
def test_registry_queries_print_results_on_stdout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], expect: str
) -> None:
    monkeypatch.setattr(registry_query, "client", _fake_client)  # the CLI imports it per call
    result = runner.invoke(app, [*args, "--json"] if args[1] != "ls" else args)
    assert result.exit_code == 0, result.output
    assert expect in result.stdout and expect not in result.stderr


def _commands(group: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    import typer.main

    command = typer.main.get_command(app) if not prefix else group
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*prefix, name))


def test_every_help_works_and_reads_as_text() -> None:
    names = list(_commands(app))
    assert ("registry", "inspect") in names and ("build",) in names
    for name in names:
        result = runner.invoke(app, [*name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.stdout
        assert "<bool>" not in result.stdout  # plain flags show no type
        options = [line for line in result.stdout.splitlines() if line.lstrip().startswith("-")]
        assert not [line for line in options if "<" in line.split("  ")[1]], options


@pytest.mark.parametrize(
    "args",
    [
        ["schema", "--out", "{missing}/schema.json"],
        ["render", "-t", "api", "--out", "{file}"],
        ["plan", "-f", "{dir}"],
        ["ci", "generate", "github", "--out", "{file}/mab.yml"],
    ],
)
def test_bad_output_and_input_paths_are_one_line(project_dir: Path, args: list[str]) -> None:
    path = _write(project_dir)
    values = {
        "missing": str(project_dir / "no" / "such"),
        "file": str(path),
        "dir": str(project_dir),
    }
    argv = [a.format(**values) for a in args]
    if args[0] in ("render", "ci"):
        argv += ["-f", str(path)]
    result = runner.invoke(app, argv)
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert result.stderr.count("error:") == 1


def test_a_report_that_cannot_be_written_is_one_line(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(project_dir)
    engine = FakeEngine()
    monkeypatch.setattr(api, "docker_engine", lambda: engine)
    monkeypatch.setattr(
        api,
        "build",
        lambda loaded, engine_, reporter, **kw: run_build(
            loaded.plan, engine, reporter, registries=engine.registry
        ),
    )
    result = runner.invoke(
        app, ["build", "-f", str(path), "--report", str(project_dir / "no" / "r.json")]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "cannot use" in result.stderr and "r.json" in result.stderr


def test_credentials_in_the_default_registry_are_refused_unseen(project_dir: Path) -> None:
    (project_dir / "builds.yaml").write_text("targets:\n  app: {context: app}\n")
    result = runner.invoke(
        app,
        ["plan", "--json", "-f", str(project_dir / "builds.yaml")],
        env={"MAB_DEFAULT_REGISTRY": "robot:S3cretPassw0rd@127.0.0.1:1"},
    )
    assert result.exit_code == 2
    assert "S3cretPassw0rd" not in result.output
    assert "MAB_DEFAULT_REGISTRY" in result.stderr


def _mab(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mab", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_a_password_typed_as_an_argument_is_not_echoed() -> None:
    proc = _mab("login", "reg.test", "S3cretPassw0rd")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "S3cretPassw0rd" not in out + err
    assert "--password-stdin" in err and "Traceback" not in err


def test_ctrl_c_while_starting_is_one_line_and_130() -> None:
    proc = _mab("plan", "-f", "/nonexistent/builds.yaml")
    time.sleep(0.15)  # still importing: pydantic, rich, httpx
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    # 2: it had finished (file not found) first. -SIGINT: Python ended the process by the
    # signal itself after mab's "interrupted" (seen when the signal lands in Python's own
    # start-up, with and without mab.entry's fast exit); a shell reports both as 130.
    assert proc.returncode in (130, -signal.SIGINT, 2), err
    if proc.returncode != 2:
        assert err.strip().splitlines()[-1].startswith("interrupted")
