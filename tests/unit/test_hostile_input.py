"""Hostile and malformed input (issue 13): sandboxed templates, bounded YAML, a stricter
model, redaction and credentials that are never echoed. Each test fails if its fix is
reverted: a command runs, a MemoryError or RecursionError escapes, a line is lost, or a
password shows in a message."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from mab.config import yamlsource
from mab.config.models import CACHE_PLACEHOLDERS
from mab.config.project import load_project
from mab.errors import ConfigError
from mab.planning import cache, templates
from mab.planning.plan import make_plan
from mab.planning.render import render_target, render_template
from mab.platforms import Platform
from mab.secrets import (
    REDACTED,
    CredentialsInValue,
    check_registry_string,
    looks_like_token,
    redact,
    remember_secret,
)

PASSWORD = "S3cretPassw0rd"


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert info.value.exit_code == 2
    return info.value


def one_issue(path: Path) -> str:
    """The only issue of loading *path*, with the folder stripped: ``builds.yaml:LINE: ...``."""
    (issue,) = error_of(path).issues
    return str(issue).replace(f"{path.parent}/", "")


# --- sandboxed templates ---------------------------------------------------------------------

ESCAPES = [
    "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}",
    "{{ joiner.__init__.__globals__.os.system('touch PWNED') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__['os'].system('touch PWNED') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "{% set x = namespace.__init__.__globals__ %}{{ x.os.system('touch PWNED') }}",
]


@pytest.mark.parametrize("escape", ESCAPES)
def test_a_template_cannot_reach_python(
    escape: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.Dockerfile.j2"
    path.write_text(f"FROM busybox\nRUN echo {escape}\n")
    with pytest.raises(ConfigError) as info:
        render_template(path, {}, target="x")
    (issue,) = info.value.issues
    assert (issue.file, issue.line) == (path, 2)
    assert "unsafe template" in issue.message
    assert "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()


def test_a_project_template_cannot_run_a_command_under_render(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project_dir)
    (project_dir / "t.j2").write_text(f"FROM busybox\n\nRUN true {ESCAPES[0]}\n")
    (project_dir / "builds.yaml").write_text(
        "targets:\n  app:\n    context: app\n    template: t.j2\n"
    )
    target = make_plan(load_project(project_dir / "builds.yaml")).targets[0]
    with pytest.raises(ConfigError, match=r"t\.j2:3: unsafe template"):
        render_target(target)
    assert not (project_dir / "PWNED").exists()


def test_a_template_cannot_build_a_huge_string(tmp_path: Path) -> None:
    path = tmp_path / "big.Dockerfile.j2"
    path.write_text("FROM busybox\nRUN echo {{ 'x' * 10 ** 10 }}\n")
    with pytest.raises(ConfigError, match="unsafe template"):
        render_template(path, {}, target="x")
    path.write_text("FROM busybox\nRUN echo {{ 'x' * size }}\n")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        render_template(path, {"size": 2**31}, target="x")
    assert render_template(path, {"size": 3}, target="x") == "FROM busybox\nRUN echo xxx\n"


def test_a_python_error_in_a_template_is_one_located_line(tmp_path: Path) -> None:
    path = tmp_path / "t.Dockerfile.j2"
    path.write_text("FROM busybox\n\nRUN echo {{ 1 / 0 }}\n")
    with pytest.raises(ConfigError) as info:
        render_template(path, {}, target="x")
    (issue,) = info.value.issues
    assert issue.line == 3 and "ZeroDivisionError" in issue.message


def test_an_include_stays_in_the_template_folder(tmp_path: Path) -> None:
    folder = tmp_path / "tpl"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("top-secret-value\n")
    (folder / "part.j2").write_text("RUN echo part\n")
    (folder / "link.j2").symlink_to(tmp_path / "secret.txt")
    path = folder / "t.Dockerfile.j2"
    path.write_text("FROM busybox\n{% include 'part.j2' %}")
    assert render_template(path, {}, target="x") == "FROM busybox\nRUN echo part\n"
    for name in ("link.j2", "../secret.txt", "/etc/passwd"):
        path.write_text(f"FROM busybox\n{{% include '{name}' %}}")
        with pytest.raises(ConfigError, match="template not found") as info:
            render_template(path, {}, target="x")
        assert "top-secret-value" not in str(info.value)


def test_template_paths_outside_the_project_are_refused(
    project_dir: Path, write_config: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "x.Dockerfile.j2"
    outside.write_text("FROM busybox\n")
    (project_dir / "in.j2").symlink_to(outside)
    relative = os.path.relpath(outside, project_dir)
    for value, why in [
        (str(outside), "is an absolute path"),
        (relative, "outside the folder of builds.yaml"),
        ("in.j2", "outside the folder of builds.yaml"),
    ]:
        path = write_config(f"targets:\n  app:\n    context: app\n    template: {value}\n")
        msg = one_issue(path)
        assert msg.startswith("builds.yaml:4: targets.app.template:"), msg
        assert why in msg and "allow_external_templates: true" in msg


def test_allow_external_templates_opts_in(
    project_dir: Path, write_config: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("shared") / "x.Dockerfile.j2"
    outside.write_text("FROM busybox:{{ target }}\n")
    path = write_config(
        f"allow_external_templates: true\ntargets:\n  app:\n    context: app\n"
        f"    template: {outside}\n"
    )
    target = make_plan(load_project(path)).targets[0]
    assert target.source.path == outside
    assert render_target(target) == "FROM busybox:app\n"


def test_a_named_template_symlinked_out_of_the_project_is_refused(
    project_dir: Path, write_config: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "passwd"
    outside.write_text("root:x:0:0\n")
    (project_dir / "templates").mkdir()
    (project_dir / "templates" / "mine.Dockerfile.j2").symlink_to(outside)
    msg = one_issue(write_config("targets:\n  app:\n    context: app\n    template: mine\n"))
    assert msg.startswith("builds.yaml:4: targets.app.template: template 'mine'")
    assert "outside the folder of builds.yaml" in msg
    assert "root:x" not in msg


@pytest.mark.parametrize("value", ["/etc/passwd", "docker/Dockerfile", "app/Dockerfile"])
def test_a_template_path_must_be_a_j2_file(value: str, write_config: Callable[[str], Path]) -> None:
    msg = one_issue(write_config(f"targets:\n  app:\n    context: app\n    template: {value}\n"))
    assert msg.startswith("builds.yaml:4: targets.app.template:")
    assert "is not a .j2 file" in msg


# --- bounded YAML --------------------------------------------------------------------------

BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


@pytest.fixture(params=["default", "pure-python"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each bound holds with libyaml's loader and with PyYAML's own."""
    if request.param == "pure-python":
        monkeypatch.setattr(yamlsource, "_Loader", yaml.SafeLoader)
    yield request.param


