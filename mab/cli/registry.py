"""``mab login/logout``, ``mab clean`` and ``mab registry ...``: the registry commands.

A typer sub-app registered by mab.cli.main. Like the rest of the CLI, this layer only
parses options, calls mab's typed API and prints: tables on stdout, messages on stderr
(redacted), JSON on stdout. Every command runs in the one error guard.

Each command imports the registry modules it uses (httpx, the server's bcrypt) when it
runs: this module is loaded by every ``mab`` command, and `mab plan` must not pay for them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mab import api
from mab.cli.console import err, out
from mab.cli.guard import command
from mab.cli.options import (
    FileOpt,
    JsonOpt,
    PasswordEnvOpt,
    PasswordStdinOpt,
    PortOpt,
    TargetOpt,
    sub_app,
)
from mab.config.defaults import default_registry
from mab.config.project import load_project
from mab.errors import RegistryError, UsageError
from mab.oci import short_digest
from mab.pipeline.results import human_size
from mab.registry.base import SERVER_PORT
from mab.secrets import redact

if TYPE_CHECKING:
    from mab.registry import credentials
    from mab.registry import server as registryserver
    from mab.registry.retention import CleanupPlan

DEFAULT_PORT = SERVER_PORT

registry_app = sub_app(
    "registry", "Run a private registry (auth, TLS), see what a registry holds, delete by digest."
)


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _say(text: str, style: str | None = None) -> None:
    err.print(Text(redact(text), style=style or ""))


def _containers() -> registryserver.ContainerRuntime | None:
    """The engine, to run the registry image, where no registry binary is installed."""
    from mab.registry import server as registryserver

    return None if registryserver.registry_binary() else api.docker_engine()


# --- login / logout -------------------------------------------------------------------------


def login(
    registry: Annotated[
        str,
        typer.Argument(metavar="REGISTRY", help="Registry host, e.g. ghcr.io or localhost:5001."),
    ],
    username: Annotated[
        str | None,
        typer.Option("--username", "-u", metavar="USER", help="User name.", show_default=False),
    ] = None,
    password_stdin: PasswordStdinOpt = False,
    password_env: PasswordEnvOpt = None,
    file: FileOpt = Path("builds.yaml"),
) -> None:
    """Log in to a registry and let docker store the credential (config.json or its
    credential helper). The password comes from stdin, an environment variable, or
    builds.yaml's registries: entry (password_env or login.command), never from argv."""
    from mab.registry.login import login_secret

    secret = login_secret(
        registry,
        username,
        stdin=sys.stdin.read() if password_stdin else None,
        password_env=password_env,
        file=file,
        interactive=sys.stdin.isatty(),
    )
    where = registry_login(secret)
    _say(
        f"logged in to {registry} as {secret.username} (password from {secret.source}); "
        f"docker stored the credential in {where}",
        "green",
    )


def registry_login(secret: credentials.LoginSecret) -> str:
    """Check the password, then have docker store it; where docker stored it."""
    from mab.registry.login import login_with

    return login_with(secret, api.docker_engine().login)


def logout(
    registry: Annotated[str, typer.Argument(metavar="REGISTRY", help="Registry host.")],
) -> None:
    """Remove the credential docker stored for a registry."""
    api.docker_engine().logout(registry)
    _say(f"logged out of {registry}", "green")


# --- registry up / down / status / gc ------------------------------------------------------


@command(registry_app, "up")
def registry_up(
    port: PortOpt = DEFAULT_PORT,
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            metavar="USER",
            help="Require this user (htpasswd, bcrypt).",
            show_default=False,
        ),
    ] = None,
    password_stdin: PasswordStdinOpt = False,
    password_env: PasswordEnvOpt = None,
    tls: Annotated[
        bool, typer.Option("--tls", help="Serve HTTPS with a CA mab makes; the engine trusts it.")
    ] = False,
    listen: Annotated[
        str, typer.Option("--listen", metavar="ADDRESS", help="Address to listen on.")
    ] = "127.0.0.1",
) -> None:
    """Start a distribution registry on this machine, with auth and/or TLS.

    The password for --auth comes from stdin or an environment variable; without either,
    mab makes one and writes it to a file only you can read. Data, config, certificates
    and state live in ~/.local/share/mab/registries/PORT/.
    """
    from mab.registry import credentials
    from mab.registry import server as registryserver

    password: str | None = None
    if password_stdin and password_env:
        raise UsageError("give either --password-stdin or --password-env, not both")
    if password_stdin:
        password = credentials.password_from_stdin(sys.stdin.read())
    elif password_env:
        password = credentials.password_from_env(password_env, "--password-env")
    result = registryserver.up(
        port, auth_user=auth, password=password, tls=tls, listen=listen, containers=_containers()
    )
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


