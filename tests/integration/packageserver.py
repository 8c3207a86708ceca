"""A private package index for the template tests, on the Docker bridge, where build steps
reach it (they reach nothing else: builds here have no internet).

It serves the package cache scripts/make-mirrors fills:

- ``/pypi/``: a flat folder of wheels for pip's ``find-links`` (poetry and its dependencies,
  six), behind HTTP basic auth, so a build that gets it has received the credentials from
  the ``pip.conf`` build secret;
- ``/npm/pnpm/VERSION`` and ``/npm/pnpm/-/pnpm-VERSION.tgz``: what corepack asks an npm
  registry for (``COREPACK_NPM_REGISTRY``): the registry's own version document and the
  tarball;
- ``/npm/is-number/-/is-number-7.0.0.tgz``: a dependency's tarball, as ``npm ci`` fetches
  it from a package-lock.json, behind a bearer token that reaches the build only in the
  ``npmrc`` build secret.

Every request is recorded, so tests can assert that the builds really came here.
"""

from __future__ import annotations

import base64
import html
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PACKAGES = Path(os.environ.get("MAB_MIRRORS_CACHE", "/var/cache/mab-mirrors")) / "packages"
STAMP = PACKAGES / ".complete-v2"
PNPM_VERSION = "9.15.9"
IS_NUMBER_VERSION = "7.0.0"
IS_NUMBER_INTEGRITY = (
    "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv00"
    "04MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng=="
)
# sha512 of pnpm-9.15.9.tgz (the registry's dist.integrity, in hex): package.json pins
# "pnpm@VERSION+sha512.HEX", as `corepack use` writes it, and corepack checks the download
# against it. (The npm registry proxy here serves version documents without signatures.)
PNPM_SHA512 = (
    "68046141893c66fad01c079231128e9afb89ef87e2691d69e4d40eee228988295f"
    "d4682181bae55b58418c3a253bde65a505ec7c5f9403ece5cc3cd37dcf2531"
)


@dataclass
class PackageServer:
    url: str  # http://GATEWAY:PORT, as build steps reach it
    host: str
    user: str
    token: str  # the password of /pypi/: must end up in no image, log or report
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, status)

    def pip_conf(self) -> str:
        netloc = self.url.removeprefix("http://")
        return (
            "[global]\n"
            "no-index = true\n"
            f"find-links = http://{self.user}:{self.token}@{netloc}/pypi/\n"
            f"trusted-host = {self.host}\n"
        )

    def npmrc(self) -> str:
        netloc = self.url.removeprefix("http://")
        return f"registry={self.url}/npm/\n//{netloc}/npm/:_authToken={self.token}\n"

    @property
    def corepack_registry(self) -> str:
        return f"{self.url}/npm"

    def served(self, prefix: str) -> list[str]:
        return [path for path, status in self.requests if status == 200 and path.startswith(prefix)]


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge, which build steps can reach."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _handler(server: PackageServer) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{server.user}:{server.token}".encode()).decode()
    bearer = f"Bearer {server.token}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # recorded below instead

        def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain") -> None:
            server.requests.append((self.path, status))
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="mab-test"')
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path.startswith("/pypi/"):
                if self.headers.get("Authorization") != expected:
                    return self._send(401)
                name = path.removeprefix("/pypi/")
                folder = PACKAGES / "pypi"
                if name == "":
                    links = "".join(
                        f'<a href="{html.escape(p.name)}">{html.escape(p.name)}</a><br>\n'
                        for p in sorted(folder.iterdir())
                    )
                    page = f"<html><body>\n{links}</body></html>".encode()
                    return self._send(200, page, "text/html")
                file = folder / name
                if "/" in name or not file.is_file():
                    return self._send(404)
                return self._send(200, file.read_bytes(), "application/octet-stream")
            if path == f"/npm/is-number/-/is-number-{IS_NUMBER_VERSION}.tgz":
                if self.headers.get("Authorization") != bearer:
                    return self._send(401)
                body = (PACKAGES / "npm" / f"is-number-{IS_NUMBER_VERSION}.tgz").read_bytes()
                return self._send(200, body, "application/octet-stream")
            if path == f"/npm/pnpm/{PNPM_VERSION}":
                body = (PACKAGES / "npm" / f"pnpm-{PNPM_VERSION}.json").read_bytes()
                return self._send(200, body, "application/json")
            if path == f"/npm/pnpm/-/pnpm-{PNPM_VERSION}.tgz":
                body = (PACKAGES / "npm" / f"pnpm-{PNPM_VERSION}.tgz").read_bytes()
                return self._send(200, body, "application/octet-stream")
            return self._send(404)

    return Handler


@contextmanager
def package_server() -> Iterator[PackageServer]:
    host = bridge_gateway()
    httpd = ThreadingHTTPServer((host, 0), BaseHTTPRequestHandler)
    port = httpd.server_address[1]
    server = PackageServer(f"http://{host}:{port}", host, "mab", secrets.token_hex(16))
    httpd.RequestHandlerClass = _handler(server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
