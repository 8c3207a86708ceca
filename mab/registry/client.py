"""A small OCI distribution API client (httpx): what mab itself pushes and reads.

Why not buildx for the push: the buildx ``docker`` driver, the default builder on a plain
Docker engine, cannot push by digest ("push-by-digest is currently not implemented for
docker driver"). mab therefore has BuildKit write each platform image as an OCI layout
and uploads it here, by digest, with no tag: tags are written only when the whole index
is assembled. Blobs the registry already holds are not sent again.

Auth: anonymous, Basic, and Bearer tokens from the ``WWW-Authenticate`` challenge, with
the credentials docker stored (config.json ``auths``, ``credsStore`` or ``credHelpers``,
see mab.registry.credentials; never from the command line). Plain HTTP is used for registries on
the loopback interface (as docker does) and for hosts listed in
``MAB_INSECURE_REGISTRIES`` (comma-separated), except where a CA is installed for the host
in ``/etc/docker/certs.d/HOST/ca.crt``: then HTTPS, verified against it (``MAB_CA_BUNDLE``
adds CAs for every host).
"""

from __future__ import annotations

import email.utils
import functools
import json
import os
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import certifi
import httpx

from mab.errors import RegistryError, UsageError
from mab.oci import ACCEPT, INDEX_TYPES, Manifest, digest_of
from mab.registry import credentials
from mab.registry.base import Pushed, split_repository
from mab.registry.tls import ca_file_for

__all__ = ["Manifest", "Pushed", "RegistryClient", "RetryPolicy", "split_repository"]

_CHUNK = 1 << 20
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


def is_plain_http(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name in ("localhost", "::1", "[::1]") or name.startswith("127."):
        return True
    insecure = os.environ.get("MAB_INSECURE_REGISTRIES", "")
    return host in {h.strip() for h in insecure.split(",") if h.strip()}


def _tls_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """Public CAs, plus the registry's own CA (certs.d) and ``MAB_CA_BUNDLE``, if any."""
    extra = [p for p in (ca_file, os.environ.get("MAB_CA_BUNDLE")) if p]
    if not extra:
        return _public_context()
    context = _base_context()  # a fresh one: the cached public one must stay as it is
    for path in extra:
        try:
            context.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise RegistryError(
                f"cannot read the CA bundle {path}: {exc}",
                hint="point MAB_CA_BUNDLE at a PEM file of CA certificates",
            ) from None
    return context


@functools.cache
def _public_context() -> ssl.SSLContext:
    """``_base_context``, made once per process: loading the CA bundle costs ~40 ms, and a
    run opens a client per host and step (the skip check alone opens several)."""
    return _base_context()


def _base_context() -> ssl.SSLContext:
    """httpx's default verification: SSL_CERT_FILE, SSL_CERT_DIR, else certifi."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())


class _LazyTLSTransport(httpx.BaseTransport):
    """The https:// transport of a plain-HTTP registry's client, verifying as any other,
    made on its first request: a registry may redirect blob downloads to https storage,
    but most runs never go there, and loading the CA bundle costs 30-40 ms of every run's
    start (the unchanged check opens a client before anything else)."""

    def __init__(self, ca_file: Path | None) -> None:
        self._ca_file = ca_file
        self._real: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            if self._real is None:
                self._real = httpx.HTTPTransport(verify=_tls_verify(self._ca_file))
        return self._real.handle_request(request)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()


def _tls_failure(host: str, exc: BaseException) -> RegistryError | None:
    """A one-line error for a TLS failure that retrying cannot fix, else None."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        if "expired" in text:
            return RegistryError(
                f"registry {host}: its TLS certificate has expired",
                hint="renew the registry's certificate (for mab registry up --tls: down, then "
                "up --tls again)",
            )
        return RegistryError(
            f"registry {host}: TLS certificate signed by an unknown authority",
            hint=f"trust its CA: put it in /etc/docker/certs.d/{host}/ca.crt or name a PEM "
            "bundle in MAB_CA_BUNDLE (mab registry up --tls does the first for its registry)",
        )
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return RegistryError(
            f"registry {host} speaks plain HTTP where mab expected HTTPS",
            hint=f"list it in MAB_INSECURE_REGISTRIES={host}, or remove "
            f"/etc/docker/certs.d/{host} if it no longer uses TLS",
        )
    return None


RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for registry errors worth retrying: 5xx, 429 (honouring
    Retry-After), refused, reset or dropped connections. 401, 403 and 404 are final."""

    attempts: int = 5
    max_seconds: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None, rand: Callable[[], float]) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_seconds)
        # exponential backoff with "full jitter": uniform in [0, base * 2^attempt]
        return rand() * min(self.max_delay, self.base_delay * (2.0**attempt))

    @classmethod
    def from_env(cls) -> RetryPolicy:
        return cls(
            attempts=int(_env_number("MAB_RETRY_ATTEMPTS", 5, 1, 100)),
            max_seconds=_env_number("MAB_RETRY_MAX_SECONDS", 60, 0, 3600),
        )


def _env_number(name: str, default: float, low: float, high: float) -> float:
    """A number from the environment, checked: a UsageError naming the variable, never a
    ValueError traceback."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise UsageError(
            f"{name}={text[:40]!r} is not a number", hint=f"unset it, or set {low:g} to {high:g}"
        ) from None
    if not low <= value <= high:
        raise UsageError(f"{name}={value:g} is out of range", hint=f"set {low:g} to {high:g}")
    return value


