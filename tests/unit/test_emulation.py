from __future__ import annotations

import platform as host
from pathlib import Path

import pytest

from mab.pipeline.emulation import host_runs
from mab.platforms import Platform


@pytest.fixture
def binfmt(tmp_path: Path) -> Path:
    (tmp_path / "qemu-arm").write_text("enabled\ninterpreter /x/arm-binfmt-P\nflags: POF\n")
    (tmp_path / "qemu-riscv64").write_text("disabled\ninterpreter /x\n")
    return tmp_path


@pytest.mark.skipif(host.machine() != "x86_64", reason="table written for an x86-64 host")
def test_host_runs_reads_binfmt(binfmt: Path) -> None:
    assert host_runs(Platform.parse("linux/amd64"), binfmt)  # native
    assert host_runs(Platform.parse("linux/386"), binfmt)  # native on x86-64
    assert host_runs(Platform.parse("linux/arm/v7"), binfmt)  # enabled entry
    assert not host_runs(Platform.parse("linux/riscv64"), binfmt)  # disabled entry
    assert not host_runs(Platform.parse("linux/arm64"), binfmt)  # no entry
    assert not host_runs(Platform.parse("linux/s390x"), binfmt)
