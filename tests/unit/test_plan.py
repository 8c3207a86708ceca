"""Plan expansion: target x platform x tag, narrowing, and what mab plan --json shows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mab.config.project import load_project
from mab.errors import ConfigError, UsageError
from mab.planning.git import GitInfo
from mab.planning.plan import Plan, make_plan
from mab.planning.tags import TagContext
from mab.platforms import Platform

CONFIG = """\
registry: registry.example.com/team
platforms: [linux/amd64, linux/arm64]
base_images:
  golang:1.22-bookworm: localhost:5000/mirror/golang:bookworm
targets:
  web:
    context: app
    args: {A: "1"}
    tags: ["1.0.0", latest, latest]
    labels: {team: core}
  api:
    context: goapp
    template: go
    vars: {main: ./cmd/api}
    platforms: [linux/amd64, linux/arm64, linux/arm/v7]
    stage: runtime
"""


@pytest.fixture
def plan_of(write_config: Callable[[str], Path]) -> Callable[..., object]:
    def make(text: str = CONFIG, **kw: object) -> object:
        return make_plan(load_project(write_config(text)), **kw)  # type: ignore[arg-type]

    return make


def test_expansion(write_config: Callable[[str], Path]) -> None:
    plan = make_plan(load_project(write_config(CONFIG)))
    assert [t.name for t in plan.targets] == ["web", "api"]
    web, api = plan.targets
    assert web.repository == "registry.example.com/team/web"
    assert web.tag_names == ("1.0.0", "latest")  # duplicates dropped, order kept
    assert web.refs == (
        "registry.example.com/team/web:1.0.0",
        "registry.example.com/team/web:latest",
    )
    assert [str(p) for p in web.platforms] == ["linux/amd64", "linux/arm64"]
    assert [str(p) for p in api.platforms] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert api.tag_names == ("latest",)
    assert api.stage == "runtime"
    assert api.source.kind == "template" and api.source.template == "go"
    assert web.source.kind == "file" and web.source.path.name == "Dockerfile"
    assert web.build_contexts == (
        ("golang:1.22-bookworm", "docker-image://localhost:5000/mirror/golang:bookworm"),
    )
    assert dict(web.build_args) == {"A": "1"}
    assert len(plan.jobs) == 5
    assert not plan.registry_is_default


def test_default_registry(write_config: Callable[[str], Path]) -> None:
    plan = make_plan(load_project(write_config("targets:\n  app: {context: app}\n")))
    assert plan.registry == "localhost:5000"
    assert plan.registry_is_default
    assert plan.targets[0].repository == "localhost:5000/app"


def test_narrow_by_target_and_platform(write_config: Callable[[str], Path]) -> None:
    project = load_project(write_config(CONFIG))
    plan = make_plan(project, only_targets=["api"], only_platforms=["linux/arm64/v8"])
    (api,) = plan.targets
    assert api.platforms == (Platform("linux", "arm64"),)
    assert api.partial
    assert len(api.declared_platforms) == 3
    full = make_plan(project)
    assert not any(t.partial for t in full.targets)


def test_platform_filter_drops_targets_without_it(write_config: Callable[[str], Path]) -> None:
    plan = make_plan(load_project(write_config(CONFIG)), only_platforms=["linux/arm/v7"])
    assert [t.name for t in plan.targets] == ["api"]


def test_unknown_target_suggests(write_config: Callable[[str], Path]) -> None:
    with pytest.raises(UsageError) as info:
        make_plan(load_project(write_config(CONFIG)), only_targets=["wep"])
    assert "did you mean 'web'?" in str(info.value)
    assert info.value.exit_code == 2


def test_nothing_to_build(write_config: Callable[[str], Path]) -> None:
    with pytest.raises(UsageError, match="nothing to build"):
        make_plan(load_project(write_config(CONFIG)), only_platforms=["linux/s390x"])


def test_bad_platform_filter(write_config: Callable[[str], Path]) -> None:
    with pytest.raises(UsageError, match="--platform"):
        make_plan(load_project(write_config(CONFIG)), only_platforms=["sparc"])


def test_to_dict_is_json_ready(write_config: Callable[[str], Path]) -> None:
    data = make_plan(load_project(write_config(CONFIG))).to_dict()
    assert data["registry"] == "registry.example.com/team"
    api = data["targets"][1]
    assert api["dockerfile"] == {
        "kind": "template",
        "path": api["dockerfile"]["path"],
        "template": "go",
        "vars": {"main": "./cmd/api"},
    }
    assert api["platforms"] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert data["targets"][0]["context"] == "app"


# Tag rules through the plan: sandbox, runs without a version, build metadata.

TAGS_NOW = datetime(2026, 11, 27, tzinfo=UTC)
ON_MAIN = GitInfo("0123456789abcdef0123456789abcdef01234567", "main", None, 0, None)


def _plan_with_tags(write_config: Callable[[str], Path], tags: str, **context: object) -> Plan:
    text = f"defaults:\n  tags:\n{tags}targets:\n  app: {{context: app}}\n"
    return make_plan(
        load_project(write_config(text)),
        context=TagContext(now=TAGS_NOW, **context),  # type: ignore[arg-type]
    )


def test_sandboxed_tag_template_is_a_located_rule_error(
    write_config: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rule = "x{{ cycler.__init__.__globals__.os.system('touch PWNED') }}"
    with pytest.raises(ConfigError) as raised:
        _plan_with_tags(write_config, f'    - stable\n    - raw: "{rule}"\n')
    (issue,) = raised.value.issues
    assert issue.line == 4 and "tag rule raw" in issue.message
    assert not (tmp_path / "PWNED").exists()


def test_readme_defaults_plan_on_a_branch_push_without_version(
    write_config: Callable[[str], Path],
) -> None:
    rules = (
        "    - semver: {}\n"
        "    - git: {sha: true, branch: true}\n"
        "    - environment: {}\n"
        "    - semver: {latest: false}\n"
        "      prefix: v\n"
    )
    plan = _plan_with_tags(write_config, rules, git=ON_MAIN)
    assert plan.targets[0].tag_names == ("0123456", "main")


def test_a_target_with_no_tag_at_all_fails(write_config: Callable[[str], Path]) -> None:
    with pytest.raises(ConfigError) as raised:
        _plan_with_tags(write_config, "    - semver: {}\n")
    (issue,) = raised.value.issues
    assert issue.line == 2 and issue.field == "targets.app"  # the tags: list
    assert "no tag: semver rule: no version" in issue.message
    assert raised.value.hint and "--version" in raised.value.hint


def test_version_label_keeps_build_metadata(write_config: Callable[[str], Path]) -> None:
    plan = _plan_with_tags(write_config, "    - semver: {}\n", version="v1.2.3+build.5")
    (app,) = plan.targets
    assert app.tag_names == ("1.2.3", "1.2", "1", "latest")
    assert app.version == "1.2.3+build.5"
    assert dict(app.labels)["org.opencontainers.image.version"] == "1.2.3+build.5"
