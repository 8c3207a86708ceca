"""What a command imports decides how fast it starts (issue 11): `mab plan` and `mab tags`
read no registry, so they must not load httpx, python-on-whales or the doctor; nor jinja2
while no tag rule is a template."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.importtime import run_importtime


def _project(root: Path, tags: str) -> None:
    """A builds.yaml with one target, app, whose tag rules are *tags* (YAML flow text)."""
    (root / "app").mkdir()
    (root / "app" / "Dockerfile").write_text("FROM busybox\n")
    (root / "builds.yaml").write_text(
        "registry: registry.test/team\nplatforms: [linux/amd64, linux/arm64]\n"
        f"targets:\n  app: {{context: app, tags: {tags}}}\n"
    )


@pytest.mark.parametrize("command", [["plan"], ["tags"], ["plan", "--json"], ["--help"]])
def test_offline_commands_load_no_registry_or_engine_stack(
    tmp_path: Path, command: list[str]
) -> None:
    _project(tmp_path, "['1.0.0']")
    _, modules = run_importtime(*command, cwd=tmp_path, timeout=60)
    assert "mab.cli.main" in modules  # the measurement saw mab's own imports
    heavy = {"httpx", "python_on_whales", "mab.doctor", "cryptography", "bcrypt", "mab.signing"}
    assert not modules & heavy
    assert "jinja2" not in modules


def test_a_template_tag_rule_loads_jinja2_and_renders(tmp_path: Path) -> None:
    """The lazy import is taken when a rule is a template, and the tag is rendered."""
    _project(tmp_path, "[{raw: 'v-{{ target }}'}]")
    done, modules = run_importtime("tags", cwd=tmp_path, timeout=60)
    assert "jinja2" in modules
    assert "v-app" in done.stdout