def test_libyaml_loader_is_used_when_available() -> None:
    expected = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    assert yamlsource._Loader is expected


def test_an_alias_bomb_fails_fast_at_its_line(
    loader: str, write_config: Callable[[str], Path]
) -> None:
    started = time.monotonic()
    msg = one_issue(write_config(BOMB + "targets:\n  app: {context: app}\n"))
    assert time.monotonic() - started < 5
    assert msg.startswith("builds.yaml:6: aliases expand to more than 100000 nodes"), msg


def test_a_few_aliases_still_work(loader: str, write_config: Callable[[str], Path]) -> None:
    project = load_project(
        write_config(
            "defaults:\n  labels: &l {team: core}\n"
            "targets:\n  app: {context: app, labels: *l}\n  web: {context: app, labels: *l}\n"
        )
    )
    assert project.config.targets["web"].labels == {"team": "core"}


def test_a_recursive_alias_is_a_located_error(
    loader: str, write_config: Callable[[str], Path]
) -> None:
    msg = one_issue(write_config("targets:\n  app:\n    context: app\n    vars: &v {x: *v}\n"))
    assert msg.startswith("builds.yaml:4: alias '*v' is inside its own anchor")


@pytest.mark.parametrize(
    "nested",
    [
        "targets: " + "[" * 900 + "]" * 900 + "\n",
        "targets:\n" + "".join("  " * i + f" k{i}:\n" for i in range(1, 900)),
        "targets: " + "[" * 200_000 + "\n",
    ],
    ids=["flow-900", "block-900", "flow-200000"],
)
def test_deep_nesting_is_a_located_error(
    nested: str, loader: str, write_config: Callable[[str], Path]
) -> None:
    try:
        msg = one_issue(write_config(nested))
    except RecursionError:  # pragma: no cover - the regression this test is for
        pytest.fail("RecursionError escaped")
    assert msg.startswith("builds.yaml:"), msg
    assert "nested more than 100 levels" in msg or "nesting depth" in msg
    assert int(msg.split(":")[1]) >= 1