@command(registry_app, "down")
def registry_down(
    port: PortOpt = DEFAULT_PORT,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete its data.")] = False,
) -> None:
    """Stop a registry started by mab registry up (its data stays unless --purge)."""
    from mab.registry import server as registryserver

    state = registryserver.down(port, purge=purge, containers=_containers())
    kept = "deleted its data" if purge else f"its data stays in {state.folder}"
    _say(f"registry on port {port} stopped; {kept}", "green")


@command(registry_app, "status")
def registry_status(as_json: JsonOpt = False) -> None:
    """The registries mab started (registry up, and the embedded one), and whether each
    still runs."""
    from mab.registry import server as registryserver

    rows = [(s, registryserver.running(s)) for s in registryserver.all_states()]
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
        _say("no registry started by mab")
        return
    table = Table(title="registries started by mab", title_justify="left")
    for column in ("host", "running", "tls", "auth user", "folder"):
        table.add_column(column)
    for s, up in rows:
        table.add_row(
            s.host, "yes" if up else "no", "yes" if s.tls else "no", s.auth_user or "-", s.folder
        )
    out.print(table)


@command(registry_app, "gc")
def registry_gc(port: PortOpt = DEFAULT_PORT) -> None:
    """Garbage-collect a registry mab registry up started: stop it, free the blobs no
    manifest references, start it again."""
    from mab.registry import server as registryserver

    state = registryserver.ServerState.load(registryserver.folder_for(port))
    if state is None:
        raise UsageError(f"no registry started by mab on port {port}")
    result = registryserver.garbage_collect(state, containers=_containers())
    _say(f"garbage collection done: {result.summary}", "green")


# --- queries ------------------------------------------------------------------------------


def _default_registry(file: Path) -> str:
    if file.is_file():
        configured = load_project(file).config.registry
        if configured:
            return configured
    return default_registry()


@command(registry_app, "ls")
def registry_ls(
    registry: Annotated[
        str | None,
        typer.Argument(
            metavar="REGISTRY",
            help="HOST[:PORT] or HOST[:PORT]/PATH; default: builds.yaml's registry.",
            show_default=False,
        ),
    ] = None,
    file: FileOpt = Path("builds.yaml"),
    as_json: JsonOpt = False,
) -> None:
    """The repositories in a registry (its catalog), under PATH if one is given."""
    from mab.registry.query import client, split_registry

    host, prefix = split_registry(registry or _default_registry(file))
    with client(host) as reg:
        repos = reg.catalog()
    if prefix:
        repos = [r for r in repos if r == prefix or r.startswith(prefix + "/")]
    if as_json:
        _json({"registry": host, "prefix": prefix or None, "repositories": repos})
        return
    for repo in repos:
        out.print(f"{host}/{repo}", highlight=False, markup=False)
    _say(f"{len(repos)} repositories", "dim")


