"""Logging in: where a password comes from, checking it against the registry, and
handing it to ``docker login`` (through the engine) so docker stores it.

The password comes from stdin, an environment variable, builds.yaml's ``registries:``
entry (``password_env`` or ``login.command``) or a prompt; never from the command line.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterable
from pathlib import Path

from mab.config.models import BuildsConfig
from mab.config.project import load_project
from mab.errors import RegistryError, UsageError
from mab.registry import credentials
from mab.registry.client import RegistryClient
from mab.secrets import remember_secret

LoginFn = Callable[[str, str, str], object]


def login_for_build(config: BuildsConfig, hosts: Iterable[str], login: LoginFn) -> list[str]:
    """``docker login`` (*login*: server, user, password) to every registry in *hosts*
    that builds.yaml gives credentials for (``registries:``), before a build pushes
    there. A host without an entry is left to what docker already stored. Returns the
    hosts logged in to."""
    done: list[str] = []
    for host in dict.fromkeys(hosts):
        auth = config.registries.get(host)
        if auth is None:
            continue
        secret = credentials.secret_for(host, auth)
        login(host, secret.username, secret.password)
        done.append(host)
    return done


def login_secret(
    host: str,
    username: str | None,
    *,
    stdin: str | None,
    password_env: str | None,
    file: Path,
    interactive: bool,
) -> credentials.LoginSecret:
    """The user name and password for ``mab login``: *stdin* (the text read from it, with
    --password-stdin), *password_env*, builds.yaml's entry for *host*, else a prompt
    when *interactive*."""
    if stdin is not None and password_env:
        raise UsageError("give either --password-stdin or --password-env, not both")
    if stdin is None and password_env is None and file.is_file():
        auth = load_project(file).config.registries.get(host)
        if auth is not None:
            secret = credentials.secret_for(host, auth)
            if username and username != secret.username:
                secret = credentials.LoginSecret(host, username, secret.password, secret.source)
            return secret
    if username is None:
        raise UsageError(
            f"no user name for {host}",
            hint=f"give -u USER, or a 'registries: {host}:' entry in builds.yaml",
        )
    if stdin is not None:
        return credentials.LoginSecret(
            host, username, credentials.password_from_stdin(stdin), "stdin"
        )
    if password_env:
        value = credentials.password_from_env(password_env, "--password-env")
        return credentials.LoginSecret(host, username, value, f"${password_env}")
    if interactive:
        typed = getpass.getpass(f"password for {username} at {host}: ")
        remember_secret(typed)
        return credentials.LoginSecret(host, username, typed, "prompt")
    raise UsageError(
        "no password given: mab never takes one on the command line",
        hint=f"pipe it: printenv REG_PASSWORD | mab login {host} -u {username} "
        "--password-stdin, or use --password-env NAME",
    )


def check_password(secret: credentials.LoginSecret) -> None:
    """Ask the registry whether it accepts the user name and password (``GET /v2/``)."""
    credential = credentials.Credential(secret.username, secret.password, source=secret.source)
    try:
        with RegistryClient(secret.host, credential=credential) as registry:
            status = registry.ping()
    except RegistryError as exc:
        if "refused a token" not in exc.message:
            raise
        status = 401
    if status == 401:
        raise RegistryError(
            f"cannot log in to {secret.host} as {secret.username}: wrong user name or password "
            f"(password from {secret.source})",
            hint=f"check the password and log in again: mab login {secret.host} -u "
            f"{secret.username} --password-stdin",
        )


def login_with(secret: credentials.LoginSecret, login: LoginFn) -> str:
    """Check the password against the registry, then have docker store it (*login*:
    the engine's ``docker login``). Returns where docker stored it."""
    check_password(secret)
    login(secret.host, secret.username, secret.password)
    return credentials.stored_where(secret.host)
