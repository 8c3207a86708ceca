"""OCI labels for images and annotations for their index (pure).

``org.opencontainers.image.created`` is the source's time, not the wall clock: the
``SOURCE_DATE_EPOCH`` convention of reproducible builds (the env var, else the commit
time, else the run's clock). A rebuild of the same commit then yields the same image
digests, so a rerun after a failure finds its images already in the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from mab.planning.git import public_url
from mab.planning.tags import TagContext

OCI = "org.opencontainers.image."


def created(context: TagContext) -> datetime:
    if context.source_date_epoch is not None:
        return datetime.fromtimestamp(context.source_date_epoch, tz=UTC)
    return context.now


def oci_annotations(target: str, context: TagContext, version: str | None) -> dict[str, str]:
    """The generated OCI annotations. *version* is the full one, build metadata kept
    (``1.2.3+build.5``), though tags drop it. The source URL is cleaned again here, so
    no user name, password or token is ever pushed inside an image."""
    git = context.git
    values = {
        "title": target,
        "created": created(context).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "revision": git.sha if git else None,
        "source": public_url(git.source_url) if git and git.source_url else None,
        "version": version,
    }
    return {OCI + k: v for k, v in values.items() if v}


def image_labels(
    target: str, context: TagContext, version: str | None, *user: Mapping[str, str]
) -> dict[str, str]:
    """Generated OCI labels, then the user's (defaults first, then the target's) on top."""
    labels = oci_annotations(target, context, version)
    for extra in user:
        labels.update(extra)
    return labels