def test_a_nul_byte_is_reported_with_its_line(
    loader: str, write_config: Callable[[str], Path]
) -> None:
    msg = one_issue(write_config("targets:\n  app:\n    context: app\x00\n"))
    assert msg.startswith("builds.yaml:3: control character U+0000 at column 17")


def test_a_non_utf8_byte_is_reported_with_its_line(project_dir: Path) -> None:
    path = project_dir / "builds.yaml"
    path.write_bytes(b"targets:\n  app:\n    context: app\n    args: {X: caf\xe9}\n")
    msg = one_issue(path)
    assert msg.startswith("builds.yaml:4: not UTF-8: byte 0xe9 at column 18")


def test_builds_yaml_over_the_size_cap(project_dir: Path) -> None:
    path = project_dir / "builds.yaml"
    path.write_text("targets:\n  app: {context: app}\n" + "#" * yamlsource.MAX_BYTES)
    assert "larger than 1 MiB" in one_issue(path)


def test_a_folder_is_not_builds_yaml(tmp_path: Path) -> None:
    assert "not a regular file (a folder)" in one_issue(tmp_path)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_refused_without_reading_it() -> None:
    assert "not a regular file" in str(error_of(Path("/dev/zero")))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "builds.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_project(fifo)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "load_project blocked on a FIFO"
    (error,) = outcome
    assert isinstance(error, ConfigError) and "not a regular file" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("targets:\n  app:\n    context: app\n  on:\n    context: app\n", 4, "targets.on"),
        (
            "targets:\n  app:\n    context: app\n    args:\n      yes: x\n",
            5,
            "targets.app.args.yes",
        ),
        ("off: 1\ntargets:\n  app: {context: app}\n", 1, "off"),
    ],
)
def test_a_yaml11_boolean_key_is_reported_at_its_line(
    text: str, line: int, field: str, loader: str, write_config: Callable[[str], Path]
) -> None:
    msg = one_issue(write_config(text))
    assert msg.startswith(f"builds.yaml:{line}: {field}: key "), msg
    assert "read by YAML as the boolean" in msg and "quote it" in msg


def test_duplicate_keys_and_lines_with_either_loader(
    loader: str, write_config: Callable[[str], Path]
) -> None:
    msg = one_issue(
        write_config("targets:\n  app:\n    context: app\n    tags: [a]\n    tags: [b]\n")
    )
    assert msg.startswith("builds.yaml:5: targets.app.tags: duplicate key 'tags'")
    msg = one_issue(write_config("targets:\n  app:\n    context: app\n    tags: [ok, -bad]\n"))
    assert msg.startswith("builds.yaml:4: targets.app.tags[1]: invalid tag '-bad'")


# --- the stricter model --------------------------------------------------------------------


