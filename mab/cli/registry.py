"""``mab login/logout``, ``mab clean`` and ``mab registry ...``: the registry commands.

A typer sub-app registered by mab.cli.main. Like the rest of the CLI, this layer only parses
options, calls mab's typed API and prints: tables on stderr through the one console,
JSON on stdout. Errors go through mab.cli.main's guard (one line, a hint, exit 1 or 2).
"""

from __future__ import annotations

import datetime
import functools
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mab.cli.console import console
from mab.cli.guard import guard as _guard
from mab.errors import MabError, RegistryError, UsageError
from mab.registry import credentials
from mab.registry.local import registry_binary

if TYPE_CHECKING:
    from mab.registry import server as registryserver
    from mab.registry.query import ImageDetails, TagInfo
    from mab.registry.retention import CleanupPlan

DEFAULT_PORT = 5001  # mab.DEFAULT_PORT (imported lazily: it loads TLS code)

registry_app = typer.Typer(
    name="registry",
    help="Run a private registry (auth, TLS), see what a registry holds, delete by digest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
FileOpt = Annotated[Path, typer.Option("--file", "-f", help="The builds.yaml to use.")]
PortOpt = Annotated[
    int, typer.Option("--port", help="Port of the registry on this machine.", min=1, max=65535)
]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin (first line).")
]
PasswordEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        help="Read the password from this environment variable.",
        show_default=False,
    ),
]


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _say(text: str, style: str | None = None) -> None:
    console.print(Text(credentials.redact(text), style=style or ""))


# --- login / logout -------------------------------------------------------------------------


def _password(
    host: str, username: str | None, password_stdin: bool, password_env: str | None, file: Path
) -> credentials.LoginSecret:
    if password_stdin and password_env:
        raise UsageError("give either --password-stdin or --password-env, not both")
    if not password_stdin and password_env is None and file.is_file():
        from mab.config.models import load_project  # noqa: PLC0415 - only when builds.yaml is used

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
    if password_stdin:
        return credentials.LoginSecret(
            host, username, credentials.password_from_stdin(sys.stdin.read()), "stdin"
        )
    if password_env:
        value = credentials.password_from_env(password_env, "--password-env")
        return credentials.LoginSecret(host, username, value, f"${password_env}")
    if sys.stdin.isatty():
        typed = getpass.getpass(f"password for {username} at {host}: ")
        credentials.remember_secret(typed)
        return credentials.LoginSecret(host, username, typed, "prompt")
    raise UsageError(
        "no password given: mab never takes one on the command line",
        hint=f"pipe it: printenv REG_PASSWORD | mab login {host} -u {username} "
        "--password-stdin, or use --password-env NAME",
    )


def login_with(secret: credentials.LoginSecret) -> str:
    """Check the password against the registry, then have docker store it. Returns where
    docker stored it."""
    from mab.engine.whales import Engine, docker_login  # noqa: PLC0415 - python-on-whales is slow
    from mab.registry.client import RegistryClient  # noqa: PLC0415

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
    docker_login(Engine(), secret.host, secret.username, secret.password)
    return credentials.stored_where(secret.host)


def login(
    registry: Annotated[str, typer.Argument(help="Registry host, e.g. ghcr.io or localhost:5001.")],
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="User name.", show_default=False)
    ] = None,
    password_stdin: PasswordStdinOpt = False,
    password_env: PasswordEnvOpt = None,
    file: FileOpt = Path("builds.yaml"),
    debug: DebugOpt = False,
) -> None:
    """Log in to a registry and let docker store the credential (config.json or its
    credential helper). The password comes from stdin, an environment variable, or
    builds.yaml's registries: entry (password_env or login.command), never from argv."""

    def work() -> tuple[credentials.LoginSecret, str]:
        secret = _password(registry, username, password_stdin, password_env, file)
        return secret, login_with(secret)

    secret, where = _guard(debug, work)
    _say(
        f"logged in to {registry} as {secret.username} (password from {secret.source}); "
        f"docker stored the credential in {where}",
        "green",
    )


def logout(
    registry: Annotated[str, typer.Argument(help="Registry host.")],
    debug: DebugOpt = False,
) -> None:
    """Remove the credential docker stored for a registry."""
    from mab.engine.whales import Engine, docker_logout  # noqa: PLC0415

    _guard(debug, lambda: docker_logout(Engine(), registry))
    _say(f"logged out of {registry}", "green")


