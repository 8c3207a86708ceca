from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mab.config.project import load_project
from mab.errors import VerifyError
from mab.oci import Descriptor, RemoteManifest
from mab.pipeline.verify import check_index
from mab.planning.plan import TargetPlan, make_plan
from mab.platforms import Platform

from .fakes import IMAGE, INDEX


@pytest.fixture
def target(write_config: Callable[[str], Path]) -> TargetPlan:
    text = "platforms: [linux/amd64, linux/arm64]\ntargets:\n  app: {context: app, tags: [a, b]}\n"
    return make_plan(load_project(write_config(text))).targets[0]


def image(platform: str, digest: str = "sha256:1") -> Descriptor:
    return Descriptor(IMAGE, digest, 1, Platform.parse(platform), {})


ATTESTATION = Descriptor(
    IMAGE,
    "sha256:att",
    1,
    Platform("unknown", "unknown"),
    {"vnd.docker.reference.type": "attestation-manifest"},
)


ANNOTATIONS = {
    "org.opencontainers.image.title": "app",
    "org.opencontainers.image.created": "1970-01-01T00:00:00Z",
}


def index(digest: str, *entries: Descriptor, media: str = INDEX) -> RemoteManifest:
    return RemoteManifest("r", digest, media, tuple(entries), ANNOTATIONS)


def test_passes_and_sets_attestations_aside(target: TargetPlan) -> None:
    m = index("sha256:i", image("linux/amd64"), image("linux/arm64"), ATTESTATION, ATTESTATION)
    verified = check_index(target, {ref: m for ref in target.refs})
    assert verified.digest == "sha256:i"
    assert len(verified.images) == 2


def test_missing_platform(target: TargetPlan) -> None:
    m = index("sha256:i", image("linux/amd64"), ATTESTATION)
    with pytest.raises(VerifyError, match=r"missing: linux/arm64; unexpected: none"):
        check_index(target, {ref: m for ref in target.refs})


def test_extra_platform(target: TargetPlan) -> None:
    m = index("sha256:i", image("linux/amd64"), image("linux/arm64"), image("linux/s390x"))
    with pytest.raises(VerifyError, match=r"unexpected: linux/s390x"):
        check_index(target, {ref: m for ref in target.refs})


def test_duplicate_platform(target: TargetPlan) -> None:
    m = index(
        "sha256:i", image("linux/amd64"), image("linux/arm64"), image("linux/arm64", "sha256:2")
    )
    with pytest.raises(VerifyError, match="more than once"):
        check_index(target, {ref: m for ref in target.refs})


def test_single_manifest_is_not_an_index(target: TargetPlan) -> None:
    m = index("sha256:i", media=IMAGE)
    with pytest.raises(VerifyError, match="not an image index"):
        check_index(target, {ref: m for ref in target.refs})


def test_tags_must_share_one_digest(target: TargetPlan) -> None:
    a = index("sha256:a", image("linux/amd64"), image("linux/arm64"))
    b = index("sha256:b", image("linux/amd64"), image("linux/arm64"))
    with pytest.raises(VerifyError, match="different indexes"):
        check_index(target, dict(zip(target.refs, (a, b), strict=True)))


def test_missing_ref(target: TargetPlan) -> None:
    a = index("sha256:a", image("linux/amd64"), image("linux/arm64"))
    with pytest.raises(VerifyError, match="not found"):
        check_index(target, {target.refs[0]: a}, same=target.refs)


def test_expected_digest_and_annotations(target: TargetPlan) -> None:
    a = index("sha256:a", image("linux/amd64"), image("linux/arm64"))
    with pytest.raises(VerifyError, match="expected sha256:b"):
        check_index(target, {ref: a for ref in target.refs}, digest="sha256:b")
    bare = RemoteManifest("r", "sha256:a", INDEX, a.manifests, {})
    with pytest.raises(VerifyError, match="annotations missing"):
        check_index(target, {ref: bare for ref in target.refs})