def test_concurrency_is_a_number_not_a_boolean(write_config: Callable[[str], Path]) -> None:
    msg = one_issue(write_config("concurrency: true\ntargets:\n  app: {context: app}\n"))
    assert msg == "builds.yaml:1: concurrency: expected a number, got the boolean true"
    msg = one_issue(
        write_config("targets:\n  app:\n    context: app\n    tags: [{git: {sha_length: no}}]\n")
    )
    assert "targets.app.tags[0].git.sha_length: expected a number" in msg


def test_a_target_with_no_platforms_is_an_error(write_config: Callable[[str], Path]) -> None:
    msg = one_issue(write_config("targets:\n  app:\n    context: app\n    platforms: []\n"))
    assert msg.startswith("builds.yaml:4: targets.app.platforms: an empty list builds nothing")


def test_a_target_name_has_a_length_limit(write_config: Callable[[str], Path]) -> None:
    name = "a" * 300
    msg = one_issue(write_config(f"targets:\n  {name}:\n    context: app\n"))
    assert msg.startswith("builds.yaml:2: targets.")
    assert "300 characters long; at most 128" in msg
    assert name not in msg  # the field is shortened too
    load_project(write_config(f"targets:\n  {'a' * 128}:\n    context: app\n"))


@pytest.mark.parametrize("budget", ["0", "0B", "true"])
def test_a_size_budget_is_above_zero(budget: str, write_config: Callable[[str], Path]) -> None:
    msg = one_issue(
        write_config(f"targets:\n  app:\n    context: app\n    size_budget: {budget}\n")
    )
    assert msg.startswith("builds.yaml:4: targets.app.size_budget:")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ref", "'{repository}:{plat}'", "unknown placeholder '{plat}'"),
        ("ref", "'{repository}:{platform'", "unbalanced brace"),
        ("dir", "'cache/{target}}'", "unbalanced brace"),
        ("scope", "'{}-{target}'", "unknown placeholder '{}'"),
    ],
)
def test_cache_placeholders_are_checked(
    key: str, value: str, message: str, write_config: Callable[[str], Path]
) -> None:
    msg = one_issue(write_config(f"cache:\n  {key}: {value}\ntargets:\n  app: {{context: app}}\n"))
    assert msg.startswith(f"builds.yaml:2: cache.{key}: {message}")
    assert "{repository}, {target}, {platform}" in msg


def test_cache_placeholders_match_what_the_cache_fills() -> None:
    spec = {name: "{" + name + "}" for name in CACHE_PLACEHOLDERS}
    filled = cache.fill_spec(spec, "r/app", "app", Platform.parse("linux/arm64"))
    assert not any("{" in value for value in filled.values())


def test_a_duplicate_builder_is_reported_at_its_own_line(
    write_config: Callable[[str], Path],
) -> None:
    msg = one_issue(
        write_config(
            "concurrency: 2\nbuilders:\n  - name: a\n    platforms: [linux/amd64]\n"
            "  - name: a\n    platforms: [linux/arm64]\ntargets:\n  app: {context: app}\n"
        )
    )
    assert msg.startswith("builds.yaml:5: builders[1].name: name used twice: a")


@pytest.mark.parametrize(
    ("value", "message"),
    [("''", "a runner label is not empty"), ("[ok, '']", "a runner label is not empty")],
)
def test_a_runner_label_error_is_plain(
    value: str, message: str, write_config: Callable[[str], Path]
) -> None:
    msg = one_issue(
        write_config(
            f"ci:\n  runners:\n    linux/amd64: {value}\ntargets:\n  app: {{context: app}}\n"
        )
    )
    assert msg == f"builds.yaml:3: ci.runners.linux/amd64: {message}"