# --- registry up / down / status / gc ------------------------------------------------------


def _container_hooks() -> dict[str, Any]:
    """Engine-backed fallbacks for a machine without a registry binary."""
    from mab.engine.whales import (  # noqa: PLC0415
        Engine,
        registry_gc_in_container,
        remove_container,
        run_registry_server,
    )

    engine = Engine()
    return {
        "start_container": lambda name, port, folder: run_registry_server(
            engine, name, port, folder
        ),
        "remove_container": lambda name: remove_container(engine, name),
        "gc_in_container": lambda folder: registry_gc_in_container(engine, folder),
    }


def _hooks_if_needed() -> dict[str, Any]:
    if registry_binary():
        return {}
    return _container_hooks()


@registry_app.command("up")
def registry_up(
    port: PortOpt = DEFAULT_PORT,
    auth: Annotated[
        str | None,
        typer.Option("--auth", help="Require this user (htpasswd, bcrypt).", show_default=False),
    ] = None,
    password_stdin: PasswordStdinOpt = False,
    password_env: PasswordEnvOpt = None,
    tls: Annotated[
        bool, typer.Option("--tls", help="Serve HTTPS with a CA mab makes; the engine trusts it.")
    ] = False,
    listen: Annotated[str, typer.Option("--listen", help="Address to listen on.")] = "127.0.0.1",
    debug: DebugOpt = False,
) -> None:
    """Start a distribution registry on this machine, with auth and/or TLS.

    The password for --auth comes from stdin or an environment variable; without either,
    mab makes one and writes it to a file only you can read. Data, config, certificates
    and state live in ~/.local/share/mab/registries/PORT/.
    """
    from mab.registry import server as registryserver  # noqa: PLC0415 - it loads the TLS code

    def work() -> registryserver.UpResult:
        password: str | None = None
        if password_stdin and password_env:
            raise UsageError("give either --password-stdin or --password-env, not both")
        if password_stdin:
            password = credentials.password_from_stdin(sys.stdin.read())
        elif password_env:
            password = credentials.password_from_env(password_env, "--password-env")
        return registryserver.up(
            port,
            auth_user=auth,
            password=password,
            tls=tls,
            listen=listen,
            **{k: v for k, v in _hooks_if_needed().items() if k != "gc_in_container"},
        )

    result = _guard(debug, work)
    state = result.state
    for note in result.notes:
        _say(f"note: {note}", "yellow")
    scheme = "https" if state.tls else "http"
    how = f"{Path(state.binary).name} pid {state.pid}" if state.binary else "registry:2 container"
    _say(f"registry up at {scheme}://{state.host} ({how})", "green")
    _say(f"  data and state: {state.folder}")
    if state.tls and state.ca_cert is not None:
        _say(f"  CA: {state.ca_cert}; trusted by the engine via {', '.join(state.trust_files)}")
        _say(
            f"  name it {state.host} in builds.yaml: buildx talks plain HTTP to localhost "
            "whatever the registry speaks"
        )
    if state.auth_user is not None:
        login_cmd = f"mab login {state.host} -u {state.auth_user} --password-stdin"
        if result.generated_password:
            _say(f"  password: made by mab, in {state.password_file} (mode 0600)")
            _say(f"  log in: {login_cmd} < {state.password_file}", "bold")
        else:
            _say(f"  log in: printenv REG_PASSWORD | {login_cmd}", "bold")
    _say(f"  stop it: mab registry down --port {state.port}")


