"""Signals and scratch files (issue 13): SIGINT/SIGTERM stop the builds and report what
was published, children get the signal, temp folders never outlive a run.
tests/integration/test_faults.py sends the signals to a real `mab build`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mab import proc, scratch
from mab.cli.guard import interrupted_account
from mab.config.project import load_project
from mab.engine.base import BuildOutcome, BuildRequest
from mab.errors import Terminated
from mab.pipeline.build import run_build
from mab.pipeline.results import Interrupted, TargetStatus
from mab.planning.plan import make_plan
from tests.unit.fakes import FakeEngine, Recorder

TWO = """\
registry: registry.test/demo
platforms: [linux/amd64]
concurrency: 1
targets:
  first: {context: app, tags: ["1.0"]}
  second: {context: app, tags: ["1.0"]}
"""


def test_sigterm_during_a_build_stops_and_tells_what_was_published(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = make_plan(load_project(write_config(TWO)))
    engine = FakeEngine()
    real = FakeEngine.build

    def build(
        self: FakeEngine,
        request: BuildRequest,
        on_line: Callable[[str], None],
        oci_layout: Path | None = None,
    ) -> BuildOutcome:
        if request.repository.endswith("/second"):
            time.sleep(0.2)  # the first target's publish has run by now
            raise Terminated()
        return real(self, request, on_line, oci_layout)

    monkeypatch.setattr(FakeEngine, "build", build)
    terminated: list[int] = []

    def terminate() -> list[int]:
        terminated.append(1)
        return []

    monkeypatch.setattr(proc, "terminate_children", terminate)
    with pytest.raises(Interrupted) as info:
        run_build(plan, engine, Recorder(), registries=engine.registry)
    assert info.value.exit_code == 143 and terminated == [1]
    statuses = {t.name: t.status for t in info.value.report.targets}
    assert statuses["first"] is TargetStatus.PUBLISHED
    assert statuses["second"] is not TargetStatus.PUBLISHED
    assert "registry.test/demo/first" in engine.store.tags
    assert "registry.test/demo/second" not in engine.store.tags
    line = interrupted_account(info.value.report)
    assert line == (
        "published before the signal: first (1.0); not published (no tag written or moved): second"
    )


def test_terminate_children_signals_our_children_not_detached_servers(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    server = proc.spawn_detached(
        [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "log"
    )
    try:
        hit = proc.terminate_children()
        assert child.pid in hit and server not in hit
        assert child.wait(timeout=10) != 0
        os.kill(server, 0)  # still alive
    finally:
        child.kill()
        os.kill(server, 9)
        os.waitpid(server, 0)


def test_docker_calls_die_with_mab() -> None:
    prefix = proc.parent_death_prefix()
    if sys.platform.startswith("linux"):
        assert prefix[1:] == ["--pdeathsig", "TERM", "--"] and prefix[0].endswith("setpriv")


def test_scratch_folders_live_under_one_run_folder_and_stale_ones_go(tmp_path: Path) -> None:
    with scratch.scratch("mab-oci-") as one:
        assert one.parent == scratch.run_dir()
        assert one.parent.name.startswith(f"mab-run-{os.getpid()}-")
        (one / "blob").write_bytes(b"x" * 10)
    assert not one.exists()
    dead = tmp_path / "mab-run-999999999-abc"
    dead.mkdir()
    mine = tmp_path / f"mab-run-{os.getpid()}-abc"
    mine.mkdir()
    assert scratch.clean_stale(tmp_path) == [dead]
    assert mine.exists() and not dead.exists()
    scratch.remove_run_dir()
