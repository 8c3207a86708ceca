"""The one registry launcher: the embedded default registry that ``mab build`` starts on
localhost when none answers, and ``mab registry up/down`` (a private registry with
htpasswd (bcrypt) auth and/or TLS), with its garbage collection.

Everything about one registry lives in a folder named after its port (default
``~/.local/share/mab/registries/PORT/``, ``MAB_REGISTRIES_DIR`` moves the parent):
``state.json`` (how it runs: pid or container, auth user, TLS, CA), ``config.yml``,
``data/`` (the images), ``htpasswd``, ``tls/`` (CA and server certificate),
``registry.log``, and ``password`` when mab made one. ``down`` stops it and keeps the
data; ``mab clean`` finds it here to run garbage collection.

One exception, kept from mab's first releases: port 5000's images live where
``MAB_REGISTRY_DIR`` says, or in ``~/.local/share/mab/registry`` when that folder exists
(where earlier versions of the embedded registry kept them).

The ``docker-registry``/``registry`` binary is used where one is installed, else the
``registry:2`` image through the engine (a ``ContainerRuntime``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import bcrypt
import httpx

from mab import proc
from mab.errors import RegistryError, UsageError
from mab.registry import tls as registrytls
from mab.registry.base import SERVER_PORT as DEFAULT_PORT

EMBEDDED_PORT = 5000  # where builds.yaml without a registry: pushes (localhost:5000)
LOCAL_HOSTS = ("localhost", "127.0.0.1")
_STATE = "state.json"
_CONTAINER_ROOT = "/mab"


class ContainerRuntime(Protocol):
    """Runs the registry image where no registry binary is installed (the engine)."""

    def run_registry(self, name: str, port: int, folder: Path) -> str: ...
    def remove_container(self, name: str) -> None: ...
    def registry_gc(self, folder: Path) -> str: ...


def registry_binary() -> str | None:
    """The CNCF distribution registry's binary (Debian names it docker-registry), if any."""
    return shutil.which("docker-registry") or shutil.which("registry")


def local_port(host: str) -> int | None:
    """The port of a registry host on this machine (``localhost:5000`` -> 5000), else None."""
    name, _, port = host.partition(":")
    if name not in LOCAL_HOSTS:
        return None
    return int(port) if port.isdigit() else 80