@registry_app.command("down")
def registry_down(
    port: PortOpt = DEFAULT_PORT,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete its data.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Stop a registry started by mab registry up (its data stays unless --purge)."""
    from mab.registry import server as registryserver  # noqa: PLC0415 - it loads the TLS code

    hooks = _hooks_if_needed()
    state = _guard(
        debug,
        lambda: registryserver.down(
            port, purge=purge, remove_container=hooks.get("remove_container")
        ),
    )
    kept = "deleted its data" if purge else f"its data stays in {state.folder}"
    _say(f"registry on port {port} stopped; {kept}", "green")


@registry_app.command("status")
def registry_status(as_json: JsonOpt = False) -> None:
    """The registries mab registry up started, and whether each still runs."""
    from mab.registry import server as registryserver  # noqa: PLC0415 - it loads the TLS code

    states = registryserver.all_states()
    rows = [(s, registryserver.running(s)) for s in states]
    if as_json:
        _json(
            [
                {
                    "host": s.host,
                    "hosts": s.hosts,
                    "port": s.port,
                    "running": up,
                    "tls": s.tls,
                    "auth_user": s.auth_user,
                    "folder": s.folder,
                    "how": s.how,
                }
                for s, up in rows
            ]
        )
        return
    if not rows:
        _say("no registry started by mab registry up")
        return
    table = Table(title="registries started by mab", title_justify="left")
    for column in ("host", "running", "tls", "auth user", "folder"):
        table.add_column(column)
    for s, up in rows:
        table.add_row(
            s.host, "yes" if up else "no", "yes" if s.tls else "no", s.auth_user or "-", s.folder
        )
    console.print(table)


def _gc(state: registryserver.ServerState) -> registryserver.GcResult:
    from mab.registry import server as registryserver  # noqa: PLC0415 - it loads the TLS code

    return registryserver.garbage_collect(state, **_hooks_if_needed())


@registry_app.command("gc")
def registry_gc(port: PortOpt = DEFAULT_PORT, debug: DebugOpt = False) -> None:
    """Garbage-collect a registry mab registry up started: stop it, free the blobs no
    manifest references, start it again."""
    from mab.registry import server as registryserver  # noqa: PLC0415 - it loads the TLS code

    def work() -> registryserver.GcResult:
        state = registryserver.ServerState.load(registryserver.folder_for(port))
        if state is None:
            raise UsageError(f"no registry started by mab on port {port}")
        return _gc(state)

    result = _guard(debug, work)
    _say(f"garbage collection done: {result.summary}", "green")


# --- queries ------------------------------------------------------------------------------


def _default_registry(file: Path) -> str:
    from mab.registry.query import default_registry  # noqa: PLC0415

    if file.is_file():
        from mab.config.models import load_project  # noqa: PLC0415

        configured = load_project(file).config.registry
        if configured:
            return configured
    return default_registry()


@registry_app.command("ls")
def registry_ls(
    registry: Annotated[
        str | None,
        typer.Argument(
            help="HOST[:PORT][/PATH]; default: builds.yaml's registry.", show_default=False
        ),
    ] = None,
    file: FileOpt = Path("builds.yaml"),
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The repositories in a registry (its catalog), under PATH if one is given."""
    from mab.registry.query import client, split_registry  # noqa: PLC0415

    def work() -> tuple[str, str, list[str]]:
        host, prefix = split_registry(registry or _default_registry(file))
        with client(host) as reg:
            repos = reg.catalog()
        if prefix:
            repos = [r for r in repos if r == prefix or r.startswith(prefix + "/")]
        return host, prefix, repos

    host, prefix, repos = _guard(debug, work)
    if as_json:
        _json({"registry": host, "prefix": prefix or None, "repositories": repos})
        return
    for repo in repos:
        console.print(f"{host}/{repo}", highlight=False)
    _say(f"{len(repos)} repositories", "dim")


@registry_app.command("tags")
def registry_tags(
    repository: Annotated[str, typer.Argument(help="HOST/REPO, e.g. localhost:5001/demo/app.")],
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The tags of a repository, with the index or manifest each points to."""
    from mab.cli.report import short_digest  # noqa: PLC0415
    from mab.registry.query import client, list_tags, parse_ref  # noqa: PLC0415

    def work() -> tuple[str, list[TagInfo]]:
        ref = parse_ref(repository, want_reference=False)
        with client(ref.host) as reg:
            return f"{ref.host}/{ref.repo}", list_tags(reg, ref.repo)

    name, infos = _guard(debug, work)
    if as_json:
        _json({"repository": name, "tags": [i.to_dict() for i in infos]})
        return
    table = Table(title=name, title_justify="left")
    for column in ("tag", "digest", "kind", "platforms"):
        table.add_column(column)
    for i in infos:
        table.add_row(i.tag, short_digest(i.digest), i.kind, ", ".join(i.platforms) or "-")
    console.print(table)


@registry_app.command("inspect")
def registry_inspect(
    ref: Annotated[str, typer.Argument(help="HOST/REPO:TAG or HOST/REPO@sha256:...")],
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """An index or manifest: platforms, compressed size per platform, created time and
    annotations."""
    from mab.cli.report import human_size, short_digest  # noqa: PLC0415
    from mab.registry.query import client, inspect, parse_ref  # noqa: PLC0415

    def work() -> ImageDetails:
        parsed = parse_ref(ref)
        with client(parsed.host) as reg:
            return inspect(reg, parsed)

    details = _guard(debug, work)
    if as_json:
        _json(details.to_dict())
        return
    table = Table(
        title=f"{details.ref} -> {details.digest} ({details.kind}, {human_size(details.size)})",
        title_justify="left",
    )
    for column in ("platform", "digest", "size", "layers", "created", "annotations"):
        table.add_column(column)
    for entry in [*details.images, *details.attestations]:
        platform = entry.platform or (
            f"attestation of {short_digest(entry.attestation_for)}"
            if entry.attestation_for
            else "-"
        )
        notes = ", ".join(
            f"{k}={v}" for k, v in entry.annotations.items() if not k.startswith("vnd.docker.")
        )
        table.add_row(
            platform,
            short_digest(entry.digest),
            human_size(entry.size),
            str(entry.layers),
            entry.created or "-",
            notes or "-",
        )
    console.print(table)
    for key, value in details.annotations.items():
        _say(f"  {key}: {value}", "dim")


# --- deletion -----------------------------------------------------------------------------


def _gc_step(host: str, ran: registryserver.GcResult | None = None) -> None:
    from mab.registry import server as registryserver  # noqa: PLC0415 - it loads the TLS code

    state = registryserver.find_state(host)
    if ran is not None:
        _say(f"garbage collection on {host}: {ran.summary}", "green")
    elif state is not None:
        _say(f"to free the space: mab registry gc --port {state.port}", "yellow")
    else:
        _say(registryserver.gc_instructions(host), "yellow")


@registry_app.command("rm")
def registry_rm(
    ref: Annotated[str, typer.Argument(help="HOST/REPO@sha256:... or HOST/REPO:TAG.")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Delete even when other tags or a tagged index use it."),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Delete a manifest or index by digest (a tag is resolved to its digest first).

    The registry removes every tag on that digest, so mab refuses when another tag points
    at it, or when a tagged index references it, unless --force. Deleting an index also
    deletes its platform manifests that nothing else references.
    """
    from mab.registry.query import client, list_tags, parse_ref  # noqa: PLC0415

    def work() -> tuple[str, list[str], list[str]]:
        parsed = parse_ref(ref)
        with client(parsed.host) as reg:
            infos = list_tags(reg, parsed.repo)
            digest = parsed.digest or reg.head_manifest(parsed.repo, parsed.reference)
            if digest is None:
                raise RegistryError(f"{parsed}: manifest unknown")
            on_it = [i.tag for i in infos if i.digest == digest]
            others = [t for t in on_it if t != parsed.tag]
            parents = [i.tag for i in infos if digest in i.children]
            if (others or parents) and not force:
                why = []
                if others:
                    why.append(f"tag(s) {', '.join(others)} also point at it")
                if parents:
                    why.append(f"tagged index(es) {', '.join(parents)} reference it")
                raise MabError(
                    f"refusing to delete {digest}: {'; '.join(why)}, and deleting by digest "
                    "removes it from all of them",
                    hint="move or delete those tags first, or pass --force",
                )
            keep: set[str] = set()
            for i in infos:
                if i.digest != digest:
                    keep.add(i.digest)
                    keep.update(i.children)
            own = next((i for i in infos if i.digest == digest), None)
            children = [c for c in (own.children if own else ()) if c not in keep]
            reg.delete_manifest(parsed.repo, digest)
            for child in children:
                reg.delete_manifest(parsed.repo, child)
            return parsed.host, [digest, *children], on_it

    host, deleted, tags_gone = _guard(debug, work)
    _say(
        f"deleted {deleted[0]}" + (f" (tags {', '.join(tags_gone)})" if tags_gone else ""), "green"
    )
    if len(deleted) > 1:
        _say(f"  and {len(deleted) - 1} manifests only it referenced", "green")
    _gc_step(host)


def clean(
    file: FileOpt = Path("builds.yaml"),
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="Only this target (repeatable).", show_default=False),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Delete. Without it mab only shows what it would delete.")
    ] = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Apply each target's retention policy (builds.yaml 'retention:') to its registry.

    Shows exactly which tags it would delete and why, and stops there unless --yes. It never
    deletes a manifest that a kept tag or kept index references. Afterwards it runs the
    registry's garbage collection for a registry mab registry up started, or says how.
    """
    from mab.registry import server as registryserver  # noqa: PLC0415 - it loads the TLS code
    from mab.registry.query import client  # noqa: PLC0415
    from mab.registry.retention import apply  # noqa: PLC0415

    plans, skipped = _guard(debug, lambda: _cleanup_plans(file, target))
    if as_json and not yes:
        _json(
            {"dry_run": True, "repositories": [p.to_dict() for _, p in plans], "skipped": skipped}
        )
        return
    for name in skipped:
        _say(f"{name}: no retention policy in builds.yaml; nothing to do", "dim")
    total = sum(len(p.deleted_tags) for _, p in plans)
    for _, cleanup in plans:
        _print_plan(cleanup)
    if not yes:
        _say(
            f"dry run: would delete {total} tags; nothing was deleted. Rerun with --yes to "
            "delete them.",
            "bold",
        )
        return

    def work() -> dict[str, list[str]]:
        done: dict[str, list[str]] = {}
        for host_repo, cleanup in plans:
            host, repo = host_repo
            if not cleanup.delete_manifests:
                continue
            with client(host) as reg:
                done[f"{host}/{repo}"] = apply(reg, repo, cleanup)
        return done

    deleted = _guard(debug, work)
    hosts = {host for (host, _), p in plans if p.delete_manifests}
    gc: dict[str, registryserver.GcResult | None] = {}
    for host in sorted(hosts):
        state = registryserver.find_state(host)
        gc[host] = _guard(debug, functools.partial(_gc, state)) if state is not None else None
    if as_json:
        _json(
            {
                "dry_run": False,
                "repositories": [p.to_dict() for _, p in plans],
                "deleted_manifests": deleted,
                "garbage_collection": {h: (r.summary if r else None) for h, r in gc.items()},
            }
        )
    count = sum(len(v) for v in deleted.values())
    _say(f"deleted {total} tags ({count} manifests)", "green")
    for host in sorted(hosts):
        _gc_step(host, gc[host])


def _cleanup_plans(
    file: Path, targets: list[str] | None
) -> tuple[list[tuple[tuple[str, str], CleanupPlan]], list[str]]:
    from mab.config.models import load_project  # noqa: PLC0415
    from mab.registry.client import split_repository  # noqa: PLC0415
    from mab.registry.query import client, default_registry  # noqa: PLC0415
    from mab.registry.retention import Policy, decide, snapshot  # noqa: PLC0415

    project = load_project(file)
    config = project.config
    unknown = [t for t in targets or () if t not in config.targets]
    if unknown:
        raise UsageError(
            f"no target named {', '.join(unknown)} in {file}",
            hint=f"targets: {', '.join(config.targets)}",
        )
    registry = config.registry or default_registry()
    now = datetime.datetime.now(datetime.UTC)
    plans: list[tuple[tuple[str, str], CleanupPlan]] = []
    skipped: list[str] = []
    for name, target in config.targets.items():
        if targets and name not in targets:
            continue
        if target.retention is None:
            skipped.append(name)
            continue
        host, repo = split_repository(f"{registry}/{name}")
        with client(host) as reg:
            states = snapshot(reg, repo)
        plans.append(
            (
                (host, repo),
                decide(f"{host}/{repo}", states, Policy.from_config(target.retention), now),
            )
        )
    return plans, skipped


def _age(days: float) -> str:
    if days < 1 / 24:
        return f"{days * 1440:.0f} min"
    if days < 2:
        return f"{days * 24:.1f} h"
    return f"{days:.1f} d"


def _print_plan(cleanup: CleanupPlan) -> None:
    from mab.cli.report import short_digest  # noqa: PLC0415
    from mab.registry.retention import age_days  # noqa: PLC0415

    _say(f"{cleanup.repository}: {cleanup.policy.describe()}", "bold")
    if not cleanup.decisions:
        _say("  no tags", "dim")
        return
    table = Table(title_justify="left", show_edge=False)
    for column in ("action", "tag", "digest", "age", "reason"):
        table.add_column(column)
    for d in cleanup.decisions:
        age = _age(age_days(d.created, cleanup.now)) if d.created else "-"
        table.add_row(
            Text("delete", style="bold red") if not d.keep else Text("keep", style="green"),
            d.tag,
            short_digest(d.digest),
            age,
            d.reason,
        )
    console.print(table)
    if cleanup.delete_manifests:
        _say(
            f"  {len(cleanup.deleted_tags)} tags to delete: {len(cleanup.delete_manifests)} "
            "manifests (indexes, then the platform manifests only they reference)",
            "dim",
        )
