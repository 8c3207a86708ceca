"""The registry client's protocol logic against an in-process fake registry
(httpx.MockTransport). The integration tests push through it to a real registry."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import httpx
import pytest

from mab import oci
from mab.errors import RegistryError
from mab.registry.client import RegistryClient, RetryPolicy, is_plain_http, split_repository

IMAGE = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_layout(root: Path) -> tuple[Path, str]:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    config, layer = b'{"architecture":"arm64","os":"linux"}', b"layer-bytes" * 1000
    for data in (config, layer):
        (blobs / sha(data).split(":")[1]).write_bytes(data)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": IMAGE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    (blobs / sha(manifest).split(":")[1]).write_bytes(manifest)
    (root / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [{"mediaType": IMAGE, "digest": sha(manifest), "size": len(manifest)}],
            }
        )
    )
    return root, sha(manifest)


class FakeRegistry:
    """Just enough of the distribution API, with optional Bearer token auth."""

    def __init__(self, token_auth: bool = False, password: str = "s3cret") -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.token_auth = token_auth
        self.password = password
        self.token_requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/token":
            self.token_requests.append(request)
            expected = "Basic " + base64.b64encode(f"me:{self.password}".encode()).decode()
            if request.headers.get("authorization") != expected:
                return httpx.Response(401)
            return httpx.Response(200, json={"token": "T0KEN"})
        if self.token_auth and request.headers.get("authorization") != "Bearer T0KEN":
            return httpx.Response(
                401,
                headers={
                    "www-authenticate": 'Bearer realm="https://auth.test/token",service="reg.test"'
                },
            )
        if request.method == "HEAD" and "/blobs/" in path:
            return httpx.Response(200 if path.rsplit("/", 1)[1] in self.blobs else 404)
        if request.method == "POST" and path.endswith("/blobs/uploads/"):
            return httpx.Response(202, headers={"location": "/v2/upload/123?state=x"})
        if request.method == "PUT" and path.startswith("/v2/upload/"):
            digest = request.url.params["digest"]
            body = request.read()
            if sha(body) != digest:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
            self.blobs[digest] = body
            return httpx.Response(201)
        if request.method == "PUT" and "/manifests/" in path:
            self.manifests[path.rsplit("/", 1)[1]] = request.read()
            return httpx.Response(201)
        return httpx.Response(404)


def client_for(fake: FakeRegistry, host: str = "reg.test") -> RegistryClient:
    client = RegistryClient(host)
    client._http = httpx.Client(transport=httpx.MockTransport(fake.handler))
    return client


def test_push_layout_uploads_blobs_then_manifest_by_digest(tmp_path: Path) -> None:
    layout, digest = make_layout(tmp_path)
    fake = FakeRegistry()
    with client_for(fake) as client:
        pushed = client.push_layout(layout, "team/app")
    assert pushed.digest == digest
    assert (pushed.blobs_sent, pushed.blobs_skipped) == (2, 0)
    assert set(fake.manifests) == {digest}  # by digest: no tag was written
    with client_for(fake) as client:
        again = client.push_layout(layout, "team/app")
    assert (again.blobs_sent, again.blobs_skipped) == (0, 2)


def test_bearer_token_flow_uses_docker_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(b"me:s3cret").decode()
    (config / "config.json").write_text(json.dumps({"auths": {"reg.test": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    layout, digest = make_layout(tmp_path / "layout")
    fake = FakeRegistry(token_auth=True)
    with client_for(fake) as client:
        client.push_layout(layout, "team/app")
    assert digest in fake.manifests
    scopes = {r.url.params["scope"] for r in fake.token_requests}
    assert "repository:team/app:pull,push" in scopes


def test_wrong_password_is_one_line_with_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(b"me:wrong").decode()
    (config / "config.json").write_text(json.dumps({"auths": {"reg.test": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    layout, _ = make_layout(tmp_path / "layout")
    with client_for(FakeRegistry(token_auth=True)) as client, pytest.raises(RegistryError) as info:
        client.push_layout(layout, "team/app")
    assert "refused a token" in info.value.message
    assert "wrong" not in info.value.message and "s3cret" not in info.value.message
    assert info.value.hint == "log in first: docker login reg.test"


def test_unreachable_registry() -> None:
    client = RegistryClient("127.0.0.1:1", retry=RetryPolicy(attempts=2), sleep=lambda s: None)
    with pytest.raises(RegistryError, match=r"cannot reach registry 127\.0\.0\.1:1"):
        client.blob_exists("x", "sha256:00")


def test_plain_http_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_plain_http("localhost:5000")
    assert is_plain_http("127.0.0.1:5000")
    assert not is_plain_http("ghcr.io")
    monkeypatch.setenv("MAB_INSECURE_REGISTRIES", "reg.lan:5000, other")
    assert is_plain_http("reg.lan:5000")
    assert split_repository("localhost:5000/a/b") == ("localhost:5000", "a/b")
    with pytest.raises(RegistryError):
        split_repository("localhost:5000")
    assert oci.INDEX_TYPES[0].endswith("index.v1+json")


def scripted(responses: list[httpx.Response | Exception]) -> tuple[RegistryClient, list[float]]:
    """A client whose transport answers from *responses* in order; sleeps are recorded."""
    slept: list[float] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    client = RegistryClient(
        "reg.test", retry=RetryPolicy(attempts=4, max_seconds=30), sleep=slept.append
    )
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    return client, slept


def test_retries_5xx_and_dropped_connections_then_succeeds() -> None:
    client, slept = scripted(
        [
            httpx.Response(503),
            httpx.RemoteProtocolError("peer closed connection"),
            httpx.Response(200, headers={"docker-content-digest": "sha256:ab"}),
        ]
    )
    assert client.head_manifest("a", "latest") == "sha256:ab"
    assert len(slept) == 2
    assert all(0 <= s <= 8 for s in slept)


def test_429_honours_retry_after() -> None:
    client, slept = scripted(
        [httpx.Response(429, headers={"retry-after": "3"}), httpx.Response(200, json={"tags": []})]
    )
    assert client.list_tags("a") == []
    assert slept == [3.0]


def test_gives_up_after_bounded_attempts() -> None:
    client, slept = scripted([httpx.Response(502)] * 4)
    with pytest.raises(RegistryError, match="failed after 4 attempts: 502"):
        client.list_tags("a")
    assert len(slept) == 3


def test_401_403_404_are_final() -> None:
    client, slept = scripted([httpx.Response(403)])
    with pytest.raises(RegistryError, match=r"denied listing tags \(403"):
        client.list_tags("a")
    client, slept = scripted([httpx.Response(404)])
    with pytest.raises(RegistryError, match="manifest unknown"):
        client.get_manifest("a", "nope")
    assert slept == []


def test_tag_list_follows_pagination() -> None:
    client, _ = scripted(
        [
            httpx.Response(
                200,
                json={"tags": ["a", "b"]},
                headers={"link": '</v2/x/tags/list?n=2&last=b>; rel="next"'},
            ),
            httpx.Response(200, json={"tags": ["c"]}),
        ]
    )
    assert client.list_tags("x") == ["a", "b", "c"]


def test_parallel_pushes_of_shared_layers_upload_each_blob_once(tmp_path: Path) -> None:
    """Two platform images sharing a layer, pushed at once (as mab's jobs do): the shared
    blob is uploaded by one of them; the other waits and finds it present."""
    import threading
    import time

    layout, _ = make_layout(tmp_path / "one")
    second, _ = make_layout(tmp_path / "two")  # same blobs: a shared base
    fake = FakeRegistry()
    uploads: list[str] = []
    original = fake.handler

    def counting(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and request.url.path.startswith("/v2/upload/"):
            uploads.append(request.url.params["digest"])
        answer = original(request)
        if request.method == "HEAD" and "/blobs/" in request.url.path:
            time.sleep(0.1)  # room for the other push to ask too (it must wait instead)
        return answer

    fake.handler = counting  # type: ignore[method-assign]
    results: list[object] = []

    def push(path: Path) -> None:
        with client_for(fake) as client:
            results.append(client.push_layout(path, "team/app"))

    threads = [threading.Thread(target=push, args=(p,)) for p in (layout, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    assert sorted(uploads) == sorted(set(uploads)) and len(uploads) == 2  # config + layer, once


def test_manifest_blob_unknown_reuploads_every_blob_and_retries_once(tmp_path: Path) -> None:
    """The registry says it has the blobs (HEAD 200) but refuses the manifest with
    MANIFEST_BLOB_UNKNOWN: the repository lost its links, as concurrent uploads from
    another machine can cause. The client uploads every blob again and writes the
    manifest once more."""
    layout, digest = make_layout(tmp_path)
    fake = FakeRegistry()
    original = fake.handler
    refused: list[str] = []
    uploads: list[str] = []

    def lying(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "HEAD" and "/blobs/" in path:
            return httpx.Response(200)  # "present", though never uploaded
        if request.method == "PUT" and path.startswith("/v2/upload/"):
            uploads.append(request.url.params["digest"])
        if request.method == "PUT" and "/manifests/" in path and not refused:
            refused.append(path)
            return httpx.Response(
                400, json={"errors": [{"code": "MANIFEST_BLOB_UNKNOWN", "message": "x"}]}
            )
        return original(request)

    fake.handler = lying  # type: ignore[method-assign]
    with client_for(fake) as client:
        pushed = client.push_layout(layout, "team/app")
    assert pushed.digest == digest
    assert len(refused) == 1 and len(uploads) == 2  # config + layer, sent after the refusal
    assert set(uploads) <= set(fake.blobs) and digest in fake.manifests


def test_manifest_blob_unknown_twice_is_an_error_naming_it(tmp_path: Path) -> None:
    layout, _ = make_layout(tmp_path)
    fake = FakeRegistry()
    original = fake.handler

    def refusing(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and "/manifests/" in request.url.path:
            return httpx.Response(400, json={"errors": [{"code": "MANIFEST_BLOB_UNKNOWN"}]})
        return original(request)

    fake.handler = refusing  # type: ignore[method-assign]
    with client_for(fake) as client, pytest.raises(RegistryError, match="not know a blob"):
        client.push_layout(layout, "team/app")


def test_an_index_is_pushed_concurrently_and_each_manifest_after_what_it_names(
    tmp_path: Path,
) -> None:
    """An index of three images: their blobs are asked for and sent several at a time (at
    most PUSH_CONCURRENCY), and the registry still gets every manifest after the blobs it
    names, and the index after its manifests."""
    import threading
    import time

    from mab.registry.client import PUSH_CONCURRENCY

    blobs = tmp_path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        (blobs / sha(data).split(":")[1]).write_bytes(data)
        return sha(data)

    children, named = [], {}
    for arch in ("amd64", "arm64", "arm"):
        config, layer = f'{{"architecture":"{arch}"}}'.encode(), arch.encode() * 500
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": IMAGE,
                "config": {"mediaType": "c", "digest": put(config), "size": len(config)},
                "layers": [{"mediaType": "l", "digest": put(layer), "size": len(layer)}],
            }
        ).encode()
        named[put(manifest)] = {sha(config), sha(layer)}
        children.append({"mediaType": IMAGE, "digest": sha(manifest), "size": len(manifest)})
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": children}
    ).encode()
    (tmp_path / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {"mediaType": oci.OCI_INDEX, "digest": put(index), "size": len(index)}
                ],
            }
        )
    )
    fake = FakeRegistry()
    original = fake.handler
    lock, in_flight, most = threading.Lock(), [0], [0]
    order: list[str] = []

    def slow(request: httpx.Request) -> httpx.Response:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.02)  # a round trip: room for the others to overlap
        answer = original(request)
        with lock:
            in_flight[0] -= 1
            if request.method == "PUT":
                order.append(request.url.params.get("digest") or request.url.path.rsplit("/")[-1])
        return answer

    fake.handler = slow  # type: ignore[method-assign]
    with client_for(fake) as client:
        pushed = client.push_layout(tmp_path, "team/app")
    assert pushed.digest == sha(index) and (pushed.blobs_sent, pushed.blobs_skipped) == (6, 0)
    assert 2 <= most[0] <= PUSH_CONCURRENCY
    assert order[-1] == sha(index)  # the index last
    for image, parts in named.items():
        assert all(order.index(p) < order.index(image) for p in parts)
