"""The engine adapter's pure helpers: how docker's stderr becomes one line, and which
failures are retried. The stderr below is what buildx 0.29 printed here when
``imagetools create`` lost the race described at ``engine._COPY_RACE``."""

from __future__ import annotations

import pytest
from python_on_whales import DockerException

from mab.engine import whales
from mab.engine.whales import _COPY_RACE, DockerEngine, _first_error_line, _retrying
from mab.errors import EngineError

COPY_RACE_STDERR = """\
#1 [internal] pushing localhost:5000/rp13/app:x
#1 0.000 copying sha256:1afe from localhost:5000/t/app@sha256:50c9 to localhost:5000/rp13/app:x
------
ERROR: failed commit on ref "index-sha256:50c9": unexpected status from PUT request to \
http://localhost:5000/v2/rp13/app/manifests/sha256:50c9: 400 Bad Request
errors:
unknown: provided digest did not match uploaded content
unknown: blob unknown to registry
"""


def _failure(stderr: str) -> DockerException:
    return DockerException(["docker", "buildx"], 1, b"", stderr.encode())


def test_registry_error_list_is_folded_into_the_error_line() -> None:
    line = _first_error_line(COPY_RACE_STDERR)
    assert line.startswith('ERROR: failed commit on ref "index-sha256:50c9"')
    assert line.endswith(
        ": unknown: provided digest did not match uploaded content; "
        "unknown: blob unknown to registry"
    )


def test_a_bare_error_list_still_says_what_went_wrong() -> None:
    assert _first_error_line("errors:\ndenied: requested access to the resource is denied\n") == (
        "registry error: denied: requested access to the resource is denied"
    )


def test_plain_error_lines_are_unchanged() -> None:
    assert _first_error_line("#1 building\nERROR: no such host\n") == "ERROR: no such host"
    assert _first_error_line("something odd\n") == "something odd"
    assert _first_error_line("") == "no output"


def test_copy_race_is_retried_only_where_asked() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _failure(COPY_RACE_STDERR)
        return "copied"

    assert _retrying(flaky, sleep=lambda _: None, also=_COPY_RACE) == "copied"
    assert len(calls) == 3

    calls.clear()
    with pytest.raises(DockerException):  # elsewhere "blob unknown" is an answer, not a race
        _retrying(flaky, sleep=lambda _: None)
    assert len(calls) == 1


def test_retries_are_bounded() -> None:
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise _failure("ERROR: 503 Service Unavailable")

    with pytest.raises(DockerException):
        _retrying(always, attempts=4, sleep=lambda _: None)
    assert len(calls) == 4


# `docker buildx ls --format json` as buildx 0.29 printed it here: the docker driver on
# the containerd image store, a remote builder whose BuildKit is down, and (the last
# line) the current builder while DOCKER_HOST named a socket with no engine behind it.
LS_LINES = [
    '{"Current":true,"Driver":"docker","Dynamic":false,"Name":"default","Nodes":[{"Endpoint":'
    '"default","Labels":{"org.mobyproject.buildkit.worker.containerd.namespace":"moby",'
    '"org.mobyproject.buildkit.worker.executor":"containerd"},"Name":"default","Platforms":'
    '["linux/amd64","linux/arm64"],"Status":"running","Version":"v0.0.0+unknown"}]}',
    '{"Current":false,"Driver":"remote","Dynamic":false,"Name":"rtest","Nodes":[{"Endpoint":'
    '"tcp://127.0.0.1:1","Name":"rtest0","Status":"inactive"}]}',
]
LS_ENGINE_DOWN = (
    '{"Current":true,"Driver":"","Dynamic":false,"Err":"Cannot connect to the Docker daemon '
    'at unix:///nonexistent.sock. Is the docker daemon running?","Name":"default","Nodes":'
    '[{"Endpoint":"","Name":""}]}'
)


def _engine_listing(monkeypatch: pytest.MonkeyPatch, lines: list[str]) -> DockerEngine:
    calls: list[list[str]] = []

    def run(args: list[str], **_: object) -> str:
        calls.append([str(a) for a in args])
        assert args[-4:] == ["buildx", "ls", "--format", "json"], args
        return "\n".join(lines) + "\n"

    monkeypatch.setattr(whales, "_run", run)
    return DockerEngine()


def test_the_current_builder_comes_from_one_buildx_ls(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine_listing(monkeypatch, LS_LINES)
    info = engine.builder(None)
    assert (info.name, info.driver, info.status) == ("default", "docker", "running")
    assert info.platforms == ("linux/amd64", "linux/arm64")
    assert info.containerd_worker  # the worker label: no `docker info` needed


def test_a_remote_builder_that_does_not_answer_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine_listing(monkeypatch, LS_LINES)
    with pytest.raises(EngineError, match=r"'rtest' \(remote driver\) does not answer at tcp://"):
        engine.builder("rtest")


def test_an_unknown_builder_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine_listing(monkeypatch, LS_LINES)
    with pytest.raises(EngineError, match=r"no builder of that name \(it has: default, rtest\)"):
        engine.builder("nosuch")


def test_buildx_s_own_error_is_the_builder_s_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """buildx ls exits 0 when the engine is down; the error is in the builder's Err."""
    engine = _engine_listing(monkeypatch, [LS_ENGINE_DOWN])
    with pytest.raises(EngineError, match="Cannot connect to the Docker daemon"):
        engine.builder(None)
