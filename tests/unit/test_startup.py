"""What a command imports decides how fast it starts (issue 11): `mab plan` and `mab tags`
read no registry, so they must not load httpx, python-on-whales or the doctor; nor jinja2
while no tag rule is a template."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.importtime import run_importtime


@pytest.mark.parametrize("command", [["plan"], ["tags"], ["plan", "--json"], ["--help"]])
def test_offline_commands_load_no_registry_or_engine_stack(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "builds.yaml").write_text(
        "registry: registry.test/team\nplatforms: [linux/amd64, linux/arm64]\n"
        "targets:\n  app: {context: app, tags: ['1.0.0']}\n"
    )
    _, modules = run_importtime(*command, cwd=tmp_path, timeout=60)
    assert "mab.cli.main" in modules  # the measurement saw mab's own imports
    heavy = {"httpx", "python_on_whales", "mab.doctor", "cryptography", "bcrypt", "mab.signing"}
    assert not modules & heavy
    assert "jinja2" not in modules


def test_a_template_tag_rule_loads_jinja2_and_renders(tmp_path: Path) -> None:
    """The lazy import is taken when a rule is a template, and the tag is rendered."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "builds.yaml").write_text(
        "registry: registry.test/team\nplatforms: [linux/amd64]\n"
        "targets:\n  app: {context: app, tags: [{raw: 'v-{{ target }}'}]}\n"
    )
    done, modules = run_importtime("tags", cwd=tmp_path, timeout=60)
    assert "jinja2" in modules
    assert "v-app" in done.stdout
