"""Building a target's platforms together: one buildx call for all of them.

BuildKit builds several platforms of one Dockerfile in one solve, and one buildx process
costs 0.3-0.7 s of CPU to start here (2 cores), so three per-platform calls cost a
changed target about 0.3 s of wall time more than one call for all three
(docs/benchmarks.md). mab still publishes per platform: the index BuildKit pushes is split
into one entry per platform (the image, with its attestation manifest when there is one),
so everything after the build (gates, sizes, a split build's digest files, the index mab
assembles) sees what a build of that platform alone gives.

When the build fails, the pipeline builds each platform alone, so that the report says
which platform fails (the platforms that work come from BuildKit's cache, quickly).
Platforms build together only where nothing tells them apart: the same builder, and the
same cache export (a ``{platform}`` cache ref exported per platform keeps them apart).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from mab.engine.base import BuildRequest, step_platform
from mab.errors import BuildError
from mab.oci import OCI_INDEX, REF_DIGEST, digest_of, index_bytes
from mab.planning.plan import Job
from mab.platforms import Platform
from mab.registry.base import Registry


def batches(jobs: Iterable[Job]) -> list[list[Job]]:
    """*jobs* (in plan order) in batches of one target and one builder route."""
    out: dict[tuple[str, str | None], list[Job]] = {}
    for job in jobs:
        out.setdefault((job.target.name, job.route.builder), []).append(job)
    return list(out.values())


def combine(requests: Sequence[BuildRequest], driver: str) -> BuildRequest | None:
    """One request for every platform of *requests* (per-platform requests of one target
    on one builder of *driver*), or None when they cannot share a build: they export their
    caches to different places. Cache sources are all imported, each once.

    Where builds.yaml leaves provenance to BuildKit's default, the combined build asks for
    what that default gives one platform on this builder, so that the release does not
    depend on how mab grouped the platforms: on the ``docker`` driver buildx attaches no
    attestation to a build of one platform (an OCI layout of just the image) but does to
    a build of several, and a provenance attestation holds the build's id and times, so
    the index would then change with every rebuild of the same images. A build of one
    platform that asks for an SBOM gets the default provenance too, so that one keeps the
    default (both seen with buildx 0.29.1)."""
    first = requests[0]
    if len(requests) < 2 or any(r.cache_to != first.cache_to for r in requests):
        return None
    sources: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
    for request in requests:
        for source in request.cache_from:
            sources.setdefault(tuple(sorted(source.items())), source)
    provenance = first.provenance
    if provenance is None and driver == "docker" and not first.sbom:
        provenance = "false"
    return replace(
        first,
        also=tuple(r.platform for r in requests[1:]),
        cache_from=tuple(sources.values()),
        provenance=provenance,
    )


# "#12 [linux/arm64 build 2/4] RUN ...", "#7 [linux/amd64->arm64 build 3/5] ..." (a stage
# pinned to the build platform, building for arm64), "#4 [linux/arm/v7 internal] ..."
_STEP = re.compile(r"^#(\d+) (?:\[(\S+))?")


class LogRouter:
    """Sends each line of a build of several platforms to the job of its platform.

    BuildKit names a step's platform on the step's first line only (``#12 [linux/arm64
    2/3] RUN ...``); its later lines carry just the step number, so the number decides.
    Lines of no platform (the context upload, the export) go to the first job."""

    def __init__(self, jobs: Sequence[Job], send: Callable[[Job, str], None]) -> None:
        self._jobs = {str(job.platform): job for job in jobs}
        self._first = jobs[0]
        self._send = send
        self._steps: dict[str, Job] = {}

    def __call__(self, line: str) -> None:
        job = self._first
        match = _STEP.match(line)
        if match:
            step, label = match.groups()
            found = self._jobs.get(step_platform(label)) if label else None
            if found is not None:
                self._steps[step] = found
            job = self._steps.get(step, job)
        self._send(job, line)


def split_index(
    client: Registry, repo: str, digest: str, platforms: Sequence[Platform]
) -> dict[Platform, str]:
    """Each platform's own image in the index *digest* that a build of *platforms*
    pushed: the image manifest's digest, or, when BuildKit attached an attestation to it,
    the digest of a new index of the two (written by digest, as a build of that platform
    alone pushes it)."""
    index = client.get_manifest(repo, digest)
    if not index.is_index:
        raise BuildError(f"the build of {len(platforms)} platforms pushed one image, not an index")
    out: dict[Platform, str] = {}
    for platform in platforms:
        images = [e for e in index.manifests if not e.is_attestation and e.platform == platform]
        if len(images) != 1:
            raise BuildError(
                f"the index the build pushed ({digest[:19]}) has {len(images)} images for "
                f"{platform}, not one"
            )
        image = images[0]
        notes = [
            e
            for e in index.manifests
            if e.is_attestation and e.annotations.get(REF_DIGEST) == image.digest
        ]
        if not notes:
            out[platform] = image.digest
            continue
        data = index_bytes([image, *notes], {})
        out[platform] = client.put_manifest(repo, digest_of(data), data, OCI_INDEX)
    return out
