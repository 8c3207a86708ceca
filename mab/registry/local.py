"""The embedded default registry: a distribution registry on localhost, started on demand.

When builds.yaml names no registry (or names one on localhost) and nothing answers there,
mab starts the CNCF distribution registry itself: the ``docker-registry``/``registry``
binary when one is installed, else the ``registry:2`` image through the engine. Its data
stays in a folder mab names, so images survive a restart.

It starts the registry through mab.proc, like every non-docker program mab runs.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mab import proc
from mab.errors import RegistryError

LOCAL_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class LocalRegistry:
    host: str
    data_dir: Path
    log_file: Path | None
    started: bool
    how: str


def local_port(host: str) -> int | None:
    """The port of a registry host on this machine (``localhost:5000`` -> 5000), else None."""
    name, _, port = host.partition(":")
    if name not in LOCAL_HOSTS:
        return None
    return int(port) if port.isdigit() else 80


def registry_binary() -> str | None:
    """The CNCF distribution registry's binary (Debian names it docker-registry), if any."""
    return shutil.which("docker-registry") or shutil.which("registry")


def answers(host: str, timeout: float = 2.0) -> bool:
    """True when something speaking the registry API v2 answers at http://HOST/v2/."""
    try:
        response = httpx.get(f"http://{host}/v2/", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code in (200, 401)


def data_dir(port: int) -> Path:
    override = os.environ.get("MAB_REGISTRY_DIR")
    if override and port == 5000:
        return Path(override)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "mab"
    return base / ("registry" if port == 5000 else f"registry-{port}")


def _config(data: Path, port: int) -> str:
    return (
        "version: 0.1\n"
        "log:\n  level: info\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {data}\n"
        "  delete:\n    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
    )


def ensure(
    host: str, *, start_container: object | None = None, wait: float = 15.0
) -> LocalRegistry | None:
    """Make sure a local registry answers at *host*; start one if needed.

    Returns None when *host* is not on this machine. *start_container* is a callable
    ``(port, data_dir) -> None`` used when no registry binary is installed.
    """
    port = local_port(host)
    if port is None:
        return None
    data = data_dir(port)
    if answers(host):
        return LocalRegistry(host, data, None, started=False, how="already running")
    data.mkdir(parents=True, exist_ok=True)
    binary = registry_binary()
    log_file: Path | None = None
    if binary:
        config = data.parent / f"{data.name}-config.yml"
        config.write_text(_config(data, port), encoding="utf-8")
        log_file = data.parent / f"{data.name}.log"
        proc.spawn_detached([binary, "serve", str(config)], log_file)
        how = f"{Path(binary).name} (config {config})"
    elif callable(start_container):
        start_container(port, data)
        how = "registry:2 container"
    else:
        raise RegistryError(
            f"nothing answers at {host} and no registry binary is installed",
            hint="install the distribution registry (Debian: docker-registry) or start one: "
            f"docker run -d -p {port}:5000 registry:2",
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if answers(host, timeout=1.0):
            return LocalRegistry(host, data, log_file, started=True, how=how)
        time.sleep(0.2)
    detail = f"; see {log_file}" if log_file else ""
    raise RegistryError(
        f"started a registry for {host} but it did not answer within {wait:.0f}s{detail}"
    )
