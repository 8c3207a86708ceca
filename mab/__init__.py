"""mab: multi-architecture container image builds from one declarative builds.yaml.

The pipeline runs one way: config -> plan -> render -> build -> gates -> publish ->
verify -> report. ``mab.api`` is the typed API (what the ``mab`` command calls); the
packages below it are that pipeline's stages (see CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["__version__", "api"]

if TYPE_CHECKING:
    from mab import api


def __getattr__(name: str) -> object:
    # ``mab.api`` on first use: ``import mab`` stays cheap (the CLI's --version, mab.ci)
    if name == "api":
        import importlib  # noqa: PLC0415 - only when mab.api is asked for

        return importlib.import_module("mab.api")
    raise AttributeError(f"module 'mab' has no attribute {name!r}")
