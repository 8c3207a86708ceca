"""Retention decisions: which tags go, which stay and why, and which manifests are
deleted for them (never one a kept index references). Plus the retention: model."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path

import pytest

from mab.config.models import DEFAULT_KEEP_TAGS
from mab.config.project import load_project
from mab.errors import ConfigError
from mab.registry.retention import Decision, Policy, TagState, decide, parse_time

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


def days_ago(n: float) -> datetime.datetime:
    return NOW - datetime.timedelta(days=n)


def index(tag: str, digest: str, age: float | None, *children: str) -> TagState:
    return TagState(tag, digest, days_ago(age) if age is not None else None, children)


def by_tag(decisions: Sequence[Decision]) -> dict[str, tuple[bool, str]]:
    return {d.tag: (d.keep, d.reason) for d in decisions}


def test_default_patterns_keep_releases_latest_and_environments() -> None:
    tags = [
        index(t, f"sha256:{i}", 100)
        for i, t in enumerate(
            ["1.2.3", "v2.0.0", "1.2", "1", "latest", "staging", "prod", "1.2.3-rc.1", "abc1234"]
        )
    ]
    plan = decide("r/app", tags, Policy(older_than_days=30), NOW)
    deleted = sorted(d.tag for d in plan.deleted_tags)
    assert deleted == ["1.2.3-rc.1", "abc1234"]
    assert by_tag(plan.decisions)["1.2.3"] == (True, "matches keep pattern 'v?\\d+\\.\\d+\\.\\d+'")
    # a date tag is not a MAJOR alias
    assert decide("r", [index("20240101", "sha256:d", 100)], Policy(keep_last=0), NOW).deleted_tags


def test_keep_last_counts_distinct_images_newest_first() -> None:
    tags = [
        index("a1", "sha256:a", 5, "sha256:a-amd", "sha256:a-arm"),
        index("a2", "sha256:a", 5, "sha256:a-amd", "sha256:a-arm"),
        index("b", "sha256:b", 4, "sha256:b-amd", "sha256:b-arm"),
        index("c", "sha256:c", 3, "sha256:c-amd", "sha256:c-arm"),
    ]
    plan = decide("r/app", tags, Policy(keep_last=2, keep_tags=()), NOW)
    assert sorted(d.tag for d in plan.deleted_tags) == ["a1", "a2"]
    assert by_tag(plan.decisions)["b"] == (True, "one of the newest 2 versions")
    # the index once, then its platform manifests, which nothing kept references
    assert plan.delete_manifests == ["sha256:a", "sha256:a-amd", "sha256:a-arm"]


def test_age_limit_and_unknown_created_time_keep() -> None:
    tags = [
        index("old", "sha256:o", 40),
        index("young", "sha256:y", 3),
        index("undated", "sha256:u", None),
    ]
    plan = decide("r/app", tags, Policy(older_than_days=30, keep_tags=()), NOW)
    decisions = by_tag(plan.decisions)
    assert decisions["old"] == (False, "matches no keep pattern, older than 30 days")
    assert decisions["young"] == (True, "younger than 30 days")
    assert decisions["undated"] == (True, "created time unknown")


def test_a_tag_sharing_a_digest_with_a_kept_tag_stays() -> None:
    tags = [index("1.0.0", "sha256:r", 90), index("build-17", "sha256:r", 90)]
    plan = decide("r/app", tags, Policy(keep_last=0), NOW)
    keep, reason = by_tag(plan.decisions)["build-17"]
    assert keep and reason.startswith("same image as kept tag '1.0.0'")
    assert plan.delete_manifests == []


def test_never_deletes_a_manifest_a_kept_index_references() -> None:
    tags = [
        index("1.0.0", "sha256:rel", 90, "sha256:amd", "sha256:arm"),
        index("arm-only", "sha256:arm", 90),  # a tag on one platform of the release
        index("rebuild", "sha256:idx2", 80, "sha256:amd", "sha256:arm-2", "sha256:att"),
    ]
    plan = decide("r/app", tags, Policy(keep_last=0), NOW)
    decisions = by_tag(plan.decisions)
    assert decisions["arm-only"] == (True, "a platform image of kept index '1.0.0'")
    assert decisions["rebuild"][0] is False
    # the rebuilt index goes with the manifests only it used; the shared amd64 one stays
    assert plan.delete_manifests == ["sha256:idx2", "sha256:arm-2", "sha256:att"]


def test_plan_json_shape() -> None:
    plan = decide("r/app", [index("x", "sha256:x", 2.5)], Policy(keep_last=0, keep_tags=()), NOW)
    data = plan.to_dict()
    assert data["tags"] == [
        {
            "tag": "x",
            "digest": "sha256:x",
            "created": "2026-05-30T00:00:00+00:00",
            "age_days": 2.5,
            "action": "delete",
            "reason": "matches no keep pattern, not among the newest 0",
        }
    ]
    assert data["policy"]["keep_tags"] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-31T10:11:12.123456789Z", datetime.datetime(2026, 5, 31, 10, 11, 12, 123456)),
        ("2026-05-31T12:11:12+02:00", datetime.datetime(2026, 5, 31, 10, 11, 12)),
        ("2026-05-31T10:11:12Z", datetime.datetime(2026, 5, 31, 10, 11, 12)),
        ("1970-01-01T00:00:00Z", None),  # SOURCE_DATE_EPOCH=0: not a real date
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_time(text: str | None, expected: datetime.datetime | None) -> None:
    want = expected.replace(tzinfo=datetime.UTC) if expected else None
    assert parse_time(text) == want


def write(tmp_path: Path, retention: str) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "builds.yaml"
    path.write_text(f"targets:\n  app:\n    context: app\n    retention: {retention}\n")
    return path


def test_retention_model(tmp_path: Path) -> None:
    retention = load_project(write(tmp_path, "{keep_last: 5}")).config.targets["app"].retention
    assert retention is not None and retention.keep_last == 5
    assert tuple(retention.keep_tags) == DEFAULT_KEEP_TAGS
    with pytest.raises(ConfigError, match="give 'keep_last', 'older_than_days' or both"):
        load_project(write(tmp_path, "{keep_tags: [latest]}"))
    with pytest.raises(ConfigError) as info:
        load_project(write(tmp_path, "{keep_last: 1, keep_tags: ['v(']}"))
    assert "targets.app.retention.keep_tags[0]: invalid regular expression 'v('" in str(info.value)
    with pytest.raises(ConfigError, match="did you mean 'keep_last'"):
        load_project(write(tmp_path, "{keep_lats: 1}"))
