"""Registry queries and deletes, and the registry client's auth, TLS and error messages,
against an in-process fake of the distribution API (httpx.MockTransport). The
integration tests run the same code against a real registry and compare with crane."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mab.errors import RegistryError
from mab.registry import query as registryquery
from mab.registry.client import RegistryClient, RetryPolicy
from mab.registry.credentials import Credential
from mab.registry.query import parse_ref

INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """Manifests, blobs and tags of one repository, with optional delete refusal."""

    def __init__(self, delete_enabled: bool = True) -> None:
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.tags: dict[str, str] = {}
        self.blobs: dict[str, bytes] = {}
        self.deleted: list[str] = []
        self.delete_enabled = delete_enabled

    def image(self, arch: str, created: str, layer_sizes: list[int]) -> str:
        config = json.dumps({"architecture": arch, "os": "linux", "created": created}).encode()
        self.blobs[sha(config)] = config
        doc = {
            "schemaVersion": 2,
            "mediaType": IMAGE,
            "config": {"digest": sha(config), "size": len(config)},
            "layers": [
                {"digest": f"sha256:{arch}{i}", "size": s} for i, s in enumerate(layer_sizes)
            ],
            "annotations": {"org.opencontainers.image.description": f"{arch} image"},
        }
        return self.put(IMAGE, doc)

    def put(self, media_type: str, doc: dict[str, Any]) -> str:
        data = json.dumps(doc).encode()
        self.manifests[sha(data)] = (media_type, data)
        return sha(data)

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v2/_catalog":
            last = request.url.params.get("last")
            if last is None:
                return httpx.Response(
                    200,
                    json={"repositories": ["a/one", "a/two"]},
                    headers={"link": '</v2/_catalog?last=a%2Ftwo&n=2>; rel="next"'},
                )
            return httpx.Response(200, json={"repositories": ["b/three"]})
        if path.endswith("/tags/list"):
            return httpx.Response(200, json={"name": "team/app", "tags": sorted(self.tags)})
        if "/blobs/" in path:
            digest = path.rsplit("/", 1)[1]
            return (
                httpx.Response(200, content=self.blobs[digest])
                if digest in self.blobs
                else (httpx.Response(404))
            )
        if "/manifests/" in path:
            ref = path.rsplit("/", 1)[1]
            digest = self.tags.get(ref, ref)
            if request.method == "DELETE":
                if not self.delete_enabled:
                    return httpx.Response(
                        405, json={"errors": [{"code": "UNSUPPORTED", "message": "unsupported"}]}
                    )
                self.deleted.append(digest)
                self.manifests.pop(digest, None)
                self.tags = {t: d for t, d in self.tags.items() if d != digest}
                return httpx.Response(202)
            if digest not in self.manifests:
                return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
            media_type, data = self.manifests[digest]
            return httpx.Response(
                200,
                content=data,
                headers={"content-type": media_type, "docker-content-digest": digest},
            )
        return httpx.Response(404)


def client_for(handler: Any, host: str = "reg.test", **kw: Any) -> RegistryClient:
    client = RegistryClient(host, retry=RetryPolicy(attempts=3), sleep=lambda s: None, **kw)
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    return client


@pytest.fixture
def reg() -> Registry:
    r = Registry()
    amd = r.image("amd64", "2026-05-01T10:00:00.5Z", [100, 23])
    arm = r.image("arm64", "2026-05-01T10:00:01Z", [90])
    attestation = r.put(
        IMAGE,
        {"schemaVersion": 2, "mediaType": IMAGE, "config": {"digest": "sha256:none"}, "layers": []},
    )
    top = r.put(
        INDEX,
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": IMAGE,
                    "digest": amd,
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
                {
                    "mediaType": IMAGE,
                    "digest": arm,
                    "platform": {"os": "linux", "architecture": "arm64"},
                },
                {
                    "mediaType": IMAGE,
                    "digest": attestation,
                    "platform": {"os": "unknown", "architecture": "unknown"},
                    "annotations": {
                        "vnd.docker.reference.type": "attestation-manifest",
                        "vnd.docker.reference.digest": amd,
                    },
                },
            ],
            "annotations": {"org.opencontainers.image.created": "2026-05-01T09:59:00Z"},
        },
    )
    r.tags = {"1.0.0": top, "latest": top, "amd-only": amd}
    return r


def test_catalog_follows_pagination() -> None:
    with client_for(Registry().handler) as client:
        assert client.catalog(page_size=2) == ["a/one", "a/two", "b/three"]


def test_tags_show_what_each_points_at(reg: Registry) -> None:
    with client_for(reg.handler) as client:
        tags = {t.tag: t for t in registryquery.list_tags(client, "team/app")}
    assert tags["1.0.0"].kind == "index" and tags["1.0.0"].digest == tags["latest"].digest
    assert tags["1.0.0"].platforms == ("linux/amd64", "linux/arm64")
    assert len(tags["1.0.0"].children) == 3  # the attestation manifest is a child too
    assert tags["amd-only"].kind == "manifest" and tags["amd-only"].platforms == ("linux/amd64",)


def test_inspect_gives_platforms_sizes_created_and_annotations(reg: Registry) -> None:
    with client_for(reg.handler) as client:
        details = registryquery.inspect(client, parse_ref("reg.test/team/app:1.0.0"))
    assert details.kind == "index" and details.digest == reg.tags["1.0.0"]
    assert details.annotations == {"org.opencontainers.image.created": "2026-05-01T09:59:00Z"}
    images = {i.platform: i for i in details.images}
    assert images["linux/amd64"].size == 123 and images["linux/amd64"].layers == 2
    assert images["linux/arm64"].created == "2026-05-01T10:00:01Z"
    assert images["linux/amd64"].annotations == {
        "org.opencontainers.image.description": "amd64 image"
    }
    assert details.size == 213
    assert [a.attestation_for for a in details.attestations] == [images["linux/amd64"].digest]
    with client_for(reg.handler) as client:
        created = registryquery.created_of(
            client, "team/app", registryquery.list_tags(client, "team/app")[0]
        )
    assert created == "2026-05-01T09:59:00Z"


def test_delete_by_digest_and_deletion_disabled(reg: Registry) -> None:
    digest = reg.tags["amd-only"]
    with client_for(reg.handler) as client:
        client.delete_manifest("team/app", digest)
        with pytest.raises(RegistryError, match="delete needs a digest"):
            client.delete_manifest("team/app", "latest")
    assert reg.deleted == [digest] and "amd-only" not in reg.tags
    disabled = Registry(delete_enabled=False)
    with client_for(disabled.handler) as client, pytest.raises(RegistryError) as info:
        client.delete_manifest("team/app", "sha256:" + "0" * 64)
    assert info.value.message.startswith("registry reg.test has deletion disabled")
    assert info.value.hint is not None and "REGISTRY_STORAGE_DELETE_ENABLED=true" in info.value.hint


def basic_registry(password: str, expired: bool = False, user: str = "me") -> Any:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != expected:
            return httpx.Response(401, headers={"www-authenticate": 'Basic realm="r"'})
        if expired:
            return httpx.Response(
                401,
                json={
                    "errors": [
                        {"code": "DENIED", "message": "Your authorization token has expired."}
                    ]
                },
            )
        return httpx.Response(200, json={"tags": ["a"]})

    return handler


def test_wrong_stored_password_says_so_and_how_to_fix() -> None:
    wrong = Credential("me", "not-it")
    with client_for(basic_registry("right"), credential=wrong) as client:
        assert client.ping() == 401
        with pytest.raises(RegistryError) as info:
            client.list_tags("team/app")
    assert "rejected the stored credentials for me" in info.value.message
    assert (
        "wrong user name or password" in info.value.message and "not-it" not in info.value.message
    )
    assert info.value.hint == "log in again: mab login reg.test -u me --password-stdin"
    with client_for(basic_registry("right"), credential=Credential("me", "right")) as client:
        assert client.ping() == 200


def test_expired_token_says_so() -> None:
    with (
        client_for(basic_registry("tok", True, "AWS"), credential=Credential("AWS", "tok")) as c,
        pytest.raises(RegistryError) as info,
    ):
        c.list_tags("team/app")
    assert info.value.message == "registry reg.test: the login token has expired"
    assert info.value.hint is not None and "login.command" in info.value.hint


def test_identity_token_is_exchanged_with_oauth2_refresh() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            form = dict(httpx.QueryParams(request.content.decode()))
            seen.append(form)
            return httpx.Response(200, json={"access_token": "ACCESS"})
        if request.headers.get("authorization") != "Bearer ACCESS":
            return httpx.Response(
                401,
                headers={
                    "www-authenticate": 'Bearer realm="https://reg.test/oauth2/token",'
                    'service="reg.test",scope="repository:team/app:pull"'
                },
            )
        return httpx.Response(200, json={"tags": ["x"]})

    credential = Credential("<token>", "REFRESH")
    with client_for(handler, credential=credential) as client:
        assert client.list_tags("team/app") == ["x"]
    assert seen[0]["grant_type"] == "refresh_token" and seen[0]["refresh_token"] == "REFRESH"
    assert seen[0]["scope"] == "repository:team/app:pull"


def test_unknown_tls_authority_is_final_and_explains_the_fix() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
            "in certificate chain (_ssl.c:1006)"
        )

    with client_for(handler, host="reg.test:5443") as client, pytest.raises(RegistryError) as info:
        client.list_tags("team/app")
    assert info.value.message == (
        "registry reg.test:5443: TLS certificate signed by an unknown authority"
    )
    assert (
        info.value.hint is not None
        and "/etc/docker/certs.d/reg.test:5443/ca.crt" in info.value.hint
    )
    assert calls == [1]  # not retried: waiting cannot fix it


def test_tls_registry_on_localhost_is_spoken_to_over_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mab.registry import tls as registrytls

    monkeypatch.setenv("MAB_DOCKER_CERTS_DIR", str(tmp_path))
    with RegistryClient("localhost:5443") as plain:
        assert plain._base == "http://localhost:5443"
    files = registrytls.write_tls_files(tmp_path / "tls", "t", ("localhost",))
    (tmp_path / "localhost:5443").mkdir()
    (tmp_path / "localhost:5443" / "ca.crt").write_bytes(files.ca_cert.read_bytes())
    with RegistryClient("localhost:5443") as tls:
        assert tls._base == "https://localhost:5443"


def test_plain_http_to_a_tls_registry_is_explained() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text="Client sent an HTTP request to an HTTPS server.\n")

    with client_for(handler, host="localhost:5443") as client, pytest.raises(RegistryError) as info:
        client.list_tags("team/app")
    assert info.value.message == "registry localhost:5443 speaks HTTPS but mab used plain HTTP"


@pytest.mark.parametrize(
    ("text", "host", "repo", "tag", "digest"),
    [
        ("localhost:5000/demo/app:1.0", "localhost:5000", "demo/app", "1.0", None),
        ("ghcr.io/acme/app", "ghcr.io", "acme/app", None, None),
        ("reg.test:5443/a@sha256:" + "a" * 64, "reg.test:5443", "a", None, "sha256:" + "a" * 64),
        ("app:2", "localhost:5000", "app", "2", None),
    ],
)
def test_parse_ref(text: str, host: str, repo: str, tag: str | None, digest: str | None) -> None:
    ref = parse_ref(text)
    assert (ref.host, ref.repo, ref.tag, ref.digest) == (host, repo, tag, digest)


def test_a_plain_http_registry_verifies_tls_where_it_redirects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain-HTTP registry's client makes its https transport (and loads the CA bundle,
    30-40 ms) only when a redirect leads there, e.g. blob storage; it verifies it then."""
    import http.server
    import ssl
    import threading

    from mab.registry import tls as registrytls

    files = registrytls.write_tls_files(tmp_path / "tls", "t", ("localhost",))

    class Storage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"name": "team/app", "tags": ["stored"]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    storage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    storage.socket = context.wrap_socket(storage.socket, server_side=True)
    tls_port = storage.server_address[1]

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"https://localhost:{tls_port}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    registry = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    for server in (storage, registry):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"localhost:{registry.server_address[1]}"
    monkeypatch.setenv("MAB_DOCKER_CERTS_DIR", str(tmp_path / "certs.d"))
    monkeypatch.delenv("MAB_CA_BUNDLE", raising=False)
    try:
        quick = RetryPolicy(attempts=1, max_seconds=1.0)
        with RegistryClient(host, retry=quick) as client:
            assert client._base.startswith("http://")
            lazy = client._http._transport_for_url(httpx.URL(f"https://localhost:{tls_port}/"))
            assert getattr(lazy, "_real", "?") is None  # no TLS set up yet
            with pytest.raises(RegistryError, match="unknown authority"):
                client.list_tags("team/app")
        monkeypatch.setenv("MAB_CA_BUNDLE", str(files.ca_cert))
        with RegistryClient(host, retry=quick) as client:
            assert client.list_tags("team/app") == ["stored"]
    finally:
        for server in (storage, registry):
            server.shutdown()
            server.server_close()
