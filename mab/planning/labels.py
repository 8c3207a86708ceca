"""OCI labels for images and annotations for their index (pure).

``org.opencontainers.image.created`` is the source's time, not the wall clock: the
``SOURCE_DATE_EPOCH`` convention of reproducible builds (the env var, else the commit
time, else the run's clock). A rebuild of the same commit then yields the same image
digests, so a rerun after a failure finds its images already in the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from mab.planning.tags import TagContext

OCI = "org.opencontainers.image."


def created(context: TagContext) -> datetime:
    if context.source_date_epoch is not None:
        return datetime.fromtimestamp(context.source_date_epoch, tz=UTC)
    return context.now


def oci_annotations(target: str, context: TagContext, version: str | None) -> dict[str, str]:
    values = {
        "title": target,
        "created": created(context).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "revision": context.git.sha if context.git else None,
        "source": context.git.source_url if context.git else None,
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
