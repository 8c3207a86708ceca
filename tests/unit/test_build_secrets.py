"""Build secrets: builds.yaml names where each comes from (a file or an environment
variable), mab passes buildx the reference, checks it exists before any build, and never
reads or shows the value. The real mount is proven in
tests/integration/test_templates_build.py (pip.conf for a private index)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mab.cli.main import app
from mab.config.project import load_project
from mab.errors import BuildError, ConfigError
from mab.pipeline.build import run_build
from mab.pipeline.preflight import check_secrets
from mab.planning import templates
from mab.planning.plan import make_plan
from mab.planning.render import render_template

from .fakes import FakeEngine, Recorder

CONFIG = """\
registry: registry.test/demo
platforms: [linux/amd64]
targets:
  web:
    context: app
    secrets:
      pip.conf: {file: conf/pip.conf}
      npmrc: {env: MAB_TEST_NPMRC}
"""


def test_plan_carries_references_not_values(write_config: Callable[[str], Path]) -> None:
    path = write_config(CONFIG)
    plan = make_plan(load_project(path))
    (web,) = plan.targets
    specs = [s.spec() for s in web.secrets]
    assert specs == ["id=npmrc,env=MAB_TEST_NPMRC", f"id=pip.conf,src={path.parent}/conf/pip.conf"]
    shown = plan.to_dict()["targets"][0]["secrets"]
    assert shown == {
        "npmrc": {"env": "MAB_TEST_NPMRC"},
        "pip.conf": {"file": f"{path.parent}/conf/pip.conf"},
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{pip.conf: {}}", "give either 'file' or 'env'"),
        ("{pip.conf: {file: a, env: B}}", "give either 'file' or 'env'"),
        ("{pip.conf: {env: 'index-url=https://u:p@x'}}", "must name an environment variable"),
        ("{'bad id!': {env: A}}", "invalid secret id 'bad id!'"),
        ("{pip.conf: {flie: a}}", "did you mean 'file'"),
    ],
)
def test_bad_secret_entries_are_config_errors(
    write_config: Callable[[str], Path], entry: str, message: str
) -> None:
    path = write_config(
        f"registry: r.test/x\ntargets:\n  web:\n    context: app\n    secrets: {entry}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert info.value.exit_code == 2
    text = "\n".join(str(i) for i in info.value.issues)
    assert message in text and "builds.yaml:5" in text, text
    assert "u:p" not in text  # a pasted value is never echoed


def test_missing_secrets_fail_before_any_build(write_config: Callable[[str], Path]) -> None:
    path = write_config(CONFIG)
    plan = make_plan(load_project(path))
    engine = FakeEngine()
    with pytest.raises(BuildError) as info:
        run_build(plan, engine, Recorder(), registries=engine.registry)
    assert engine.builds == []
    message = info.value.message
    assert f"no file {path.parent}/conf/pip.conf" in message
    assert "MAB_TEST_NPMRC is not set" in message


def test_present_secrets_reach_buildx_as_references(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(CONFIG)
    (path.parent / "conf").mkdir()
    (path.parent / "conf" / "pip.conf").write_text("[global]\nindex-url = https://u:hunter2@x\n")
    monkeypatch.setenv("MAB_TEST_NPMRC", "//registry/:_authToken=hunter2")
    plan = make_plan(load_project(path))
    check_secrets(plan, {"MAB_TEST_NPMRC": "x"})
    engine = FakeEngine()
    report = run_build(plan, engine, Recorder(), registries=engine.registry)
    assert report.ok
    (request,) = engine.builds
    assert request.secrets == (
        "id=npmrc,env=MAB_TEST_NPMRC",
        f"id=pip.conf,src={path.parent}/conf/pip.conf",
    )
    assert "hunter2" not in json.dumps(report.to_dict())


def test_empty_env_counts_as_missing(write_config: Callable[[str], Path]) -> None:
    plan = make_plan(load_project(write_config(CONFIG)))
    (plan.project_file.parent / "conf").mkdir()
    (plan.project_file.parent / "conf" / "pip.conf").write_text("x")
    with pytest.raises(BuildError, match="MAB_TEST_NPMRC is not set"):
        check_secrets(plan, {"MAB_TEST_NPMRC": ""})


def test_github_build_steps_get_env_secrets_and_file_secrets_a_note(
    write_config: Callable[[str], Path], project_dir: Path
) -> None:
    result = CliRunner().invoke(app, ["ci", "generate", "github", "-f", str(write_config(CONFIG))])
    assert result.exit_code == 0, result.output
    assert "secrets.pip.conf comes from the file conf/pip.conf" in result.stderr
    data = yaml.safe_load((project_dir / ".github" / "workflows" / "mab.yml").read_text())
    builds = [
        step
        for job in data["jobs"].values()
        for step in job["steps"]
        if step["name"].startswith("Build ")
    ]
    assert builds and all(
        step["env"] == {"MAB_TEST_NPMRC": "${{ secrets.MAB_TEST_NPMRC }}"} for step in builds
    )


@pytest.mark.parametrize(
    ("template", "variables", "secret_id", "target"),
    [
        ("python", {"package_manager": "pip"}, "pip.conf", "/etc/pip.conf"),
        ("python", {"package_manager": "poetry"}, "pip.conf", "/etc/pip.conf"),
        ("node", {"package_manager": "npm"}, "npmrc", "/root/.npmrc"),
        ("node", {"package_manager": "pnpm"}, "npmrc", "/root/.npmrc"),
        ("node", {"package_manager": "yarn"}, "npmrc", "/root/.npmrc"),
    ],
)
def test_templates_mount_the_index_secret_for_the_install_step_only(
    template: str, variables: dict[str, str], secret_id: str, target: str
) -> None:
    found = templates.find_template(template, Path("."))
    assert found is not None
    text = render_template(found, dict(variables), target="t")
    mount = f"--mount=type=secret,id={secret_id},target={target}"
    assert text.count(mount) == 1, text
    # the mount belongs to the dependency install, which precedes the source COPY
    assert text.index(mount) < text.index("COPY . .")
