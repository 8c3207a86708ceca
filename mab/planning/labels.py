"""OCI labels for images and annotations for their index (pure).

``org.opencontainers.image.created`` is the source's time, never the wall clock: the
``SOURCE_DATE_EPOCH`` convention of reproducible builds (the env var, else the commit
time). Without either (a plain folder, no git), planning leaves it out and the build
stage fills it from the inputs: the newest modification time among the files the build
reads (mab.pipeline.inputs). A rebuild of the same inputs then yields the same image
digests, git or not, so an unchanged rerun publishes nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from mab.planning.git import public_url
from mab.planning.tags import TagContext

OCI = "org.opencontainers.image."


def created(context: TagContext) -> datetime | None:
    """The source's time, or None when the run has none (filled in from the inputs)."""
    if context.source_date_epoch is not None:
        return datetime.fromtimestamp(context.source_date_epoch, tz=UTC)
    return None


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def oci_annotations(target: str, context: TagContext, version: str | None) -> dict[str, str]:
    """The generated OCI annotations. *version* is the full one, build metadata kept
    (``1.2.3+build.5``), though tags drop it. The source URL is cleaned again here, so
    no user name, password or token is ever pushed inside an image."""
    git = context.git
    values = {
        "title": target,
        "created": stamp(when) if (when := created(context)) else None,
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
