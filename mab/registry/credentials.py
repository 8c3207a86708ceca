"""Registry credentials: where docker keeps them, and where mab gets them to log in.

Reading follows docker's own order for a registry host (config.json in ``$DOCKER_CONFIG``
or ``~/.docker``): ``credHelpers[HOST]``, else ``credsStore`` (both run
``docker-credential-NAME get`` with the host on stdin), else ``auths[HOST]``.

Logging in takes the password from stdin, an environment variable named in builds.yaml
(``registries.HOST.password_env``) or the stdout of a ``login.command`` (cloud
registries: ``aws ecr get-login-password`` ...), and hands it to ``docker login
--password-stdin`` through the engine adapter. A password never goes into a process
argument list, a log line, a report or an error message: errors from the commands that
handle one are passed through ``redact`` first.

This module, the engine adapter and the registry launchers are the only places in mab
that start processes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mab import proc
from mab.config.models import RegistryAuth
from mab.errors import RegistryError, UsageError
from mab.secrets import REDACTED, redact, remember_secret

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
IDENTITY_TOKEN_USER = "<token>"  # noqa: S105 - docker's marker user name, not a secret
_HELPER_TIMEOUT = 60.0
_COMMAND_TIMEOUT = 300.0


# --- reading what docker stored -----------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """A user name and a password (or an identity token, for OAuth2 refresh)."""

    username: str
    secret: str = field(repr=False)
    source: str = "config.json"

    @property
    def identity_token(self) -> bool:
        return self.username == IDENTITY_TOKEN_USER

    @property
    def basic(self) -> str:
        """The base64 ``user:password`` of an HTTP Basic header (never logged)."""
        return base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()

    def __repr__(self) -> str:
        return (
            f"Credential(username={self.username!r}, secret={REDACTED!r}, source={self.source!r})"
        )


def docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def read_docker_config(config_dir: Path | None = None) -> dict[str, Any]:
    path = (config_dir or docker_config_dir()) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def server_key(host: str) -> str:
    """The key docker files a registry's credentials under (Docker Hub has its own)."""
    return DOCKER_HUB_KEY if host in _HUB_HOSTS else host


class HelperRunner(Protocol):
    def __call__(
        self, helper: str, action: str, stdin: str
    ) -> subprocess.CompletedProcess[str]: ...


