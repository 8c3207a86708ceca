"""The registry seam: what the pipeline asks of an OCI distribution registry.

The pipeline receives a ``RegistryFactory`` (``RegistryClient`` itself, in production)
and opens one ``Registry`` per host with it; it never constructs a client. Unit tests
pass an in-memory registry that mypy checks against these Protocols.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

from mab.errors import RegistryError
from mab.oci import Manifest

SERVER_PORT = 5001  # where `mab registry up` listens by default


@dataclass(frozen=True)
class Pushed:
    """What ``push_layout`` uploaded."""

    digest: str
    media_type: str
    size: int
    blobs_sent: int
    blobs_skipped: int


class Registry(Protocol):
    """One registry host, opened as a context manager."""

    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
    def get_manifest(self, repo: str, reference: str) -> Manifest: ...
    def head_manifest(self, repo: str, reference: str) -> str | None: ...
    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str: ...
    def list_tags(self, repo: str) -> list[str]: ...
    def push_layout(self, layout: Path, repo: str) -> Pushed: ...
    def get_blob(self, repo: str, digest: str) -> bytes: ...  # a small one (a config)


class RegistryFactory(Protocol):
    """Opens a ``Registry`` for a host; *on_retry* hears about each retried request;
    *attempts* caps the tries per request (a quick look-up that may fail: base images)."""

    def __call__(
        self,
        host: str,
        *,
        on_retry: Callable[[str], None] | None = None,
        attempts: int | None = None,
    ) -> Registry: ...


def split_repository(repository: str) -> tuple[str, str]:
    """``localhost:5000/demo/app`` -> (``localhost:5000``, ``demo/app``)."""
    host, _, path = repository.partition("/")
    if not path:
        raise RegistryError(f"'{repository}' names no repository under a registry host")
    return host, path
