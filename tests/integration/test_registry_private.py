"""A private registry with auth and TLS on (``mab registry up --auth --tls``), on the real
engine: login, build, queries checked against crane and skopeo, cleanup with garbage
collection, the error messages, and the password absent from everything mab printed or
wrote and from every process argument list seen during the run.

One registry for the module (a free port, a temporary state folder and DOCKER_CONFIG);
the tests build on each other in file order: v1 is built after login, cleanup adds
three more versions.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import pytest

from .conftest import MabRun, platforms_of

pytestmark = pytest.mark.engine

USER = "tester"
PASSWORD = "pw-" + secrets.token_urlsafe(18)
RUNS: list[MabRun] = []  # every mab run of this module, for the secret check
PLATFORMS = ["linux/amd64", "linux/arm64"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ArgvWatch:
    """Samples every process's argument list while the module runs (a password in argv
    would be readable by any user through ps)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.hits: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.samples += 1
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    argv = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if self.secret in argv:
                    self.hits.append(argv.replace(b"\0", b" ").decode(errors="replace")[:80])

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Private:
    host: str
    port: int
    root: Path
    env: dict[str, str]
    project: Path
    watch: ArgvWatch
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def authfile(self) -> str:
        return self.env["DOCKER_CONFIG"] + "/config.json"

    @property
    def repo(self) -> str:
        return f"{self.host}/team/app"


def mab(p: Private | None, *args: str, stdin: str | None = None, **env: str) -> MabRun:
    full_env = {**os.environ, **(p.env if p else {}), **env}
    proc = subprocess.run(
        [sys.executable, "-m", "mab", *args],
        cwd=p.project if p else None,
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )
    run = MabRun(proc.returncode, proc.stdout, proc.stderr, None)
    RUNS.append(run)
    return run


