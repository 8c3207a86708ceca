"""Tag strategies, table by table: what each rule makes, and when floating tags move."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from mab.config.models import TagItem
from mab.planning.git import GitInfo, public_url
from mab.planning.tags import (
    PlannedTag,
    TagContext,
    TagRuleError,
    compute_tags,
    sanitise,
    should_move,
    tag_set,
)

RULES: TypeAdapter[list[TagItem]] = TypeAdapter(list[TagItem])
NOW = datetime(2026, 11, 27, 4, 5, 6, tzinfo=UTC)
GIT = GitInfo(
    sha="0123456789abcdef0123456789abcdef01234567",
    branch="feature/Login_v2",
    tag="v1.2.3",
    commit_time=1_700_000_000,
    source_url="https://example.test/acme/app",
)


def tags(rules: list[Any], **context: Any) -> list[str]:
    return [t.name for t in planned(rules, **context)]


def planned(rules: list[Any], **context: Any) -> tuple[PlannedTag, ...]:
    ctx = TagContext(now=NOW, **context)
    return compute_tags(RULES.validate_python(rules), ctx, "api")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.2.3", ["1.2.3", "1.2", "1", "latest"]),
        ("v1.2.3", ["1.2.3", "1.2", "1", "latest"]),
        ("0.9.0", ["0.9.0", "0.9", "0", "latest"]),
        ("1.3.0-rc.1", ["1.3.0-rc.1"]),  # a pre-release gets only its full version
        ("2.0.0-beta", ["2.0.0-beta"]),
        # build metadata is dropped from tags (kept in the version label)
        ("1.2.3+build.7", ["1.2.3", "1.2", "1", "latest"]),
    ],
)
def test_semver(version: str, expected: list[str]) -> None:
    assert tags([{"semver": {}}], version=version) == expected


def test_semver_parts_switchable_and_affixes() -> None:
    rules = [{"semver": {"latest": False, "major": False}, "prefix": "v", "suffix": "-slim"}]
    assert tags(rules, version="1.2.3") == ["v1.2.3-slim", "v1.2-slim"]


def test_semver_kinds() -> None:
    kinds = {t.name: (t.floating, t.line) for t in planned([{"semver": {}}], version="1.2.3")}
    assert kinds == {
        "1.2.3": (False, None),
        "1.2": (True, (1, 2)),
        "1": (True, (1,)),
        "latest": (True, ()),
    }


def test_semver_version_sources(tmp_path: Path) -> None:
    (tmp_path / "VERSION").write_text("3.1.4\n")
    # auto: --version, then a version-looking git tag at HEAD, then the file
    assert tags([{"semver": {"latest": False}}], version="9.9.9", git=GIT)[0] == "9.9.9"
    assert tags([{"semver": {}}], git=GIT, project_dir=tmp_path)[0] == "1.2.3"
    assert tags([{"semver": {}}], project_dir=tmp_path)[0] == "3.1.4"
    assert (
        tags([{"semver": {"source": "file"}}], version="9.9.9", project_dir=tmp_path)[0] == "3.1.4"
    )
    other = GitInfo(GIT.sha, None, "nightly", 0, None)
    assert tags([{"semver": {}}], git=other, project_dir=tmp_path)[0] == "3.1.4"


def test_semver_without_version_makes_no_tags_and_names_the_rule() -> None:
    # was an error that failed the whole run; now the rule makes no tags and says so
    result = tag_set(RULES.validate_python(["x", {"semver": {}}]), TagContext(now=NOW), "api")
    assert [t.name for t in result.tags] == ["x"]
    (note,) = result.notes
    assert note.startswith("semver rule:") and "--version" in note


def test_semver_bad_version() -> None:
    with pytest.raises(TagRuleError, match=r"'banana' .* is not a semver version"):
        tags([{"semver": {}}], version="banana")


@pytest.mark.parametrize(
    ("rule", "context", "expected"),
    [
        (
            {"environment": {}},
            {"environment": "staging", "version": "1.2.3"},
            ["staging", "1.2.3-staging"],
        ),
        ({"environment": {"name": "production", "versioned": False}}, {}, ["production"]),
        (
            {"environment": {"plain": False}},
            {"environment": "dev", "version": "2.0.0"},
            ["2.0.0-dev"],
        ),
        ({"environment": {}}, {"environment": "dev"}, ["dev"]),  # no version: plain only
        ({"environment": {}}, {}, []),  # no environment in this run: no tag
    ],
)
def test_environment(rule: dict[str, Any], context: dict[str, Any], expected: list[str]) -> None:
    assert tags([rule], **context) == expected


def test_git() -> None:
    assert tags([{"git": {}}], git=GIT) == ["0123456"]
    assert tags([{"git": {"sha_length": 12, "branch": True, "tag": True}}], git=GIT) == [
        "0123456789ab",
        "feature-Login_v2",  # sanitised branch
        "v1.2.3",
    ]
    assert tags([{"git": {}, "prefix": "sha-"}], git=GIT) == ["sha-0123456"]


def test_git_outside_checkout_and_detached() -> None:
    with pytest.raises(TagRuleError, match="not in a git checkout"):
        tags([{"git": {}}])
    detached = GitInfo(GIT.sha, None, None, 0, None)
    with pytest.raises(TagRuleError, match="detached"):
        tags([{"git": {"branch": True}}], git=detached)


def test_date_uses_the_one_clock_reading() -> None:
    assert tags([{"date": {}}]) == ["20261127"]
    assert tags([{"date": {"format": "%Y%m%d-%H%M%S"}}]) == ["20261127-040506"]
    assert tags([{"date": {"format": "%Y.%m.%d %H:%M"}}]) == ["2026.11.27-04-05"]


def test_raw_and_literal_templates() -> None:
    assert tags(["stable", {"raw": "{{ target }}-{{ short_sha }}"}], git=GIT) == [
        "stable",
        "api-0123456",
    ]
    assert tags(["v{{ major }}.{{ minor }}-{{ date }}"], version="4.5.6") == ["v4.5-20261127"]
    only_latest = planned(["latest", "1.0"])
    assert [(t.name, t.floating) for t in only_latest] == [("latest", True), ("1.0", False)]


def test_raw_with_a_value_this_run_lacks_names_it() -> None:
    with pytest.raises(TagRuleError, match="'short_sha' is undefined") as info:
        tags(["ok", {"raw": "b-{{ short_sha }}"}])
    assert info.value.index == 1


def test_rule_yielding_empty_tag_is_an_error() -> None:
    with pytest.raises(TagRuleError, match="empty tag"):
        tags([{"raw": "{{ env }}"}], environment="...")


def test_duplicates_keep_the_first() -> None:
    assert tags([{"semver": {}}, "latest", "1.2.3"], version="1.2.3") == [
        "1.2.3",
        "1.2",
        "1",
        "latest",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("feature/x", "feature-x"),
        ("-lead", "lead"),
        (".hidden", "hidden"),
        ("a b\tc", "a-b-c"),
        ("ü-nicode", "nicode"),
        ("x" * 200, "x" * 128),
        ("...", ""),
    ],
)
def test_sanitise(text: str, expected: str) -> None:
    assert sanitise(text) == expected


def floating(version: str) -> dict[str, PlannedTag]:
    return {t.name: t for t in planned([{"semver": {}}], version=version) if t.floating}


@pytest.mark.parametrize(
    ("existing", "version", "moves"),
    [
        # a backport of 1.4 after 2.0: moves 1 and 1.4, not latest
        (["2.0.0", "2.0", "2", "1.4.8", "1.4", "1", "latest"], "1.4.9", {"1.4", "1"}),
        # a new highest release moves everything
        (["1.4.8", "1.4", "1", "latest"], "2.0.0", {"2.0", "2", "latest"}),
        # an older patch of a line that already has a newer one moves nothing
        (["1.4.9", "1.4", "1", "latest"], "1.4.2", set()),
        # an empty registry: everything moves
        ([], "0.1.0", {"0.1", "0", "latest"}),
        # pre-releases in the registry do not count as higher
        (["2.0.0-rc.1", "1.0.0"], "1.1.0", {"1.1", "1", "latest"}),
        # republishing the same version moves its tags again
        (["1.2.3"], "1.2.3", {"1.2", "1", "latest"}),
    ],
)
def test_floating_tags_move_only_to_the_highest_of_their_line(
    existing: list[str], version: str, moves: set[str]
) -> None:
    decided = {name: should_move(tag, existing)[0] for name, tag in floating(version).items()}
    assert {name for name, move in decided.items() if move} == moves


def test_floating_with_prefix_compares_prefixed_tags() -> None:
    (tag,) = [
        t
        for t in planned([{"semver": {"full": True}, "prefix": "v"}], version="1.0.1")
        if t.name == "vlatest"
    ]
    assert should_move(tag, ["v2.0.0", "1.0.0"]) == (False, "2.0.0 is higher")
    assert should_move(tag, ["2.0.0", "v1.0.0"])[0]  # unprefixed tags are another line


def test_non_semver_floating_always_moves() -> None:
    (env,) = planned([{"environment": {"versioned": False}}], environment="staging")
    assert should_move(env, ["9.9.9"]) == (True, "")


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:acme/app.git", "https://github.com/acme/app"),
        ("https://user:s3cret@gitlab.example/acme/app.git", "https://gitlab.example/acme/app"),
        ("ssh://git@host.example/acme/app", "https://host.example/acme/app"),
        ("https://host.example/acme/app/", "https://host.example/acme/app"),
    ],
)
def test_public_url_drops_credentials(remote: str, url: str) -> None:
    assert public_url(remote) == url
