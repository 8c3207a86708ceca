"""Credential lookup (docker's config.json, credsStore, credHelpers), password sources,
redaction, login error messages and builds.yaml's registries: entries."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mab import secrets as redaction
from mab.config.models import RegistryAuth
from mab.config.project import load_project
from mab.errors import ConfigError, RegistryError, UsageError
from mab.registry import credentials
from mab.registry.credentials import Credential, LoginSecret
from mab.registry.login import login_for_build


def write_config(folder: Path, data: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(data))
    return folder


class FakeHelper:
    """Stands in for docker-credential-NAME: answers 'get' from a table."""

    def __init__(self, answers: dict[str, tuple[str, str]], fail: str | None = None) -> None:
        self.answers = answers
        self.fail = fail
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, helper: str, action: str, stdin: str) -> subprocess.CompletedProcess[str]:
        self.calls.append((helper, action, stdin))
        if self.fail is not None:
            return subprocess.CompletedProcess([], 1, "", self.fail)
        if stdin not in self.answers:
            return subprocess.CompletedProcess(
                [], 1, "credentials not found in native keychain", ""
            )
        user, secret = self.answers[stdin]
        body = json.dumps({"ServerURL": stdin, "Username": user, "Secret": secret})
        return subprocess.CompletedProcess([], 0, body, "")


def test_auths_entry_is_decoded(tmp_path: Path) -> None:
    auth = base64.b64encode(b"me:s3cret:with:colons").decode()
    folder = write_config(tmp_path, {"auths": {"reg.test:5000": {"auth": auth}}})
    found = credentials.lookup("reg.test:5000", config_dir=folder)
    assert found == Credential("me", "s3cret:with:colons")
    assert found is not None and found.basic == auth
    assert credentials.lookup("other.test", config_dir=folder) is None
    assert "s3cret" not in repr(found)


def test_auths_accepts_scheme_prefixed_keys_and_identity_tokens(tmp_path: Path) -> None:
    folder = write_config(
        tmp_path,
        {
            "auths": {
                "https://reg.test": {"auth": base64.b64encode(b"a:b-pass").decode()},
                "acr.test": {"auth": "", "identitytoken": "refresh-tok"},
            }
        },
    )
    assert credentials.lookup("reg.test", config_dir=folder) == Credential("a", "b-pass")
    token = credentials.lookup("acr.test", config_dir=folder)
    assert token is not None and token.identity_token and token.secret == "refresh-tok"


def test_cred_helpers_win_over_creds_store_and_auths(tmp_path: Path) -> None:
    folder = write_config(
        tmp_path,
        {
            "auths": {"ecr.test": {"auth": base64.b64encode(b"old:stale").decode()}},
            "credsStore": "desktop",
            "credHelpers": {"ecr.test": "ecr-login"},
        },
    )
    helper = FakeHelper({"ecr.test": ("AWS", "tok-1"), "hub.test": ("me", "pw-2")})
    assert credentials.lookup("ecr.test", config_dir=folder, runner=helper) == Credential(
        "AWS", "tok-1", source="docker-credential-ecr-login"
    )
    assert credentials.lookup("hub.test", config_dir=folder, runner=helper) == Credential(
        "me", "pw-2", source="docker-credential-desktop"
    )
    assert credentials.lookup("none.test", config_dir=folder, runner=helper) is None
    # the host goes to the helper on stdin, never as an argument
    assert helper.calls[0] == ("ecr-login", "get", "ecr.test")


def test_docker_hub_uses_dockers_own_key(tmp_path: Path) -> None:
    key = credentials.DOCKER_HUB_KEY
    folder = write_config(tmp_path, {"auths": {key: {"auth": base64.b64encode(b"u:p").decode()}}})
    for host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert credentials.lookup(host, config_dir=folder) == Credential("u", "p")


def test_a_broken_helper_is_one_line_and_redacted(tmp_path: Path) -> None:
    folder = write_config(tmp_path, {"credsStore": "pass"})
    redaction.remember_secret("leaky-secret-value")
    helper = FakeHelper({}, fail="gpg: decryption failed for leaky-secret-value")
    with pytest.raises(RegistryError) as info:
        credentials.lookup("reg.test", config_dir=folder, runner=helper)
    assert "docker-credential-pass failed for reg.test" in info.value.message
    assert "leaky-secret-value" not in info.value.message


def test_a_missing_helper_names_itself_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as info:
        credentials.run_helper("mab-test-no-such-helper", "get", "reg.test")
    assert "docker-credential-mab-test-no-such-helper is not on PATH" in info.value.message
    assert info.value.hint is not None and "credsStore" in info.value.hint


def test_redact_hides_known_secrets_and_their_basic_form() -> None:
    redaction.remember_secret("hunter2-long", username="bob")
    basic = base64.b64encode(b"bob:hunter2-long").decode()
    text = f"Authorization: Basic {basic}; password hunter2-long; other {'x' * 3}"
    out = redaction.redact(text, ["xxx"])
    assert "hunter2-long" not in out and basic not in out and "xxx" not in out
    assert out.count(redaction.REDACTED) == 3


def test_password_from_stdin_takes_the_first_line() -> None:
    assert credentials.password_from_stdin("p@ss word\r\nignored\n") == "p@ss word"
    with pytest.raises(UsageError, match="no password on stdin"):
        credentials.password_from_stdin("\n")


def test_password_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAB_TEST_PW", "from-env-1")
    assert credentials.password_from_env("MAB_TEST_PW", "test") == "from-env-1"
    monkeypatch.delenv("MAB_TEST_PW")
    with pytest.raises(UsageError, match="MAB_TEST_PW"):
        credentials.password_from_env("MAB_TEST_PW", "test")


def test_login_command_stdout_is_the_password() -> None:
    script = "import sys; print('tok-from-cli '); print('warn', file=sys.stderr)"
    assert credentials.password_from_command([sys.executable, "-c", script], "r.test") == (
        "tok-from-cli"
    )


def test_login_command_failure_never_shows_its_output() -> None:
    script = (
        "import sys; print('half-a-token'); print('denied: expired', file=sys.stderr); sys.exit(3)"
    )
    with pytest.raises(RegistryError) as info:
        credentials.password_from_command([sys.executable, "-c", script], "r.test")
    assert "failed (exit 3): denied: expired" in info.value.message
    assert "half-a-token" not in info.value.message
    with pytest.raises(RegistryError, match="not found: mab-no-such-cloud-cli"):
        credentials.password_from_command("mab-no-such-cloud-cli get-token", "r.test")


def test_secret_for_a_registries_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REG_USER", "robot")
    monkeypatch.setenv("REG_PASSWORD", "pw-from-ci")
    auth = RegistryAuth(username_env="REG_USER", password_env="REG_PASSWORD")
    secret = credentials.secret_for("reg.test", auth)
    assert (secret.username, secret.password, secret.source) == (
        "robot",
        "pw-from-ci",
        "$REG_PASSWORD",
    )
    assert "pw-from-ci" not in repr(secret)
    cloud = RegistryAuth.model_validate(
        {"username": "AWS", "login": {"command": [sys.executable, "-c", "print('ecr-token')"]}}
    )
    assert credentials.secret_for("ecr.test", cloud).password == "ecr-token"


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            'Error response from daemon: Get "https://r.test/v2/": unauthorized: incorrect '
            "username or password",
            "wrong user name or password",
        ),
        ("x509: certificate signed by unknown authority", "signed by an unknown authority"),
        ("dial tcp 127.0.0.1:1: connect: connection refused", "the registry does not answer"),
        ("unauthorized: Your authorization token has expired.", "the token has expired"),
        ("http: server gave HTTP response to HTTPS client", "speaks plain HTTP"),
        ("something new: pw-in-stderr", "failed: something new: ********"),
    ],
)
def test_login_failures_are_one_line_with_a_fix(stderr: str, expected: str) -> None:
    error = credentials.login_failure("r.test", "me", stderr, "pw-in-stderr")
    assert expected in error.message
    assert "\n" not in error.message and "pw-in-stderr" not in error.message


def test_login_for_build_logs_in_only_where_builds_yaml_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "builds.yaml").write_text(
        "registry: reg.test/team\n"
        "registries:\n"
        "  reg.test:\n"
        "    username: robot\n"
        "    password_env: REG_PASSWORD\n"
        "targets:\n"
        "  app: {context: app}\n"
    )
    monkeypatch.setenv("REG_PASSWORD", "ci-secret-9")
    config = load_project(tmp_path / "builds.yaml").config
    calls: list[tuple[str, str, str]] = []

    def login(server: str, username: str, password: str) -> str:
        calls.append((server, username, password))
        return "Login Succeeded"

    hosts = ["reg.test", "other.test", "reg.test"]
    done = login_for_build(config, hosts, login)
    assert done == ["reg.test"]
    assert calls == [("reg.test", "robot", "ci-secret-9")]


def write_builds(tmp_path: Path, registries: str) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "builds.yaml"
    path.write_text("registries:\n" + registries + "targets:\n  app: {context: app}\n")
    return path


def test_builds_yaml_refuses_secret_values_with_file_and_line(tmp_path: Path) -> None:
    path = write_builds(tmp_path, "  reg.test:\n    username: robot\n    password: hunter2\n")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    text = str(info.value)
    assert f"{path}:2: registries.reg.test:" in text
    assert "would put a secret in builds.yaml" in text and "hunter2" not in text


def test_builds_yaml_env_names_are_names_not_values(tmp_path: Path) -> None:
    path = write_builds(tmp_path, "  reg.test:\n    username: robot\n    password_env: 'p@ss!'\n")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    text = str(info.value)
    assert f"{path}:4: registries.reg.test.password_env: must name an environment variable" in text
    assert "p@ss!" not in text


def test_builds_yaml_needs_one_password_source(tmp_path: Path) -> None:
    path = write_builds(tmp_path, "  reg.test:\n    username: robot\n")
    with pytest.raises(ConfigError, match="exactly one of 'password_env' and 'login'"):
        load_project(path)
    path = write_builds(
        tmp_path,
        "  123.dkr.ecr.eu-west-1.amazonaws.com:\n    username: AWS\n"
        "    login: {command: aws ecr get-login-password --region eu-west-1}\n",
    )
    auth = load_project(path).config.registries["123.dkr.ecr.eu-west-1.amazonaws.com"]
    assert auth.login is not None
    assert credentials.command_argv(auth.login.command)[:3] == ["aws", "ecr", "get-login-password"]


def test_login_secret_repr_hides_the_password() -> None:
    assert "topsecret" not in repr(LoginSecret("r", "u", "topsecret", "stdin"))