def answers(host: str, timeout: float = 2.0) -> bool:
    """True when something speaking the registry API v2 answers at http://HOST/v2/."""
    try:
        response = httpx.get(f"http://{host}/v2/", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code in (200, 401)


def registries_root() -> Path:
    override = os.environ.get("MAB_REGISTRIES_DIR")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "mab" / "registries"


def folder_for(port: int) -> Path:
    return registries_root() / str(port)


def data_dir(port: int) -> Path:
    """Where the registry on *port* keeps its images (see the module docstring)."""
    if port == EMBEDDED_PORT:
        override = os.environ.get("MAB_REGISTRY_DIR")
        if override:
            return Path(override)
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
        legacy = base / "mab" / "registry"
        if legacy.is_dir():
            return legacy
    return folder_for(port) / "data"


def htpasswd_line(user: str, password: str, rounds: int = 10) -> str:
    """One htpasswd entry with a bcrypt hash (the only kind distribution accepts)."""
    if not user or ":" in user:
        raise UsageError(f"invalid user name '{user}': it must be non-empty, without ':'")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()
    return f"{user}:{hashed}"


def check_htpasswd(line: str, user: str, password: str) -> bool:
    name, _, hashed = line.strip().partition(":")
    return name == user and bcrypt.checkpw(password.encode(), hashed.encode())


def render_config(
    *,
    root: Path,
    port: int,
    listen: str,
    auth: bool,
    tls: bool,
    secret: str,
    in_container: bool = False,
    read_only: bool = False,
    data: Path | None = None,
) -> str:
    """distribution's config.yml; paths under *root* (or /mab inside the container), the
    images in *data* (default ``root/data``; always ``/mab/data`` in the container)."""
    base = Path(_CONTAINER_ROOT) if in_container else root
    addr = ":5000" if in_container else f"{listen}:{port}"
    images = base / "data" if in_container or data is None else data
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  formatter: text",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {images}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    readonly:",
        f"      enabled: {'true' if read_only else 'false'}",
        "http:",
        f"  addr: {addr}",
        f"  secret: {secret}",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if tls:
        lines += [
            "  tls:",
            f"    certificate: {base / 'tls' / 'server.crt'}",
            f"    key: {base / 'tls' / 'server.key'}",
        ]
    if auth:
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: mab-registry",
            f"    path: {base / 'htpasswd'}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class ServerState:
    """What ``mab registry up`` started, as kept in state.json."""

    port: int
    folder: str
    listen: str = "127.0.0.1"
    how: str = "binary"  # "binary" or "container"
    binary: str | None = None
    pid: int | None = None
    container: str | None = None
    auth_user: str | None = None
    tls: bool = False
    names: list[str] = field(default_factory=lambda: ["localhost"])
    password_file: str | None = None
    trust_files: list[str] = field(default_factory=list)
    started_at: float = 0.0
    data: str | None = None  # where the images are, when not in folder/data

    @property
    def data_dir(self) -> Path:
        return Path(self.data) if self.data else self.path / "data"

    @property
    def path(self) -> Path:
        return Path(self.folder)

    @property
    def config(self) -> Path:
        return self.path / "config.yml"

    @property
    def log(self) -> Path:
        return self.path / "registry.log"

    @property
    def ca_cert(self) -> Path | None:
        return self.path / "tls" / "ca.crt" if self.tls else None

    @property
    def host(self) -> str:
        """The name to use in builds.yaml: with TLS, the machine's host name, because
        buildx talks plain HTTP to localhost and loopback IPs whatever they speak."""
        if self.tls and len(self.names) > 1:
            return f"{self.names[1]}:{self.port}"
        return f"localhost:{self.port}"

    @property
    def hosts(self) -> list[str]:
        return [f"{n}:{self.port}" for n in self.names] + [f"127.0.0.1:{self.port}"]

    def save(self) -> None:
        (self.path / _STATE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> ServerState | None:
        try:
            data: dict[str, Any] = json.loads((folder / _STATE).read_text())
        except (OSError, ValueError):
            return None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def find_state(host: str) -> ServerState | None:
    """The registry ``mab registry up`` started that serves *host*, if any."""
    _, _, port = host.rpartition(":")
    if not port.isdigit():
        return None
    state = ServerState.load(folder_for(int(port)))
    if state is None or host not in state.hosts:
        return None
    return state


def running(state: ServerState) -> bool:
    if state.how == "binary":
        return state.pid is not None and _is_our_process(state.pid, state.config)
    return state.container is not None and _answers(state, timeout=1.0)


def _is_our_process(pid: int, config: Path) -> bool:
    """True when *pid* is alive and is a registry serving *config* (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(config).encode() in cmdline


def _port_free(listen: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((listen, port))
        except OSError:
            return False
    return True


def resolves_to(name: str, address: str) -> bool:
    try:
        infos = socket.getaddrinfo(name, None, family=socket.AF_INET)
    except OSError:
        return False
    return any(info[4][0] == address for info in infos)


def _verify(state: ServerState) -> ssl.SSLContext | bool:
    if state.ca_cert is None:
        return False
    return ssl.create_default_context(cafile=str(state.ca_cert))


def _answers(state: ServerState, timeout: float = 2.0) -> bool:
    scheme = "https" if state.tls else "http"
    try:
        response = httpx.get(
            f"{scheme}://localhost:{state.port}/v2/", timeout=timeout, verify=_verify(state)
        )
    except httpx.HTTPError:
        return False
    return response.status_code in (200, 401)


@dataclass(frozen=True)
class UpResult:
    state: ServerState
    generated_password: bool
    notes: list[str]


def up(
    port: int = DEFAULT_PORT,
    *,
    auth_user: str | None = None,
    password: str | None = None,
    tls: bool = False,
    listen: str = "127.0.0.1",
    containers: ContainerRuntime | None = None,
    wait: float = 20.0,
) -> UpResult:
    """Start a registry on *port*; see the module docstring for what goes where."""
    folder = folder_for(port)
    old = ServerState.load(folder)
    if old is not None and running(old):
        raise UsageError(
            f"a registry started by mab already runs on port {port} (state in {folder})",
            hint=f"stop it first: mab registry down --port {port}",
        )
    if not _port_free(listen, port):
        raise UsageError(
            f"port {port} on {listen} is already in use", hint="choose another with --port N"
        )
    if password is not None and auth_user is None:
        raise UsageError("a password needs --auth USER")
    folder.mkdir(parents=True, exist_ok=True)
    names, notes = _names(tls, listen)
    images = data_dir(port)
    state = ServerState(
        port=port,
        folder=str(folder),
        listen=listen,
        auth_user=auth_user,
        tls=tls,
        names=names,
        started_at=time.time(),
        data=None if images == folder / "data" else str(images),
    )
    state.data_dir.mkdir(parents=True, exist_ok=True)
    generated = _write_auth(state, password)
    binary = registry_binary()
    if not binary and containers is None:
        raise RegistryError(
            "no registry binary is installed and no engine to run the registry image",
            hint="install the distribution registry (Debian: docker-registry), or start dockerd",
        )
    try:
        if tls:
            _make_tls(state)
        if binary:
            _write_config(state, in_container=False)
            state.how, state.binary = "binary", binary
            state.pid = _spawn(binary, state)
        elif containers is not None:
            _write_config(state, in_container=True)
            state.how = "container"
            state.container = containers.run_registry(_container_name(port), port, folder)
        state.save()
        _wait_until_up(state, wait)
    except BaseException:
        _undo(state, containers)
        raise
    return UpResult(state, generated, notes)


@dataclass(frozen=True)
class LocalRegistry:
    """The embedded registry ``ensure_local`` found or started."""

    host: str
    data_dir: Path
    started: bool
    how: str


def ensure_local(
    host: str, containers: ContainerRuntime | None, wait: float = 15.0
) -> LocalRegistry | None:
    """Make sure a registry answers at *host* when it is on this machine: start the
    embedded one (``up`` without auth or TLS) if nothing answers. None when *host* is
    not local."""
    port = local_port(host)
    if port is None:
        return None
    if answers(host):
        return LocalRegistry(host, data_dir(port), started=False, how="already running")
    if not registry_binary() and containers is None:
        raise RegistryError(
            f"nothing answers at {host} and no registry binary is installed",
            hint="install the distribution registry (Debian: docker-registry) or start one: "
            f"docker run -d -p {port}:5000 registry:2",
        )
    state = up(port, containers=containers, wait=wait).state
    how = (
        f"{Path(state.binary).name} (config {state.config})"
        if state.binary
        else "registry:2 container"
    )
    return LocalRegistry(host, state.data_dir, started=True, how=how)


def _undo(state: ServerState, containers: ContainerRuntime | None) -> None:
    """Leave nothing running or trusted after a failed start (the folder stays, for its
    log)."""
    with contextlib.suppress(Exception):
        _stop(state, containers)
    if state.tls:
        with contextlib.suppress(OSError):
            registrytls.remove_trust(state.port, tuple(state.names))
    (state.path / _STATE).unlink(missing_ok=True)


def _names(tls: bool, listen: str) -> tuple[list[str], list[str]]:
    """The host names the registry answers to, and a note when the machine's name is not
    usable (it must reach the listen address)."""
    names = list(registrytls.server_names()) if tls else ["localhost"]
    if len(names) > 1 and listen != "0.0.0.0" and not resolves_to(names[1], listen):  # noqa: S104
        note = (
            f"this machine's name '{names[1]}' does not resolve to {listen}; buildx talks "
            "plain HTTP to localhost, so builds cannot reach this TLS registry by name"
        )
        return names[:1], [note]
    return names, []


def _write_auth(state: ServerState, password: str | None) -> bool:
    """htpasswd for the auth user; a generated password goes to a 0600 file, never to
    the screen. Returns True when mab made the password."""
    folder = state.path
    if state.auth_user is None:
        (folder / "htpasswd").unlink(missing_ok=True)
        (folder / "password").unlink(missing_ok=True)
        return False
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(18)
        secret_file = folder / "password"
        write_private(secret_file, password + "\n")
        state.password_file = str(secret_file)
    write_private(folder / "htpasswd", htpasswd_line(state.auth_user, password) + "\n")
    return generated


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: created 0600, and an existing file (made
    earlier with a wider mode) tightened before anything is written into it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def _make_tls(state: ServerState) -> None:
    names = tuple(state.names)
    files = registrytls.write_tls_files(state.path / "tls", f"port {state.port}", names)
    try:
        written = registrytls.install_trust(files.ca_cert, state.port, names)
    except OSError as exc:
        raise RegistryError(
            f"cannot install the registry's CA for the engine: {exc}",
            hint="run mab registry up --tls as root (dockerd reads "
            "/etc/docker/certs.d/HOST:PORT/ca.crt)",
        ) from None
    state.trust_files = [str(p) for p in written]


def _write_config(state: ServerState, *, in_container: bool) -> None:
    # 0600: it holds http.secret
    write_private(
        state.config,
        render_config(
            root=state.path,
            port=state.port,
            listen=state.listen,
            auth=state.auth_user is not None,
            tls=state.tls,
            secret=secrets.token_hex(16),
            in_container=in_container,
            data=state.data_dir,
        ),
    )


def _container_name(port: int) -> str:
    return f"mab-registry-server-{port}"


def _spawn(binary: str, state: ServerState) -> int:
    return proc.spawn_detached([binary, "serve", str(state.config)], state.log)


def _wait_until_up(state: ServerState, wait: float) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if _answers(state, timeout=1.0):
            return
        if state.how == "binary" and state.pid is not None and not _alive(state.pid):
            break
        time.sleep(0.2)
    tail = _log_tail(state.log)
    raise RegistryError(
        f"the registry on port {state.port} did not come up within {wait:.0f}s"
        + (f": {tail}" if tail else ""),
        hint=f"see {state.log}",
    )


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        waited = 0
    if waited == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _log_tail(log: Path) -> str:
    """The registry's own reason: its panic or last fatal/error line, else its last line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith("panic:") or "level=fatal" in line or "level=error" in line:
            return line[-200:]
    return lines[-1][-200:] if lines else ""


def _stop(state: ServerState, containers: ContainerRuntime | None, wait: float = 10.0) -> None:
    if state.how == "binary" and state.pid is not None:
        if _is_our_process(state.pid, state.config):
            os.kill(state.pid, signal.SIGTERM)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(state.pid):
                time.sleep(0.1)
            if _alive(state.pid):
                os.kill(state.pid, signal.SIGKILL)
        state.pid = None
    elif state.how == "container" and state.container and containers is not None:
        containers.remove_container(_container_name(state.port))
        state.container = None


def down(
    port: int = DEFAULT_PORT,
    *,
    purge: bool = False,
    containers: ContainerRuntime | None = None,
) -> ServerState:
    """Stop the registry on *port*, withdraw the engine's trust in its CA, keep its data
    (unless *purge*)."""
    folder = folder_for(port)
    state = ServerState.load(folder)
    if state is None:
        raise UsageError(
            f"no registry started by mab on port {port} (nothing in {folder})",
            hint="mab registry up starts one; mab registry status lists them",
        )
    _stop(state, containers)
    if state.tls:
        registrytls.remove_trust(state.port, tuple(state.names))
    (folder / _STATE).unlink(missing_ok=True)
    if purge:
        shutil.rmtree(folder, ignore_errors=True)
    return state


def all_states() -> list[ServerState]:
    root = registries_root()
    if not root.is_dir():
        return []
    found = [ServerState.load(p) for p in sorted(root.iterdir()) if p.is_dir()]
    return [s for s in found if s is not None]


@dataclass(frozen=True)
class GcResult:
    summary: str
    output: str


def garbage_collect(
    state: ServerState, *, containers: ContainerRuntime | None = None, wait: float = 20.0
) -> GcResult:
    """Stop the registry, run ``garbage-collect`` on its storage, start it again.

    Without ``--delete-untagged``: mab deletes manifests itself, by digest, and never one
    that a kept index references; GC then frees the blobs nothing references any more.
    """
    _stop(state, containers)
    try:
        if state.how == "binary":
            assert state.binary is not None
            try:
                done = proc.call([state.binary, "garbage-collect", str(state.config)], timeout=600)
            except proc.ProcessFailed as exc:
                raise RegistryError(f"registry garbage-collect did not run: {exc}") from None
            output = done.stdout + done.stderr
            if done.returncode != 0:
                raise RegistryError(
                    f"registry garbage-collect failed (exit {done.returncode}): {_last(output)}",
                    hint=f"run it by hand: {state.binary} garbage-collect {state.config}",
                )
        else:
            if containers is None:
                raise RegistryError("no engine to run the registry image's garbage-collect")
            output = containers.registry_gc(state.path)
    finally:
        if state.how == "binary":
            assert state.binary is not None
            state.pid = _spawn(state.binary, state)
        elif containers is not None:
            state.container = containers.run_registry(
                _container_name(state.port), state.port, state.path
            )
        state.save()
    _wait_until_up(state, wait)
    return GcResult(_gc_summary(output), output)


def _last(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][-200:] if lines else "no output"


def _gc_summary(output: str) -> str:
    """distribution's closing line: 'N blobs marked, M blobs and K manifests eligible for
    deletion'."""
    for line in reversed(output.splitlines()):
        if "blobs marked" in line:
            return line.strip()
    return _last(output)


def gc_instructions(host: str) -> str:
    """What to run on a registry mab did not start."""
    return (
        f"free the space on {host}: run its garbage collection with the registry stopped or "
        "read-only, e.g. 'registry garbage-collect /etc/docker/registry/config.yml' "
        "(docker exec into the registry:2 container); hosted registries do this by themselves"
    )


def remove_stale(port: int) -> None:
    """Forget a state whose registry is gone (it died, or the machine restarted)."""
    with contextlib.suppress(OSError):
        (folder_for(port) / _STATE).unlink()
