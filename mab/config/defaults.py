"""Defaults that come from the environment rather than builds.yaml."""

from __future__ import annotations

import os

from mab.config.models import DEFAULT_REGISTRY


def default_registry() -> str:
    """Where images go when builds.yaml names no registry: ``MAB_DEFAULT_REGISTRY``, else
    ``localhost:5000`` (the embedded registry)."""
    return os.environ.get("MAB_DEFAULT_REGISTRY") or DEFAULT_REGISTRY