def run_helper(helper: str, action: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """Run ``docker-credential-HELPER ACTION`` with *stdin*; the secret comes back on
    stdout, never in the argument list."""
    program = f"docker-credential-{helper}"
    try:
        return proc.call([program, action], stdin=stdin, timeout=_HELPER_TIMEOUT)
    except proc.ProgramNotFound:
        raise RegistryError(
            f"docker's config.json names the credential helper '{helper}', but {program} is "
            "not on PATH",
            hint=f"install {program}, or remove '{helper}' from credsStore/credHelpers in "
            f"{docker_config_dir() / 'config.json'}",
        ) from None
    except proc.ProcessTimedOut:
        raise RegistryError(
            f"credential helper {program} did not answer within {_HELPER_TIMEOUT:.0f}s",
            hint="unlock its keychain or run it by hand to see what it waits for",
        ) from None


def lookup(
    host: str, *, config_dir: Path | None = None, runner: HelperRunner = run_helper
) -> Credential | None:
    """The credential docker would use for *host*, or None (anonymous)."""
    config = read_docker_config(config_dir)
    key = server_key(host)
    helpers = config.get("credHelpers") or {}
    helper = helpers.get(key) or helpers.get(host) if isinstance(helpers, dict) else None
    helper = helper or config.get("credsStore")
    if isinstance(helper, str) and helper:
        return _from_helper(helper, key, runner)
    return _from_auths(config.get("auths") or {}, host)


def _from_helper(helper: str, key: str, runner: HelperRunner) -> Credential | None:
    done = runner(helper, "get", key)
    if done.returncode != 0:
        if "not found" in (done.stdout + done.stderr).lower():
            return None
        raise RegistryError(
            f"credential helper docker-credential-{helper} failed for {key}: "
            f"{_last_line(redact(done.stderr or done.stdout))}",
            hint=f"run 'echo {key} | docker-credential-{helper} get' to see why",
        )
    try:
        data = json.loads(done.stdout)
        username, secret = str(data["Username"]), str(data["Secret"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(
            f"credential helper docker-credential-{helper} gave no credential for {key}"
        ) from None
    remember_secret(secret, username)
    return Credential(username, secret, source=f"docker-credential-{helper}")


def _from_auths(auths: Any, host: str) -> Credential | None:
    if not isinstance(auths, dict):
        return None
    key = server_key(host)
    for candidate in (key, host, f"https://{host}", f"http://{host}"):
        entry = auths.get(candidate)
        if not isinstance(entry, dict):
            continue
        token = entry.get("identitytoken")
        if token:
            remember_secret(str(token))
            return Credential(IDENTITY_TOKEN_USER, str(token))
        if entry.get("auth"):
            try:
                user, _, secret = base64.b64decode(str(entry["auth"])).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            remember_secret(secret, user)
            return Credential(user, secret)
    return None


def stored_where(host: str, config_dir: Path | None = None) -> str:
    """Where ``docker login HOST`` put the credential: a helper, or config.json."""
    config = read_docker_config(config_dir)
    helpers = config.get("credHelpers") or {}
    helper = helpers.get(server_key(host)) if isinstance(helpers, dict) else None
    helper = helper or config.get("credsStore")
    if isinstance(helper, str) and helper:
        return f"credential helper docker-credential-{helper}"
    return str((config_dir or docker_config_dir()) / "config.json")


# --- getting a password to log in with ----------------------------------------------------


def password_from_stdin(text: str) -> str:
    """The password piped to mab: its first line, as ``docker login --password-stdin``."""
    password = text.split("\n", 1)[0].rstrip("\r")
    if not password:
        raise UsageError(
            "no password on stdin",
            hint="pipe it in, e.g. printenv REG_PASSWORD | mab login HOST -u USER --password-stdin",
        )
    remember_secret(password)
    return password


def password_from_env(name: str, what: str, *, secret: bool = True) -> str:
    """The value of environment variable *name* (a password unless *secret* is False)."""
    value = os.environ.get(name, "")
    if not value:
        raise UsageError(
            f"environment variable {name} ({what}) is not set or empty",
            hint=f"export {name} before running mab (in CI, from the CI system's secret store)",
        )
    if secret:
        remember_secret(value)
    return value


def command_argv(command: str | Sequence[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def password_from_command(command: str | Sequence[str], host: str) -> str:
    """Run a cloud registry's ``login.command`` and return its stdout, stripped."""
    argv = command_argv(command)
    shown = _shown(argv)
    try:
        done = proc.call(argv, timeout=_COMMAND_TIMEOUT)
    except proc.ProgramNotFound:
        raise RegistryError(
            f"login command for {host} not found: {argv[0]}",
            hint=f"install {argv[0]} (its cloud's CLI) or fix registries.{host}.login.command "
            "in builds.yaml",
        ) from None
    except proc.ProcessTimedOut:
        raise RegistryError(
            f"login command for {host} ({shown}) did not finish within {_COMMAND_TIMEOUT:.0f}s"
        ) from None
    password = done.stdout.strip()
    if done.returncode != 0 or not password:
        cause = _last_line(redact(done.stderr, [password])) or "it printed no password"
        raise RegistryError(
            f"login command for {host} ({shown}) failed (exit {done.returncode}): {cause}",
            hint="run it yourself to see why; cloud CLIs need their own login first "
            "(aws sso login, gcloud auth login, az login)",
        )
    remember_secret(password)
    return password


def _shown(argv: Sequence[str]) -> str:
    """The program and its subcommand words (``aws ecr get-login-password``), for messages;
    options and their values are left out."""
    words = [Path(argv[0]).name]
    for word in argv[1:3]:
        if not re.fullmatch(r"[A-Za-z][\w.-]{0,39}", word):
            break
        words.append(word)
    return " ".join(words) + (" ..." if len(argv) > len(words) else "")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass(frozen=True)
class LoginSecret:
    """What to hand to docker login (repr hides the password)."""

    host: str
    username: str
    password: str = field(repr=False)
    source: str


def secret_for(host: str, auth: RegistryAuth) -> LoginSecret:
    """The user name and password builds.yaml's ``registries.HOST`` entry leads to."""
    what = f"registries.{host}"
    if auth.username_env:
        username = password_from_env(auth.username_env, f"{what}.username_env", secret=False)
    else:
        username = auth.username or ""
    if auth.login is not None:
        password = password_from_command(auth.login.command, host)
        source = f"login.command ({command_argv(auth.login.command)[0]})"
    else:
        assert auth.password_env is not None  # the model requires one of the two
        password = password_from_env(auth.password_env, f"{what}.password_env")
        source = f"${auth.password_env}"
    remember_secret(password, username)
    return LoginSecret(host, username, password, source)


def login_failure(host: str, username: str, stderr: str, password: str) -> RegistryError:
    """One line, cause and fix, for a failed ``docker login`` (stderr redacted)."""
    text = redact(stderr, [password])
    low = text.lower()
    relogin = f"mab login {host} -u {username} --password-stdin"
    if "x509" in low or "certificate signed by unknown authority" in low:
        return RegistryError(
            f"cannot log in to {host}: its TLS certificate is signed by an unknown authority",
            hint=f"trust its CA: put it in /etc/docker/certs.d/{host}/ca.crt "
            "(mab registry up --tls does this for its own registry)",
        )
    if "unauthorized" in low or "incorrect username or password" in low or " 401" in low:
        if "expired" in low:
            return RegistryError(
                f"cannot log in to {host} as {username}: the token has expired",
                hint="get a fresh one (rerun the registry's login.command) and log in again",
            )
        return RegistryError(
            f"cannot log in to {host} as {username}: wrong user name or password",
            hint=f"check the password and log in again: {relogin}",
        )
    if "connection refused" in low or "no such host" in low or "i/o timeout" in low:
        return RegistryError(
            f"cannot log in to {host}: the registry does not answer",
            hint="is it running and is the host:port right? (mab registry up starts one)",
        )
    if "http response to https client" in low:
        return RegistryError(
            f"cannot log in to {host}: it speaks plain HTTP but docker expected HTTPS",
            hint="add it to dockerd's insecure-registries, or serve it with TLS "
            "(mab registry up --tls)",
        )
    return RegistryError(f"docker login {host} failed: {_last_line(text) or 'no output'}")
