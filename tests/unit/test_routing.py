"""Routing platforms to builders (pure)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mab.config.project import load_project
from mab.errors import ConfigError
from mab.planning.plan import make_plan
from mab.platforms import Platform

TWO = """\
platforms: [linux/amd64, linux/arm64, linux/arm/v7, linux/riscv64]
builders:
  - {name: x86, platforms: [linux/amd64]}
  - {name: graviton, driver: remote, endpoint: "tcp://arm:1234", platforms: [linux/arm64],
     emulates: [linux/arm/v7]}
targets:
  app: {context: app}
"""


def test_native_first_then_emulator_then_first_builder(
    write_config: Callable[[str], Path],
) -> None:
    plan = make_plan(load_project(write_config(TWO)))
    route = {str(p): plan.route_for(p) for p in plan.targets[0].platforms}
    assert (route["linux/amd64"].builder, route["linux/amd64"].native) == ("x86", True)
    assert (route["linux/arm64"].builder, route["linux/arm64"].native) == ("graviton", True)
    assert route["linux/arm64"].driver == "remote"
    assert (route["linux/arm/v7"].builder, route["linux/arm/v7"].native) == ("graviton", False)
    assert "5-20x" in route["linux/arm/v7"].note
    assert (route["linux/riscv64"].builder, route["linux/riscv64"].native) == ("x86", False)
    assert [j.route.builder for j in plan.jobs] == ["x86", "graviton", "graviton", "x86"]
    assert plan.to_dict()["routes"]["linux/arm64"] == {
        "builder": "graviton",
        "native": True,
        "note": None,
    }


def test_without_builders_the_current_builder_builds_everything(
    write_config: Callable[[str], Path],
) -> None:
    plan = make_plan(load_project(write_config("builder: mine\ntargets:\n  app: {context: app}\n")))
    route = plan.route_for(Platform.parse("linux/arm64"))
    assert (route.builder, route.native, route.note) == ("mine", None, "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "builders:\n  - {name: a, platforms: [linux/amd64]}\n"
            "  - {name: a, platforms: [linux/arm64]}\n",
            "name used twice: a",
        ),
        (
            "builder: x\nbuilders:\n  - {name: a, platforms: [linux/amd64]}\n",
            "either 'builder' or 'builders'",
        ),
        (
            "builders:\n  - {name: a, platforms: [linux/amd64], driver: podman}\n",
            "builders[0].driver",
        ),
        ("builders:\n  - {name: a, platfroms: [linux/amd64]}\n", "did you mean 'platforms'"),
    ],
)
def test_builder_config_errors(
    write_config: Callable[[str], Path], text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(write_config(text + "targets:\n  app: {context: app}\n"))
    assert message in str(info.value)


def test_one_builder_for_everything_overrides_routing(write_config: Callable[[str], Path]) -> None:
    plan = make_plan(load_project(write_config(TWO))).with_builder(None)
    assert {j.route.builder for j in plan.jobs} == {None}
    assert all(j.route.native is None and not j.route.note for j in plan.jobs)
    assert {j.route.builder for j in plan.with_builder("ci").jobs} == {"ci"}