def test_runner_labels_still_take_a_label_or_a_list(write_config: Callable[[str], Path]) -> None:
    project = load_project(
        write_config(
            "ci:\n  runners: {linux/amd64: ubuntu-24.04, linux/arm64: [self-hosted, arm64]}\n"
            "targets:\n  app: {context: app}\n"
        )
    )
    assert project.config.ci.runners == {
        "linux/amd64": "ubuntu-24.04",
        "linux/arm64": ["self-hosted", "arm64"],
    }
    msg = one_issue(
        write_config("ci:\n  runners: {linux/amd64: 5}\ntargets:\n  app: {context: app}\n")
    )
    assert "function-after" not in msg and "a runner label is a string" in msg


def test_contexts_outside_the_project_are_warnings(
    project_dir: Path, write_config: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (project_dir / "link").symlink_to(outside)
    relative = os.path.relpath(outside, project_dir)
    project = load_project(
        write_config(
            "targets:\n"
            f"  up:\n    context: {relative}\n"
            f"  abs:\n    context: {outside}\n"
            "  link:\n    context: link\n"
            f"  inside:\n    context: {project_dir / 'app'}\n"
            "  fine:\n    context: app/../app\n"
        )
    )
    warnings = [str(w).replace(f"{project_dir}/", "") for w in project.warnings]
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("builds.yaml:3: targets.up.context: the build context is outside")
    assert "through '..'" in warnings[0]
    assert warnings[1].startswith("builds.yaml:5: targets.abs.context:")
    assert "an absolute path" in warnings[1]
    assert warnings[2].startswith("builds.yaml:7: targets.link.context:")
    assert "through a symlink" in warnings[2]


def test_build_args_named_like_secrets_are_warnings(write_config: Callable[[str], Path]) -> None:
    project = load_project(
        write_config(
            "targets:\n  app:\n    context: app\n    args:\n      VERSION: 1\n"
            "      DB_PASSWORD: hunter2\n      API_TOKEN: x\n"
        )
    )
    warnings = [str(w).replace(f"{project.base_dir}/", "") for w in project.warnings]
    assert [w.split(" build arg")[0] for w in warnings] == [
        "builds.yaml:6: targets.app.args.DB_PASSWORD:",
        "builds.yaml:7: targets.app.args.API_TOKEN:",
    ]
    assert "secrets:" in warnings[0] and "hunter2" not in warnings[0]
    assert load_project(write_config("targets:\n  app: {context: app}\n")).warnings == ()


# --- redaction and credentials ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("remote HTTPS://robot:pw-123@git.example.com/org/repo.git", "pw-123"),
        ("https://robot:p@ss@git.example.com/x", "p@ss"),
        ("Git+SSH://robot:tok-en@host/x", "tok-en"),
        ('"registry": "robot:S3cretPassw0rd@127.0.0.1:1"', PASSWORD),
        ("cannot reach registry robot:p@ss-word@127.0.0.1:1", "ss-word"),
        ("token ghp_" + "a1B2" * 9 + " used", "ghp_"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstu", "github_pat_"),
        ("glpat-abcdefghij0123456789", "glpat-"),
        ("key AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("Authorization: Bearer abc.def-ghi123", "abc.def-ghi123"),
        ("authorization: basic cm9ib3Q6UzNjcmV0UGFzc3cwcmQ=", "cm9ib3Q6UzNjcmV0UGFzc3cwcmQ="),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_Xg ok",
            "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
        ),
    ],
)
def test_redact_hides_userinfo_and_token_shapes(text: str, hidden: str) -> None:
    out = redact(text)
    assert hidden not in out and REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "docker-image://golang@sha256:" + "a" * 64,
        "docker.io/library/alpine:3.19@sha256:" + "b" * 64,
        "git@github.com:org/repo.git",
        'WWW-Authenticate: Bearer realm="https://auth.docker.io/token",service="x"',
        "Basic authentication failed",
        "+ docker buildx build --build-context a:1=docker-image://m:5000/a:1 --secret id=x,src=/f",
        "pushed localhost:5000/app:1.0 (http://localhost:5000/v2/)",
    ],
)
def test_redact_leaves_what_is_not_a_secret(text: str) -> None:
    assert redact(text) == text