def tool(p: Private, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """crane or skopeo, with the module's DOCKER_CONFIG (and so its stored login)."""
    return subprocess.run(
        list(args), capture_output=True, text=True, check=check, env={**os.environ, **p.env}
    )


def crane_out(p: Private, *args: str) -> str:
    return tool(p, "crane", *args).stdout.strip()


def crane_doc(p: Private, *args: str) -> Any:
    return json.loads(crane_out(p, *args))


def write_project(root: Path, host: str, n: int, tags: list[str], keep_last: int = 1) -> None:
    (root / "app").mkdir(exist_ok=True)
    (root / "app" / "Dockerfile").write_text(
        "FROM busybox:1.35\nARG N=1\nRUN echo version $N > /version\n"
    )
    (root / "builds.yaml").write_text(
        f"registry: {host}/team\n"
        f"platforms: [{', '.join(PLATFORMS)}]\n"
        "base_images:\n"
        "  busybox:1.35: localhost:5000/mirror/busybox:1.35\n"
        "targets:\n"
        "  app:\n"
        "    context: app\n"
        f"    args: {{N: {n}}}\n"
        f"    tags: {json.dumps(tags)}\n"
        f"    retention: {{keep_last: {keep_last}}}\n"
    )


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    root = tmp_path_factory.mktemp("private-registry")
    (root / "docker").mkdir()
    (root / "project").mkdir()
    port = _free_port()
    env = {
        "MAB_REGISTRIES_DIR": str(root / "registries"),
        "DOCKER_CONFIG": str(root / "docker"),
        "MAB_RETRY_ATTEMPTS": "2",
    }
    with ArgvWatch(PASSWORD) as watch:
        p = Private("", port, root, env, root / "project", watch)
        up = mab(
            p,
            *("registry", "up", "--port", str(port), "--auth", USER, "--tls", "--password-stdin"),
            stdin=PASSWORD + "\n",
        )
        assert up.code == 0, up.output
        try:
            status = json.loads(mab(p, "registry", "status", "--json").stdout)
            p.host = status[0]["host"]
            assert status[0]["running"] and status[0]["tls"] and status[0]["auth_user"] == USER
            assert p.host != f"localhost:{port}", "TLS registries are named by the host name"
            write_project(p.project, p.host, 1, ["1.0.0", "build-1"])
            yield p
        finally:
            down = mab(p, "registry", "down", "--port", str(port), "--purge")
            assert down.code == 0, down.output
    assert not (root / "registries" / str(port)).exists()


@pytest.fixture(scope="module")
def logged_in(private: Private) -> tuple[MabRun, MabRun]:
    p = private
    wrong = mab(p, "login", p.host, "-u", USER, "--password-stdin", stdin="not-the-password\n")
    right = mab(p, "login", p.host, "-u", USER, "--password-stdin", stdin=PASSWORD + "\n")
    return wrong, right


@pytest.fixture(scope="module")
def v1(private: Private, logged_in: tuple[MabRun, MabRun]) -> MabRun:
    return mab(private, "build")


def test_registry_up_serves_tls_and_requires_auth(private: Private) -> None:
    # crane trusts the CA through the system store mab installed it in; no login yet
    # in this DOCKER_CONFIG, so the registry refuses
    anonymous = tool(private, "crane", "catalog", private.host, check=False)
    assert anonymous.returncode != 0
    assert "UNAUTHORIZED" in anonymous.stderr or "401" in anonymous.stderr
    assert "x509" not in anonymous.stderr
    # dockerd and skopeo read the CA from certs.d
    for host in (private.host, f"localhost:{private.port}", f"127.0.0.1:{private.port}"):
        assert Path(f"/etc/docker/certs.d/{host}/ca.crt").is_file()


def test_login_then_build_pushes_and_a_wrong_password_fails_clearly(
    private: Private, logged_in: tuple[MabRun, MabRun], v1: MabRun
) -> None:
    wrong, right = logged_in
    assert wrong.code == 1
    lines = [line for line in wrong.stderr.splitlines() if line.strip()]
    assert lines[0] == (
        f"error: cannot log in to {private.host} as {USER}: wrong user name or password "
        "(password from stdin)"
    )
    assert lines[1].startswith("check the password and log in again: mab login")
    assert len(lines) == 2 and "Traceback" not in wrong.output
    assert right.code == 0, right.output
    assert f"logged in to {private.host} as {USER}" in right.stderr
    stored = json.loads(Path(private.authfile).read_text())["auths"][private.host]["auth"]
    assert base64.b64decode(stored).decode() == f"{USER}:{PASSWORD}"  # where docker keeps it

    assert v1.code == 0, v1.output
    ref = f"{private.repo}:1.0.0"
    assert platforms_of(crane_doc(private, "manifest", ref)) == PLATFORMS
    assert crane_out(private, "digest", ref) == crane_out(
        private, "digest", f"{private.repo}:build-1"
    )


def test_ls_tags_and_inspect_agree_with_crane_and_skopeo(private: Private, v1: MabRun) -> None:
    p = private
    listed = json.loads(mab(p, "registry", "ls", p.host, "--json").stdout)
    assert listed["repositories"] == crane_out(p, "catalog", p.host).splitlines()
    assert "team/app" in listed["repositories"]

    tags = json.loads(mab(p, "registry", "tags", p.repo, "--json").stdout)["tags"]
    assert sorted(t["tag"] for t in tags) == sorted(crane_out(p, "ls", p.repo).splitlines())
    skopeo_tags = json.loads(
        tool(p, "skopeo", "list-tags", "--authfile", p.authfile, f"docker://{p.repo}").stdout
    )["Tags"]
    assert sorted(t["tag"] for t in tags) == sorted(skopeo_tags)
    for t in tags:
        ref = f"{p.repo}:{t['tag']}"
        assert t["digest"] == crane_out(p, "digest", ref)
        assert t["kind"] == "index"
        assert sorted(t["platforms"]) == platforms_of(crane_doc(p, "manifest", ref))

    details = json.loads(mab(p, "registry", "inspect", f"{p.repo}:1.0.0", "--json").stdout)
    raw = tool(
        p, "skopeo", "inspect", "--raw", "--authfile", p.authfile, f"docker://{p.repo}:1.0.0"
    )
    assert details["digest"] == "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest()
    index = crane_doc(p, "manifest", f"{p.repo}:1.0.0")
    assert details["annotations"] == index.get("annotations", {})
    by_platform = {
        "/".join(x for x in (m["platform"]["os"], m["platform"]["architecture"]) if x): m
        for m in index["manifests"]
        if m["platform"]["os"] != "unknown"
    }
    assert sorted(i["platform"] for i in details["images"]) == sorted(by_platform)
    for image in details["images"]:
        entry = by_platform[image["platform"]]
        child = f"{p.repo}@{entry['digest']}"
        assert image["digest"] == entry["digest"]
        layers = crane_doc(p, "manifest", child)["layers"]
        assert image["size"] == sum(layer["size"] for layer in layers) > 0
        assert image["layers"] == len(layers)
        assert image["created"] == crane_doc(p, "config", child)["created"]
    assert details["size"] == sum(i["size"] for i in details["images"])


def _storage(p: Private) -> Path:
    return p.root / "registries" / str(p.port) / "data" / "docker" / "registry" / "v2"


def _index_of(p: Private, tag: str, children: list[str], created: datetime.datetime) -> str:
    """Another index over existing platform manifests, with its own created time (so one
    can be 30 days old without waiting 30 days): buildx imagetools create."""
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    tool(
        p,
        *("docker", "buildx", "imagetools", "create", "-t", f"{p.repo}:{tag}"),
        *("--annotation", f"index:org.opencontainers.image.created={stamp}"),
        *(f"{p.repo}@{c}" for c in children),
    )
    return crane_out(p, "digest", f"{p.repo}:{tag}")


def test_cleanup_keeps_every_kept_multiarch_tag_pullable(private: Private, v1: MabRun) -> None:
    """v1 (1.0.0, build-1) and v2 (build-2, feature-x) are built; v3 (build-3, 30 days
    old) is a new index over v1's platform manifests, v4 (build-4, latest; the newest) one
    over v2's; old-arm tags v1's arm64 manifest. keep_last 1: build-2, feature-x and
    build-3 go, but only as indexes: every platform manifest is still used by a kept
    index (v1 through 1.0.0, v2's through latest)."""
    p = private
    assert v1.code == 0, v1.output
    write_project(p.project, p.host, 2, ["build-2", "feature-x"], keep_last=1)
    built = mab(p, "build")
    assert built.code == 0, built.output
    children = {
        tag: [m["digest"] for m in crane_doc(p, "manifest", f"{p.repo}:{tag}")["manifests"]]
        for tag in ("1.0.0", "build-2")
    }
    now = datetime.datetime.now(datetime.UTC)
    v3 = _index_of(p, "build-3", children["1.0.0"], now - datetime.timedelta(days=30))
    v4 = _index_of(p, "build-4", children["build-2"], now)
    tool(p, "crane", "tag", f"{p.repo}:build-4", "latest")
    release = crane_doc(p, "manifest", f"{p.repo}:1.0.0")
    arm = next(m for m in release["manifests"] if m["platform"]["architecture"] == "arm64")
    tool(p, "crane", "copy", f"{p.repo}@{arm['digest']}", f"{p.repo}:old-arm")
    before = sorted(crane_out(p, "ls", p.repo).splitlines())
    v2 = crane_out(p, "digest", f"{p.repo}:build-2")

    dry = mab(p, "clean")
    assert dry.code == 0, dry.output
    # the plan's table is a result, on stdout (issue 14); its summary line on stderr
    deleting = sorted(re.findall(r"^\s*delete\s+\S+\s+(\S+)", dry.stdout, re.MULTILINE))
    assert deleting == ["build-2", "build-3", "feature-x"], dry.output
    assert "dry run: would delete 3 tags" in dry.stderr
    plan = json.loads(mab(p, "clean", "--json").stdout)["repositories"][0]
    tags = {t["tag"]: t for t in plan["tags"]}
    assert sorted(t for t, d in tags.items() if d["action"] == "delete") == deleting
    assert tags["old-arm"]["reason"] == "a platform image of kept index '1.0.0'"
    assert tags["build-1"]["reason"].startswith("same image as kept tag '1.0.0'")
    assert tags["build-4"]["reason"] == "one of the newest 1 versions"
    assert 29.9 < tags["build-3"]["age_days"] < 30.1
    assert sorted(plan["delete_manifests"]) == sorted([v2, v3])  # indexes only
    assert sorted(crane_out(p, "ls", p.repo).splitlines()) == before  # nothing deleted yet

    done = mab(p, "clean", "--yes")
    assert done.code == 0, done.output
    assert "deleted 3 tags (2 manifests)" in done.stderr
    assert f"garbage collection on {p.host}:" in done.stderr
    assert re.search(r"\d+ blobs marked, \d+ blobs and \d+ manifests eligible", done.stderr)

    after = sorted(crane_out(p, "ls", p.repo).splitlines())
    assert after == sorted(set(before) - set(deleting))
    assert crane_out(p, "digest", f"{p.repo}:latest") == v4
    for digest in (v2, v3):  # deleted, and garbage collection removed their blobs
        assert tool(p, "crane", "manifest", f"{p.repo}@{digest}", check=False).returncode != 0
        assert not (_storage(p) / "blobs" / "sha256" / digest[7:9] / digest[7:]).exists()
    for tag in after:  # every kept tag still pulls: every platform, every blob
        out = p.root / f"pull-{tag}"
        tool(p, "crane", "pull", "--format", "oci", f"{p.repo}:{tag}", str(out))
        layout = json.loads((out / "index.json").read_text())["manifests"][0]["digest"]
        assert layout == crane_out(p, "digest", f"{p.repo}:{tag}")
        doc = crane_doc(p, "manifest", f"{p.repo}:{tag}")
        if "manifests" in doc:
            assert platforms_of(doc) == PLATFORMS, tag
            for entry in doc["manifests"]:
                assert (out / "blobs" / "sha256" / entry["digest"][7:]).is_file()


def test_registry_rm_refuses_a_digest_other_tags_use(private: Private, v1: MabRun) -> None:
    p = private
    digest = crane_out(p, "digest", f"{p.repo}:1.0.0")
    refused = mab(p, "registry", "rm", f"{p.repo}@{digest}")
    assert refused.code == 1
    assert f"refusing to delete {digest}" in refused.stderr and "--force" in refused.stderr
    assert crane_out(p, "digest", f"{p.repo}:1.0.0") == digest


def test_errors_are_one_line_with_a_fix(private: Private) -> None:
    p = private
    # the CA is unknown to a client that trusts only public CAs (not certs.d, nor the
    # system store, which mab registry up added it to)
    untrusted = mab(
        p,
        *("registry", "ls", p.host),
        MAB_DOCKER_CERTS_DIR=str(p.root / "none"),
        SSL_CERT_FILE=certifi.where(),
        SSL_CERT_DIR="",
    )
    assert untrusted.code == 1
    lines = [line for line in untrusted.stderr.splitlines() if line.strip()]
    assert lines[0] == f"error: registry {p.host}: TLS certificate signed by an unknown authority"
    assert "certs.d" in lines[1] and len(lines) == 2
    unreachable = mab(p, "registry", "ls", f"localhost:{_free_port()}")
    assert unreachable.code == 1 and "cannot reach registry" in unreachable.stderr
    assert "Traceback" not in untrusted.output + unreachable.output


def test_the_password_appears_nowhere(private: Private) -> None:
    """Run last: everything mab printed, every file under the test's folders except
    docker's own config.json, and every argv seen while the module ran."""
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert len(RUNS) >= 10
    for run in RUNS:
        assert PASSWORD not in run.output and encoded not in run.output
    checked = 0
    for path in private.root.rglob("*"):
        if not path.is_file() or path == Path(private.authfile):
            continue
        data = path.read_bytes()
        assert PASSWORD.encode() not in data, path
        assert encoded.encode() not in data, path
        checked += 1
    assert checked > 10
    assert private.watch.samples > 50
    assert private.watch.hits == []
