"""Every validation error class: its message, its line and its field, without Docker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mab.config.project import load_project
from mab.errors import ConfigError


def errors_of(write: Callable[[str], Path], text: str) -> list[str]:
    path = write(text)
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert info.value.exit_code == 2
    # Messages name the file as given; strip the temporary folder to compare.
    return [str(issue).replace(f"{path.parent}/", "") for issue in info.value.issues]


def test_valid_file_loads_with_defaults(write_config: Callable[[str], Path]) -> None:
    project = load_project(write_config("targets:\n  app:\n    context: app\n"))
    cfg = project.config
    assert cfg.registry is None
    assert cfg.platforms == ["linux/amd64", "linux/arm64"]
    assert cfg.targets["app"].tags is None  # the plan falls back to defaults, then [latest]
    assert cfg.targets["app"].dockerfile is None


def test_unknown_key_suggests_closest(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(
        write_config, "targets:\n  app:\n    context: app\n    platfroms: [linux/amd64]\n"
    )
    assert msg.startswith("builds.yaml:4: targets.app.platfroms: unknown key 'platfroms'")
    assert "did you mean 'platforms'?" in msg


def test_unknown_top_level_key(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "regsitry: x\ntargets:\n  app: {context: app}\n")
    assert "builds.yaml:1: regsitry: unknown key 'regsitry'; did you mean 'registry'?" in msg


def test_platform_alias_is_normalised(write_config: Callable[[str], Path]) -> None:
    project = load_project(
        write_config("platforms: [linux/arm64/v8, linux/arm]\ntargets:\n  app: {context: app}\n")
    )
    assert project.config.platforms == ["linux/arm64", "linux/arm/v7"]


def test_unknown_platform_lists_valid_forms(write_config: Callable[[str], Path]) -> None:
    msgs = errors_of(
        write_config,
        "targets:\n  app:\n    context: app\n    platforms:\n      - linux/amd64\n"
        "      - linux/sparc\n      - arm64\n",
    )
    assert len(msgs) == 2
    assert msgs[0].startswith("builds.yaml:6: targets.app.platforms[1]: unknown platform")
    assert "Valid: linux/amd64, linux/arm64, linux/arm/v7" in msgs[0]
    assert msgs[1].startswith("builds.yaml:7: targets.app.platforms[2]: 'arm64' is not a platform")
    assert "e.g. 'linux/arm64'" in msgs[1]


def test_wrong_type(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "targets:\n  app:\n    context: app\n    tags: latest\n")
    assert msg.startswith("builds.yaml:4: targets.app.tags:")
    assert "valid list" in msg and "'latest'" in msg


def test_wrong_type_for_concurrency(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "concurrency: many\ntargets:\n  app: {context: app}\n")
    assert msg.startswith("builds.yaml:1: concurrency:")


def test_missing_context_folder(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "targets:\n  app:\n    context: nope\n")
    assert msg.startswith(
        "builds.yaml:3: targets.app.context: context folder 'nope' does not exist"
    )


def test_missing_dockerfile(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(
        write_config, "targets:\n  app:\n    context: app\n    dockerfile: Other.Dockerfile\n"
    )
    assert msg.startswith("builds.yaml:4: targets.app.dockerfile: Dockerfile not found")
    assert "Other.Dockerfile" in msg


def test_default_dockerfile_missing_points_at_target(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "targets:\n  go:\n    context: goapp\n")
    assert msg.startswith("builds.yaml:2: targets.go.dockerfile: Dockerfile not found")


def test_missing_template_lists_available(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "targets:\n  app:\n    context: goapp\n    template: goo\n")
    assert msg.startswith("builds.yaml:4: targets.app.template: template 'goo' not found")
    assert "did you mean 'go'?" in msg
    assert "available: " in msg and "go" in msg


def test_dockerfile_and_template_are_exclusive(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(
        write_config, "targets:\n  app: {context: app, template: go, dockerfile: Dockerfile}\n"
    )
    assert "builds.yaml:2: targets.app: give either 'dockerfile' or 'template', not both" in msg


def test_duplicate_key(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(
        write_config, "targets:\n  app:\n    context: app\n    tags: [a]\n    tags: [b]\n"
    )
    assert msg.startswith("builds.yaml:5: targets.app.tags: duplicate key 'tags'")
    assert "first defined on line 4" in msg


def test_yaml_syntax_error(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "targets:\n  app:\n    context: app\n    tags: [a, b\n")
    assert "YAML syntax error" in msg
    assert "on line 4" in msg


def test_yaml_bad_indentation(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "targets:\n  app:\n    context: app\n   tags: [a]\n")
    assert msg.startswith("builds.yaml:4: YAML syntax error")


def test_invalid_tag(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "targets:\n  app:\n    context: app\n    tags: [ok, -bad]\n")
    assert msg.startswith("builds.yaml:4: targets.app.tags[1]: invalid tag '-bad'")


def test_numeric_tag_and_args_become_strings(write_config: Callable[[str], Path]) -> None:
    project = load_project(
        write_config(
            "targets:\n  app:\n    context: app\n    tags: [1.0, 2]\n    args: {N: 3, F: true}\n"
        )
    )
    target = project.config.targets["app"]
    assert target.tags == ["1.0", "2"]
    assert target.args == {"N": "3", "F": "true"}


def test_invalid_target_name(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "targets:\n  Bad_Name:\n    context: app\n")
    assert msg.startswith("builds.yaml:2: targets.Bad_Name: invalid target name 'Bad_Name'")


def test_invalid_registry(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "registry: 'Local Host'\ntargets:\n  app: {context: app}\n")
    assert msg.startswith("builds.yaml:1: registry: invalid registry")


def test_missing_targets(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "platforms: [linux/amd64]\n")
    assert msg == "builds.yaml:1: targets: required field is missing"


def test_top_level_must_be_mapping(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "- a\n- b\n")
    assert "expected a mapping" in msg


def test_several_errors_reported_together(write_config: Callable[[str], Path]) -> None:
    msgs = errors_of(
        write_config,
        "targets:\n  a:\n    context: app\n    tagz: [x]\n  b:\n    context: app\n    stagee: x\n",
    )
    assert [m.split(": ")[0] for m in msgs] == ["builds.yaml:4", "builds.yaml:7"]


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path / "builds.yaml")
    assert "file not found" in str(info.value)
    assert info.value.hint is not None


def test_registry_with_credentials_does_not_echo_them(write_config: Callable[[str], Path]) -> None:
    text = "registry: robot:S3cretPassw0rd@r.example.com\ntargets:\n  app: {context: app}\n"
    (msg,) = errors_of(write_config, text)
    assert msg.startswith("builds.yaml:1: registry: registry holds credentials")
    assert "S3cretPassw0rd" not in msg


def test_stricter_numbers_and_lists(write_config: Callable[[str], Path]) -> None:
    (msg,) = errors_of(write_config, "concurrency: false\ntargets:\n  app: {context: app}\n")
    assert msg == "builds.yaml:1: concurrency: expected a number, got the boolean false"
    (msg,) = errors_of(write_config, "targets:\n  app:\n    context: app\n    size_budget: 0\n")
    assert msg.startswith("builds.yaml:4: targets.app.size_budget: a size budget is above 0")
    (msg,) = errors_of(write_config, "targets:\n  app:\n    context: app\n    platforms: []\n")
    assert msg.startswith("builds.yaml:4: targets.app.platforms: an empty list builds nothing")


def test_allow_external_templates_defaults_off(write_config: Callable[[str], Path]) -> None:
    project = load_project(write_config("targets:\n  app: {context: app}\n"))
    assert project.config.allow_external_templates is False
    assert project.warnings == ()