def test_redact_keeps_its_api() -> None:
    remember_secret("known-secret-1")
    assert redact("a known-secret-1 b other-1", ["other-1"]) == f"a {REDACTED} b {REDACTED}"


def test_check_registry_string_refuses_credentials_without_repeating_them() -> None:
    value = f"robot:{PASSWORD}@registry.example.com/team"
    with pytest.raises(CredentialsInValue) as info:
        check_registry_string(value, "MAB_DEFAULT_REGISTRY")
    message = str(info.value)
    assert message.startswith("MAB_DEFAULT_REGISTRY holds credentials")
    assert PASSWORD not in message and "robot" not in message
    with pytest.raises(CredentialsInValue):
        check_registry_string("robot:p@ss@host:5000", "registry host", allow_path=False)
    assert check_registry_string(" ghcr.io/acme/ ") == "ghcr.io/acme"
    with pytest.raises(ValueError, match="without 'https://'"):
        check_registry_string("https://ghcr.io/acme")
    with pytest.raises(ValueError, match="longer than 255"):
        check_registry_string("a" * 256)


def test_a_registry_with_credentials_is_an_error_that_hides_them(
    write_config: Callable[[str], Path],
) -> None:
    error = error_of(
        write_config(
            f"registry: robot:{PASSWORD}@registry.example.com/team\n"
            "targets:\n  app: {context: app}\n"
        )
    )
    assert PASSWORD not in str(error) and "robot" not in str(error)
    assert str(error.issues[0]).endswith(
        "builds.yaml:1: registry: registry holds credentials (USER:PASSWORD@ before the host; "
        "not shown here): write only HOST[:PORT][/PATH] and log in with mab login, or a "
        "registries: entry with password_env"
    )


def test_a_registries_key_with_credentials_hides_them_in_field_and_message(
    write_config: Callable[[str], Path],
) -> None:
    error = error_of(
        write_config(
            "concurrency: 2\nregistries:\n"
            f"  robot:{PASSWORD}@registry.example.com:\n    username: robot\n"
            "    password_env: REG_PASSWORD\ntargets:\n  app: {context: app}\n"
        )
    )
    (issue,) = error.issues
    assert PASSWORD not in str(error) and issue.line == 3
    assert issue.field == f"registries.{REDACTED}@registry.example.com"
    assert "holds credentials" in issue.message


def test_a_secret_file_that_holds_a_token_is_refused_unseen(
    project_dir: Path, write_config: Callable[[str], Path]
) -> None:
    token = "ghp_" + "Zq9" * 12
    error = error_of(
        write_config(
            f"targets:\n  app:\n    context: app\n    secrets:\n      npmrc: {{file: {token}}}\n"
        )
    )
    assert token not in str(error)
    assert str(error.issues[0]).endswith(
        "builds.yaml:5: targets.app.secrets.npmrc.file: looks like a secret value, not a path "
        "(not shown here): write the path of a file that holds the secret, or use env: NAME"
    )
    (project_dir / token).write_text("a file may have any name\n")
    load_project(
        write_config(
            f"targets:\n  app:\n    context: app\n    secrets:\n      npmrc: {{file: {token}}}\n"
        )
    )


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("pip.conf", False),
        (".npmrc", False),
        ("secrets/npm-token-2024.txt", False),
        ("GOOGLE_APPLICATION_CREDENTIALS", False),
        (PASSWORD, True),
        ("glpat-abcdefghij0123456789", True),
        ("Xk9#mP2$vL8nQ4wR", True),
    ],
)
def test_looks_like_token(value: str, token: bool) -> None:
    assert looks_like_token(value) is token


def test_builtin_templates_still_render_in_the_sandbox() -> None:
    path = templates.builtin_dir() / f"go{templates.SUFFIX}"
    assert "FROM" in render_template(path, {"main": "."}, target="demo")
