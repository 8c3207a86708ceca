"""Defaults that come from the environment rather than builds.yaml."""

from __future__ import annotations

import os

from mab.config.models import DEFAULT_REGISTRY
from mab.errors import UsageError
from mab.secrets import check_registry_string


def default_registry() -> str:
    """Where images go when builds.yaml names no registry: ``MAB_DEFAULT_REGISTRY``
    (checked like builds.yaml's ``registry:``, credentials refused without repeating
    them), else ``localhost:5000`` (the embedded registry)."""
    value = os.environ.get("MAB_DEFAULT_REGISTRY", "").strip()
    if not value:
        return DEFAULT_REGISTRY
    try:
        return check_registry_string(value, "MAB_DEFAULT_REGISTRY")
    except ValueError as exc:
        raise UsageError(
            str(exc), hint="set MAB_DEFAULT_REGISTRY to HOST[:PORT][/PATH]; log in with mab login"
        ) from None


def in_ci() -> bool:
    """Whether mab runs in CI (the ``CI`` variable every CI system sets): progress is then
    printed line by line, and the registry cache is exported (``cache.export: auto``)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