class RegistryClient:
    def __init__(
        self,
        host: str,
        *,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        credential: credentials.Credential | None = None,
        attempts: int | None = None,
    ) -> None:
        """*credential*: use it instead of what docker stored for *host* (``mab login``
        checks a password with it before docker stores it); *attempts*: at most this many
        tries per request, within 10 s (a look-up allowed to fail fast)."""
        self.host = host
        ca_file = ca_file_for(host)
        scheme = "http" if is_plain_http(host) and ca_file is None else "https"
        self._base = f"{scheme}://{host}"
        if scheme == "http":  # https only where a redirect leads (blob storage), if ever
            self._http = httpx.Client(
                timeout=timeout,
                follow_redirects=True,
                # the default transport serves http:// URLs only, where there is no TLS to
                # verify; https:// ones go to the mount, which verifies
                verify=False,  # noqa: S501
                mounts={"https://": _LazyTLSTransport(ca_file)},
            )
        else:
            self._http = httpx.Client(
                timeout=timeout, follow_redirects=True, verify=_tls_verify(ca_file)
            )
        credential = credential or credentials.lookup(host)
        self._username = credential.username if credential else None
        self._identity_token = (
            credential.secret if credential and credential.identity_token else None
        )
        self._basic = credential.basic if credential and not credential.identity_token else None
        self._tokens: dict[str, str] = {}
        self._retry = retry or RetryPolicy.from_env()
        if attempts is not None:
            self._retry = RetryPolicy(attempts=attempts, max_seconds=10.0)
        self._on_retry = on_retry or (lambda message: None)
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport, retries and auth ------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        content: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One logical request: authenticated, and retried while the failure is transient."""
        policy = self._retry
        deadline = time.monotonic() + policy.max_seconds
        attempt = 0
        while True:
            problem: str
            retry_after: float | None = None
            try:
                response = self._authorized(method, url, scope, content, headers)
            except (
                httpx.ConnectError,
                httpx.ReadError,
                httpx.WriteError,
                httpx.RemoteProtocolError,
                httpx.TimeoutException,
            ) as exc:
                problem = _reason(exc)
                tls_error = _tls_failure(self.host, exc)
                if tls_error is not None:
                    raise tls_error from None
                if isinstance(exc, httpx.ConnectError) and attempt + 1 >= policy.attempts:
                    raise RegistryError(
                        f"cannot reach registry {self.host} after {attempt + 1} attempts: "
                        f"{problem}",
                        hint="is it running and is the host:port right? (mab doctor checks "
                        "every registry builds.yaml names)",
                    ) from None
            except httpx.HTTPError as exc:
                raise RegistryError(
                    f"registry {self.host}: {method} failed: {_reason(exc)}"
                ) from None
            else:
                if response.status_code not in RETRYABLE_STATUS or _permanent(response):
                    return response  # the caller's _check says why, with the registry's detail
                problem = f"{response.status_code} {response.reason_phrase}".strip()
                problem += _error_detail(response)
                retry_after = _retry_after(response)
            attempt += 1
            wait = policy.delay(attempt - 1, retry_after, random.random)
            if attempt >= policy.attempts or time.monotonic() + wait > deadline:
                raise RegistryError(
                    f"registry {self.host}: {method} {_path_of(url)} failed after {attempt} "
                    f"attempts: {problem}"
                )
            self._on_retry(
                f"registry {self.host}: {problem}; retry {attempt} of {policy.attempts - 1} "
                f"in {wait:.1f}s"
            )
            self._sleep(wait)

    def _authorized(
        self, method: str, url: str, scope: str, content: Any, headers: dict[str, str] | None
    ) -> httpx.Response:
        url = url if url.startswith("http") else self._base + url
        sent_headers = dict(headers or {})
        response: httpx.Response | None = None
        for attempt in range(2):
            token = self._tokens.get(scope)
            if token:
                sent_headers["Authorization"] = f"Bearer {token}"
            elif self._basic and attempt:
                sent_headers["Authorization"] = f"Basic {self._basic}"
            body = content() if callable(content) else content
            response = self._http.request(method, url, content=body, headers=sent_headers)
            if response.status_code != 401 or attempt:
                return response
            self._authenticate(response, scope)
        assert response is not None
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
            if (self._basic or self._identity_token) and not self._realm_trusted(realm):
                raise RegistryError(
                    f"registry {self.host} asks for a token from {_origin(realm)} over plain "
                    "HTTP on another host; mab sends credentials only to the registry's own "
                    "host or an https token service",
                    hint="check the registry's auth.token.realm setting",
                )
            try:
                if self._identity_token:  # OAuth2 refresh token (docker's identitytoken)
                    got = self._http.post(
                        realm,
                        data={
                            **query,
                            "grant_type": "refresh_token",
                            "refresh_token": self._identity_token,
                            "client_id": "mab",
                        },
                    )
                else:
                    got = self._http.get(realm, params=query, headers=headers)
            except httpx.HTTPError as exc:
                raise RegistryError(
                    f"registry {self.host}: token request failed: {_reason(exc)}"
                ) from None
            if got.status_code != 200 and _says_expired(got):
                raise _expired(self.host)
            if got.status_code != 200:
                raise RegistryError(
                    f"registry {self.host} refused a token for {scope} ({got.status_code})",
                    hint=f"log in first: docker login {self.host}",
                )
            data = got.json()
            self._tokens[scope] = str(data.get("token") or data.get("access_token") or "")

    def _realm_trusted(self, realm: str) -> bool:
        """A token realm that may receive the stored credentials: https, or this
        registry's own host (a plain-HTTP registry on loopback names itself)."""
        url = httpx.URL(realm)
        own = self.host.rsplit(":", 1)[0] if self.host.count(":") == 1 else self.host
        return url.scheme == "https" or url.host == own.strip("[]")

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code < 300:
            return
        code = response.status_code
        detail = _error_detail(response)
        if code >= 500 and _permanent(response):
            raise RegistryError(
                f"registry {self.host}: {what} failed ({code}{detail}): its storage is full "
                "or read-only, which retrying does not fix",
                hint="free space on the registry (mab clean, then its garbage collection) or "
                "take it out of read-only mode, then rerun: what was pushed stays",
            )
        if code == 401 and _says_expired(response):
            raise _expired(self.host)
        if code == 401 and (self._basic or self._identity_token):
            user = self._username if self._username and not self._identity_token else "USER"
            raise RegistryError(
                f"registry {self.host} rejected the stored credentials for {user} while "
                f"{what} (401): wrong user name or password",
                hint=f"log in again: mab login {self.host} -u {user} --password-stdin",
            )
        if code == 405 and "delet" in what:
            raise RegistryError(
                f"registry {self.host} has deletion disabled ({what}: 405{detail})",
                hint="enable it in the registry's config (storage: delete: enabled: true, or "
                "REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it",
            )
        if code == 400 and "HTTP request to an HTTPS server" in response.text:
            raise RegistryError(
                f"registry {self.host} speaks HTTPS but mab used plain HTTP",
                hint=f"install its CA as /etc/docker/certs.d/{self.host}/ca.crt (then mab "
                "uses HTTPS), or name it by a non-loopback host name",
            )
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
        """Upload one blob (POST a session, PUT the bytes). When the PUT fails in a way a
        new session can fix (the registry restarted and forgot the session, a dropped
        connection, a 5xx), start over with a new POST: retrying the PUT on a dead session
        only gets BLOB_UPLOAD_INVALID or "upload resumed at wrong offset"."""
        policy = self._retry
        attempt = 0
        while True:
            attempt += 1
            try:
                self._upload_once(repo, digest, path)
                return
            except _UploadBroken as exc:
                if attempt >= policy.attempts:
                    raise RegistryError(
                        f"registry {self.host}: uploading blob {digest[:19]} failed after "
                        f"{attempt} attempts: {exc}"
                    ) from None
                wait = policy.delay(attempt - 1, None, random.random)
                self._on_retry(
                    f"registry {self.host}: upload of blob {digest[:19]} broke ({exc}); "
                    f"starting a new upload ({attempt} of {policy.attempts - 1}) in {wait:.1f}s"
                )
                self._sleep(wait)

    def _upload_once(self, repo: str, digest: str, path: Path) -> None:
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
        try:
            done = self._authorized(
                "PUT",
                f"{location}{sep}digest={digest}",
                scope,
                lambda: _file_chunks(path),
                {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            )
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            tls_error = _tls_failure(self.host, exc)
            if tls_error is not None:
                raise tls_error from None
            raise _UploadBroken(_reason(exc)) from None
        if done.status_code in RETRYABLE_STATUS and not _permanent(done):
            raise _UploadBroken(f"{done.status_code}{_error_detail(done)}")
        if done.status_code in (400, 404) and _error_code(done) in _SESSION_LOST:
            raise _UploadBroken(f"{done.status_code}{_error_detail(done)}")
        self._check(done, f"uploading blob {digest[:19]}")

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        response = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            scope=_scope(repo, "pull,push"),
            content=data,
            headers={"Content-Type": media_type},
        )
        if response.status_code == 400 and "MANIFEST_BLOB_UNKNOWN" in response.text:
            raise ManifestBlobUnknown(
                f"registry {self.host}: writing manifest {reference[:19]} failed: it does "
                f"not know a blob the manifest names{_error_detail(response)}"
            )
        self._check(response, f"writing manifest {reference[:19]}")
        return digest_of(data)

    def get_manifest(self, repo: str, reference: str) -> Manifest:
        """The exact bytes the registry serves for a tag or digest, with their digest."""
        response = self._request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            scope=_scope(repo, "pull"),
            headers={"Accept": ACCEPT},
        )
        if response.status_code == 404:
            raise RegistryError(f"{self.host}/{repo}:{reference}: manifest unknown")
        self._check(response, f"reading manifest {reference}")
        data = response.content
        return Manifest(
            digest=digest_of(data),
            media_type=response.headers.get("content-type", "").split(";")[0],
            data=data,
        )

    def head_manifest(self, repo: str, reference: str) -> str | None:
        """The digest a tag or digest resolves to, or None when the registry has none."""
        response = self._request(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            scope=_scope(repo, "pull"),
            headers={"Accept": ACCEPT},
        )
        if response.status_code == 404:
            return None
        self._check(response, f"checking manifest {reference}")
        digest = response.headers.get("docker-content-digest")
        return digest or self.get_manifest(repo, reference).digest

    def list_tags(self, repo: str) -> list[str]:
        """Every tag of *repo*, following the registry's pagination (``Link`` headers)."""
        tags: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list?n=1000"
        while url:
            response = self._request("GET", url, scope=_scope(repo, "pull"))
            if response.status_code == 404:
                return tags  # no such repository yet: no tags
            self._check(response, "listing tags")
            tags.extend(response.json().get("tags") or [])
            url = _next_link(response)
        return tags

    def ping(self) -> int:
        """``GET /v2/`` with the client's credentials (Basic, or a token for them): 200
        when they are accepted, 401 when refused. Unreachable and TLS problems raise."""
        response = self._request("GET", "/v2/", scope="")
        if response.status_code == 401 and _says_expired(response):
            raise _expired(self.host)
        return response.status_code

    def catalog(self, page_size: int = 1000) -> list[str]:
        """Every repository the registry lists (``/v2/_catalog``, following pagination)."""
        repos: list[str] = []
        url: str | None = f"/v2/_catalog?n={page_size}"
        while url:
            response = self._request("GET", url, scope="registry:catalog:*")
            if response.status_code == 404:
                raise RegistryError(
                    f"registry {self.host} does not offer a catalog (/v2/_catalog: 404)",
                    hint="some hosted registries list repositories only in their own console "
                    "or CLI; name a repository instead",
                )
            self._check(response, "listing repositories")
            repos.extend(response.json().get("repositories") or [])
            url = _next_link(response)
        return repos

    def get_blob(self, repo: str, digest: str) -> bytes:
        """A (small) blob, e.g. an image config, checked against its digest."""
        response = self._request("GET", f"/v2/{repo}/blobs/{digest}", scope=_scope(repo, "pull"))
        if response.status_code == 404:
            raise RegistryError(f"{self.host}/{repo}@{digest}: blob unknown")
        self._check(response, f"reading blob {digest[:19]}")
        data = response.content
        if digest_of(data) != digest:
            raise RegistryError(f"{self.host}/{repo}@{digest}: blob bytes do not match digest")
        return data

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete a manifest (image or index) by digest: every tag on it goes with it.
        Blobs are freed by the registry's garbage collection, not here."""
        if not digest.startswith("sha256:"):
            raise RegistryError(f"delete needs a digest, not '{digest}'")
        response = self._request(
            "DELETE", f"/v2/{repo}/manifests/{digest}", scope=_scope(repo, "pull,push,delete")
        )
        if response.status_code == 404:
            raise RegistryError(f"{self.host}/{repo}@{digest}: manifest unknown")
        self._check(response, f"deleting {digest[:19]}")

    def push_layout(self, layout: Path, repo: str) -> Pushed:
        """Upload the image (or index) an OCI layout's index.json names, by digest only.

        First every blob the manifests name, several at once (``PUSH_CONCURRENCY``, as
        docker pushes several layers at once: one at a time, an index of three platforms
        and their attestations is some fifty requests in a row, each a round trip to the
        registry); then the manifests, each after the blobs and manifests it names. The
        first failure stops what has not started yet."""
        try:
            top = json.loads((layout / "index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{layout} is not an OCI layout: {exc}") from None
        manifests = top.get("manifests") or []
        if len(manifests) != 1:
            raise RegistryError(
                f"{layout}: expected one image in the layout, found {len(manifests)}"
            )
        desc = manifests[0]
        levels = _manifest_levels(layout, desc)
        tally = _Tally()
        blobs = dict.fromkeys(part for level in levels for m in level for part in m.parts)
        _each(lambda digest: self._send_blob(layout, repo, digest, tally, force=False), blobs)
        for level in reversed(levels):  # images first, then the indexes naming them
            _each(lambda m: self._put_layout_manifest(layout, repo, m, tally), level)
        return Pushed(
            desc["digest"], desc["mediaType"], int(desc["size"]), tally.sent, tally.skipped
        )

    def _put_layout_manifest(
        self, layout: Path, repo: str, manifest: _LayoutManifest, tally: _Tally
    ) -> None:
        try:
            written = self.put_manifest(repo, manifest.digest, manifest.data, manifest.media_type)
        except ManifestBlobUnknown:
            if not manifest.parts:  # an index: its child manifests were just written
                raise
            # Another uploader of the same blob at the same moment (a CI job on another
            # machine) can leave the registry with the blob but without this repository's
            # link to it, so HEAD said "present" while the manifest PUT says "unknown".
            # Upload every part again, unconditionally, and try once more.
            for part in manifest.parts:
                self._send_blob(layout, repo, part, tally, force=True)
            written = self.put_manifest(repo, manifest.digest, manifest.data, manifest.media_type)
        if written != manifest.digest:
            raise RegistryError(
                f"manifest digest mismatch: layout says {manifest.digest}, bytes are {written}"
            )

    def _send_blob(self, layout: Path, repo: str, digest: str, tally: _Tally, force: bool) -> None:
        """Upload one blob of the layout unless the repository has it (or *force*)."""
        with _blob_lock(self.host, repo, digest):
            if not force and self.blob_exists(repo, digest):
                tally.add(skipped=1)
            else:
                self.upload_blob(repo, digest, _blob_path(layout, digest))
                tally.add(sent=1)


PUSH_CONCURRENCY = 4
_T = TypeVar("_T")


@dataclass(frozen=True)
class _LayoutManifest:
    digest: str
    media_type: str
    data: bytes
    parts: tuple[str, ...]  # config and layers (none for an index)


def _manifest_levels(layout: Path, desc: dict[str, Any]) -> list[list[_LayoutManifest]]:
    """The manifests under *desc* in the layout by depth: [[the top], [its children], ...]."""
    levels: list[list[_LayoutManifest]] = []
    current = [desc]
    while current:
        level: list[_LayoutManifest] = []
        below: list[dict[str, Any]] = []
        for d in current:
            data = _blob_path(layout, str(d["digest"])).read_bytes()
            document = json.loads(data)
            if d["mediaType"] in INDEX_TYPES:
                below += document.get("manifests", [])
            named = [document.get("config"), *document.get("layers", [])]
            parts = tuple(str(p["digest"]) for p in named if p)
            level.append(_LayoutManifest(str(d["digest"]), str(d["mediaType"]), data, parts))
        levels.append(level)
        current = below
    return levels


def _each(work: Callable[[_T], None], items: Iterable[_T]) -> None:
    """*work* on every item, up to PUSH_CONCURRENCY at once. After the first error no item
    starts; once the running ones have finished, the error of the first failed item (in
    *items*' order) is raised."""
    todo = list(items)
    if len(todo) <= 1:
        for item in todo:
            work(item)
        return
    stop = threading.Event()

    def guarded(item: _T) -> None:
        if stop.is_set():  # a worker free again after a failure takes nothing new
            return
        try:
            work(item)
        except BaseException:
            stop.set()
            raise

    with ThreadPoolExecutor(min(len(todo), PUSH_CONCURRENCY), "mab-push") as pool:
        futures = [pool.submit(guarded, item) for item in todo]
    for future in futures:
        future.result()


class _Tally:
    """Blobs sent and blobs the registry already had, counted from several threads."""

    def __init__(self) -> None:
        self.sent = 0
        self.skipped = 0
        self._lock = threading.Lock()

    def add(self, *, sent: int = 0, skipped: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.skipped += skipped


class ManifestBlobUnknown(RegistryError):
    """A manifest PUT refused with MANIFEST_BLOB_UNKNOWN."""


class _UploadBroken(Exception):
    """A blob upload's session is gone or broke: a new upload (POST) may succeed."""


# the registry no longer knows the upload session (it restarted, or the session expired)
_SESSION_LOST = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID", "SIZE_INVALID"})

# 5xx answers no retry fixes: the registry's storage is full or read-only
_PERMANENT_RE = re.compile(
    r"no space left on device|read-only file system|read-only mode|readonly|disk quota",
    re.IGNORECASE,
)


def _permanent(response: httpx.Response) -> bool:
    try:
        return bool(_PERMANENT_RE.search(response.text))
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return False


_LOCKS_GUARD = threading.Lock()
_BLOB_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}


def _blob_lock(host: str, repo: str, digest: str) -> threading.Lock:
    """One lock per blob and repository for this process. The platform images of a target
    share base layers and are pushed in parallel; two concurrent uploads of one blob into
    one repository make distribution 2.8 lose the repository's link to it ("manifest blob
    unknown" on the next manifest PUT; seen here). The second uploader waits, then finds
    the blob present and skips it."""
    with _LOCKS_GUARD:
        return _BLOB_LOCKS.setdefault((host, repo, digest), threading.Lock())


def _blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hexpart = digest.partition(":")
    return layout / "blobs" / algorithm / hexpart


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _next_link(response: httpx.Response) -> str | None:
    """The next page from an RFC 5988 ``Link: </v2/...>; rel="next"`` header."""
    link = response.headers.get("link", "")
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
    return match.group(1) if match else None


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


def _path_of(url: str) -> str:
    return httpx.URL(url).path if url.startswith("http") else url.split("?", 1)[0]


def _scope(repo: str, actions: str) -> str:
    return f"repository:{repo}:{actions}"


def _says_expired(response: httpx.Response) -> bool:
    """True when a 401 says the token (or the password, for cloud tokens) has expired."""
    challenge = response.headers.get("www-authenticate", "").lower()
    if "expired" in challenge:
        return True
    try:
        return "expired" in response.text.lower()
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return False


def _expired(host: str) -> RegistryError:
    return RegistryError(
        f"registry {host}: the login token has expired",
        hint=f"log in again: mab login {host} (for a cloud registry, its login.command "
        "gets a fresh token)",
    )


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _error_code(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return ""
    return str(errors[0].get("code", "")) if errors and isinstance(errors[0], dict) else ""


def _error_detail(response: httpx.Response) -> str:
    """``: CODE message (detail)`` from a registry's error body; else its first line of
    text (a proxy's, or a storage driver's), shortened."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = None
    if errors and isinstance(errors[0], dict):
        first = errors[0]
        text = f": {first.get('code', '')} {first.get('message', '')}".rstrip()
        detail = first.get("detail")
        if detail:
            text += f" ({str(detail)[:200]})"
        return text
    try:
        body = response.text.strip().splitlines()
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    return f": {body[0][:200]}" if body else ""