@command(registry_app, "tags")
def registry_tags(
    repository: Annotated[
        str, typer.Argument(metavar="REPOSITORY", help="HOST/REPO, e.g. localhost:5001/demo/app.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """The tags of a repository, with the index or manifest each points to."""
    from mab.registry.query import client, list_tags, parse_ref

    ref = parse_ref(repository, want_reference=False)
    with client(ref.host) as reg:
        name, infos = f"{ref.host}/{ref.repo}", list_tags(reg, ref.repo)
    if as_json:
        _json({"repository": name, "tags": [i.to_dict() for i in infos]})
        return
    table = Table(title=name, title_justify="left")
    for column in ("tag", "digest", "kind", "platforms"):
        table.add_column(column)
    for i in infos:
        table.add_row(i.tag, short_digest(i.digest), i.kind, ", ".join(i.platforms) or "-")
    out.print(table)


@command(registry_app, "inspect")
def registry_inspect(
    ref: Annotated[
        str, typer.Argument(metavar="REF", help="HOST/REPO:TAG or HOST/REPO@sha256:...")
    ],
    as_json: JsonOpt = False,
) -> None:
    """An index or manifest: platforms, compressed size per platform, created time and
    annotations."""
    from mab.registry.query import client, inspect, parse_ref

    parsed = parse_ref(ref)
    with client(parsed.host) as reg:
        details = inspect(reg, parsed)
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
    out.print(table)
    for key, value in details.annotations.items():
        out.print(Text(f"  {key}: {value}", style="dim"))
    names = {details.digest: "the index"} | {e.digest: e.platform or "-" for e in details.images}
    for subject, tags in details.signatures.items():
        about = names.get(subject, f"attestation manifest {short_digest(subject)}")
        out.print(Text(f"  cosign: {', '.join(tags)} (of {about})", style="dim"))
    if not details.signatures:
        out.print(Text("  cosign: no signature tags", style="dim"))


# --- deletion -----------------------------------------------------------------------------


def _gc_step(host: str, ran: registryserver.GcResult | None = None) -> None:
    from mab.registry import server as registryserver

    state = registryserver.find_state(host)
    if ran is not None:
        _say(f"garbage collection on {host}: {ran.summary}", "green")
    elif state is not None:
        _say(f"to free the space: mab registry gc --port {state.port}", "yellow")
    else:
        _say(registryserver.gc_instructions(host), "yellow")


@command(registry_app, "rm")
def registry_rm(
    ref: Annotated[
        str, typer.Argument(metavar="REF", help="HOST/REPO@sha256:... or HOST/REPO:TAG.")
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Delete even when other tags or a tagged index use it."),
    ] = False,
) -> None:
    """Delete a manifest or index by digest (a tag is resolved to its digest first).

    The registry removes every tag on that digest, so mab refuses when another tag points
    at it, or when a tagged index references it, unless --force. Deleting an index also
    deletes its platform manifests that nothing else references, and cosign's signature,
    attestation and SBOM tags about what it deleted.
    """
    from mab.registry.query import client, parse_ref
    from mab.registry.retention import remove

    parsed = parse_ref(ref)
    with client(parsed.host) as reg:
        digest = parsed.digest or reg.head_manifest(parsed.repo, parsed.reference)
        if digest is None:
            raise RegistryError(f"{parsed}: manifest unknown")
        removed = remove(reg, parsed.repo, parsed.tag, digest, force)
    tags = f" (tags {', '.join(removed.tags)})" if removed.tags else ""
    _say(f"deleted {removed.digest}{tags}", "green")
    if removed.children:
        _say(f"  and {len(removed.children)} manifests only it referenced", "green")
    if removed.signatures:
        _say(f"  and cosign's tags about them: {', '.join(removed.signatures)}", "green")
    _gc_step(parsed.host)


def clean(
    file: FileOpt = Path("builds.yaml"),
    target: TargetOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Delete. Without it mab only shows what it would delete.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply each target's retention policy (builds.yaml 'retention:') to its registry.

    Shows exactly which tags it would delete and why, and stops there unless --yes. It never
    deletes a manifest that a kept tag or kept index references. Afterwards it runs the
    registry's garbage collection for a registry mab registry up started, or says how.
    """
    from mab.registry import server as registryserver
    from mab.registry.query import client
    from mab.registry.retention import apply

    plans, skipped = api.cleanup_plans(file, target or ())
    if as_json and not yes:
        _json(
            {"dry_run": True, "repositories": [c.plan.to_dict() for c in plans], "skipped": skipped}
        )
        return
    for name in skipped:
        _say(f"{name}: no retention policy in builds.yaml; nothing to do", "dim")
    total = sum(len(c.plan.deleted_tags) for c in plans)
    for cleanup in plans:
        _print_plan(cleanup.plan)
    if not yes:
        _say(
            f"dry run: would delete {total} tags; nothing was deleted. Rerun with --yes to "
            "delete them.",
            "bold",
        )
        return
    deleted: dict[str, list[str]] = {}
    for c in plans:
        if c.plan.delete_manifests:
            with client(c.host) as reg:
                deleted[f"{c.host}/{c.repo}"] = apply(reg, c.repo, c.plan)
    hosts = sorted({c.host for c in plans if c.plan.delete_manifests})
    gc: dict[str, registryserver.GcResult | None] = {}
    for host in hosts:
        state = registryserver.find_state(host)
        gc[host] = (
            registryserver.garbage_collect(state, containers=_containers())
            if state is not None
            else None
        )
    if as_json:
        _json(
            {
                "dry_run": False,
                "repositories": [c.plan.to_dict() for c in plans],
                "deleted_manifests": deleted,
                "garbage_collection": {h: (r.summary if r else None) for h, r in gc.items()},
            }
        )
    count = sum(len(v) for v in deleted.values())
    _say(f"deleted {total} tags ({count} manifests)", "green")
    for host in hosts:
        _gc_step(host, gc[host])


def _age(days: float) -> str:
    if days < 1 / 24:
        return f"{days * 1440:.0f} min"
    if days < 2:
        return f"{days * 24:.1f} h"
    return f"{days:.1f} d"


def _print_plan(cleanup: CleanupPlan) -> None:
    from mab.registry.retention import age_days

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
    out.print(table)
    if cleanup.delete_manifests:
        _say(
            f"  {len(cleanup.deleted_tags)} tags to delete: {len(cleanup.delete_manifests)} "
            "manifests (indexes, then the platform manifests only they reference)",
            "dim",
        )
