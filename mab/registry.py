"""A small OCI distribution API client (httpx): what mab itself pushes and reads.

Why not buildx for the push: the buildx ``docker`` driver, the default builder on a plain
Docker engine, cannot push by digest ("push-by-digest is currently not implemented for
docker driver"). mab therefore has BuildKit write each platform image as an OCI layout
and uploads it here, by digest, with no tag: tags are written only when the whole index
is assembled. Blobs the registry already holds are not sent again.

Auth: anonymous, Basic, and Bearer tokens from the ``WWW-Authenticate`` challenge, with
credentials from docker's config.json ``auths`` (never from the command line). Plain HTTP
is used for registries on the loopback interface (as docker does) and for hosts listed in
``MAB_INSECURE_REGISTRIES`` (comma-separated).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mab.errors import RegistryError

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_CHUNK = 1 << 20
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


def split_repository(repository: str) -> tuple[str, str]:
    """``localhost:5000/demo/app`` -> (``localhost:5000``, ``demo/app``)."""
    host, _, path = repository.partition("/")
    if not path:
        raise RegistryError(f"'{repository}' names no repository under a registry host")
    return host, path


def is_plain_http(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name in ("localhost", "::1", "[::1]") or name.startswith("127."):
        return True
    insecure = os.environ.get("MAB_INSECURE_REGISTRIES", "")
    return host in {h.strip() for h in insecure.split(",") if h.strip()}


def _docker_basic_auth(host: str) -> str | None:
    """The base64 ``user:password`` docker stored for *host*, if any (never logged)."""
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    auths: dict[str, Any] = config.get("auths") or {}
    for key in (host, f"https://{host}", f"http://{host}"):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            return str(entry["auth"])
    return None


@dataclass(frozen=True)
class Pushed:
    digest: str
    media_type: str
    size: int
    blobs_sent: int
    blobs_skipped: int


class RegistryClient:
    def __init__(self, host: str, *, timeout: float = 120.0) -> None:
        self.host = host
        scheme = "http" if is_plain_http(host) else "https"
        self._base = f"{scheme}://{host}"
        self._http = httpx.Client(timeout=timeout, follow_redirects=True)
        self._basic = _docker_basic_auth(host)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport and auth -------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        content: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = url if url.startswith("http") else self._base + url
        sent_headers = dict(headers or {})
        for attempt in range(2):
            token = self._tokens.get(scope)
            if token:
                sent_headers["Authorization"] = f"Bearer {token}"
            elif self._basic and attempt:
                sent_headers["Authorization"] = f"Basic {self._basic}"
            body = content() if callable(content) else content
            try:
                response = self._http.request(method, url, content=body, headers=sent_headers)
            except httpx.ConnectError as exc:
                raise RegistryError(
                    f"cannot reach registry {self.host}: {_reason(exc)}",
                    hint="is it running? For localhost, `mab build` starts one when none answers",
                ) from None
            except httpx.HTTPError as exc:
                raise RegistryError(
                    f"registry {self.host}: {method} failed: {_reason(exc)}"
                ) from None
            if response.status_code != 401 or attempt:
                return response
            self._authenticate(response, scope)
        return response

    def _authenticate(self, response: httpx.Response, scope: str) -> None:
        challenge = response.headers.get("www-authenticate", "")
        if challenge.lower().startswith("bearer"):
            params = dict(_CHALLENGE_RE.findall(challenge))
            realm = params.get("realm")
            if not realm:
                return
            query = {"service": params.get("service", ""), "scope": scope}
            headers = {"Authorization": f"Basic {self._basic}"} if self._basic else {}
            try:
                got = self._http.get(realm, params=query, headers=headers)
            except httpx.HTTPError as exc:
                raise RegistryError(
                    f"registry {self.host}: token request failed: {_reason(exc)}"
                ) from None
            if got.status_code != 200:
                raise RegistryError(
                    f"registry {self.host} refused a token for {scope} ({got.status_code})",
                    hint=f"log in first: docker login {self.host}",
                )
            data = got.json()
            self._tokens[scope] = str(data.get("token") or data.get("access_token") or "")

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code < 300:
            return
        code = response.status_code
        detail = _error_detail(response)
        if code in (401, 403):
            raise RegistryError(
                f"registry {self.host} denied {what} ({code}{detail})",
                hint=f"log in with: docker login {self.host}",
            )
        raise RegistryError(f"registry {self.host}: {what} failed ({code}{detail})")

    # --- blobs and manifests --------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        response = self._request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=_scope(repo, "pull"))
        if response.status_code == 404:
            return False
        self._check(response, f"checking blob {digest[:19]}")
        return True

    def upload_blob(self, repo: str, digest: str, path: Path) -> None:
        scope = _scope(repo, "pull,push")
        started = self._request("POST", f"/v2/{repo}/blobs/uploads/", scope=scope)
        self._check(started, "starting an upload")
        location = started.headers.get("location")
        if not location:
            raise RegistryError(f"registry {self.host} gave no upload location")
        if not location.startswith("http"):
            location = self._base + location
        sep = "&" if "?" in location else "?"
        size = path.stat().st_size
        done = self._request(
            "PUT",
            f"{location}{sep}digest={digest}",
            scope=scope,
            content=lambda: _file_chunks(path),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        self._check(done, f"uploading blob {digest[:19]}")

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        response = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            scope=_scope(repo, "pull,push"),
            content=data,
            headers={"Content-Type": media_type},
        )
        self._check(response, f"writing manifest {reference[:19]}")
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def push_layout(self, layout: Path, repo: str) -> Pushed:
        """Upload the image (or index) an OCI layout's index.json names, by digest only."""
        try:
            top = json.loads((layout / "index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{layout} is not an OCI layout: {exc}") from None
        manifests = top.get("manifests") or []
        if len(manifests) != 1:
            raise RegistryError(
                f"{layout}: expected one image in the layout, found {len(manifests)}"
            )
        counts = [0, 0]
        desc = manifests[0]
        self._push_descriptor(layout, repo, desc, counts)
        return Pushed(desc["digest"], desc["mediaType"], int(desc["size"]), counts[0], counts[1])

    def _push_descriptor(
        self, layout: Path, repo: str, desc: dict[str, Any], counts: list[int]
    ) -> None:
        digest = str(desc["digest"])
        media_type = str(desc["mediaType"])
        blob = _blob_path(layout, digest)
        data = blob.read_bytes()
        document = json.loads(data)
        if media_type in INDEX_TYPES:
            for child in document.get("manifests", []):
                self._push_descriptor(layout, repo, child, counts)
        else:
            for part in [document.get("config"), *document.get("layers", [])]:
                if not part:
                    continue
                if self.blob_exists(repo, part["digest"]):
                    counts[1] += 1
                else:
                    self.upload_blob(repo, part["digest"], _blob_path(layout, part["digest"]))
                    counts[0] += 1
        written = self.put_manifest(repo, digest, data, media_type)
        if written != digest:
            raise RegistryError(
                f"manifest digest mismatch: layout says {digest}, bytes are {written}"
            )


def _blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hexpart = digest.partition(":")
    return layout / "blobs" / algorithm / hexpart


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _scope(repo: str, actions: str) -> str:
    return f"repository:{repo}:{actions}"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _error_detail(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return ""
    if errors:
        first = errors[0]
        return f": {first.get('code', '')} {first.get('message', '')}".rstrip()
    return ""
