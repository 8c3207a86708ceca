"""Tag rules in everyday CI: sandboxed templates, runs without a version, pull requests,
tag pipelines, long names, pre-releases, build metadata, and clean source URLs."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from mab.config.models import TagItem
from mab.planning import git as gitinfo
from mab.planning.git import CIRef, GitInfo, ci_ref, public_url
from mab.planning.labels import oci_annotations
from mab.planning.tags import (
    MAX_TAG,
    TagContext,
    TagRuleError,
    TagSet,
    should_move,
    tag_set,
)
from mab.proc import run

RULES: TypeAdapter[list[TagItem]] = TypeAdapter(list[TagItem])
NOW = datetime(2026, 11, 27, 4, 5, 6, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"
PAYLOAD = "{{ cycler.__init__.__globals__.os.system('touch PWNED') }}"


def made(rules: list[Any], **context: Any) -> TagSet:
    return tag_set(RULES.validate_python(rules), TagContext(now=NOW, **context), "api")


def names(rules: list[Any], **context: Any) -> list[str]:
    return [t.name for t in made(rules, **context).tags]


def info(**fields: Any) -> GitInfo:
    base: dict[str, Any] = {
        "sha": SHA,
        "branch": None,
        "tag": None,
        "commit_time": 0,
        "source_url": None,
    }
    return GitInfo(**{**base, **fields})


# 1. Sandbox -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        {"raw": f"x{PAYLOAD}"},
        f"x{PAYLOAD}",  # a literal with {{ }} is a template too
        {"raw": "{{ target.__class__.__mro__[1].__subclasses__() }}"},
        {"raw": "{{ (target.__class__.__base__.__subclasses__() | length) }}"},
        {"raw": "{{ joiner.__init__.__globals__.os.getcwd() }}"},
    ],
)
def test_templates_cannot_reach_python(
    rule: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TagRuleError) as raised:
        made(["ok", rule])
    assert raised.value.index == 1
    assert raised.value.rule in ("raw", "literal")
    assert not (tmp_path / "PWNED").exists()


def test_templates_cannot_build_a_huge_value() -> None:
    with pytest.raises(TagRuleError, match="too long"):
        made([{"raw": "{{ 'x' * 10**7 }}"}])
    with pytest.raises(TagRuleError, match="too large"):
        made([{"raw": "{{ 9 ** 999999 }}"}])


def test_a_template_failure_is_the_rules_error() -> None:
    with pytest.raises(TagRuleError, match="ZeroDivisionError") as raised:
        made([{"raw": "v{{ 1 // 0 }}"}])
    assert raised.value.rule == "raw"


def test_values_from_git_and_the_environment_are_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A branch, tag or --env that looks like a template is text in the tag, not code."""
    monkeypatch.chdir(tmp_path)
    git = info(branch=PAYLOAD, tag="{{ 7 * 7 }}", ref="branch")
    rules = [
        {"raw": "b-{{ branch }}"},
        {"raw": "t-{{ git_tag }}-{{ env }}"},
        {"git": {"sha": False, "branch": True, "tag": True}},
        {"environment": {"versioned": False}},
    ]
    result = names(rules, git=git, environment="{{ 6 * 7 }}")
    assert not (tmp_path / "PWNED").exists()
    assert not any("49" in name or "42" in name for name in result)
    assert result[1] == "t--7-7---6-7-"  # braces and spaces sanitised, nothing computed


# 2. A semver rule with no version ---------------------------------------------------


def test_semver_without_version_makes_no_tag_and_says_so_once(tmp_path: Path) -> None:
    result = made(
        [{"semver": {}}, "edge", {"semver": {"latest": False}, "prefix": "v"}],
        project_dir=tmp_path,
    )
    assert [t.name for t in result.tags] == ["edge"]
    (note,) = result.notes
    assert "semver rule: no version" in note and "--version" in note and "VERSION" in note


def test_semver_without_version_hint_follows_the_source() -> None:
    (note,) = made([{"semver": {"source": "git"}}, "x"]).notes
    assert "tag HEAD vX.Y.Z" in note and "--version" not in note


def test_semver_file_content_is_not_quoted(tmp_path: Path) -> None:
    (tmp_path / "VERSION").write_text("ghp_abcdefSECRET\n")
    with pytest.raises(TagRuleError) as raised:
        made([{"semver": {"source": "file"}}], project_dir=tmp_path)
    assert "SECRET" not in str(raised.value)
    assert "VERSION holds no semver version" in str(raised.value)


# 3. Pull requests ---------------------------------------------------------------------


FORK_PR = {
    "GITHUB_EVENT_NAME": "pull_request",
    "GITHUB_HEAD_REF": "master",  # the contributor's branch, maybe a fork's
    "GITHUB_BASE_REF": "main",
    "GITHUB_REF": "refs/pull/42/merge",
    "GITHUB_REF_NAME": "42/merge",
    "GITHUB_REF_TYPE": "branch",
}


def test_ci_ref_pull_requests(tmp_path: Path) -> None:
    assert ci_ref(FORK_PR) == CIRef("pull_request", number="42")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": 7, "pull_request": {"number": 7}}))
    target = {
        "GITHUB_EVENT_NAME": "pull_request_target",
        "GITHUB_REF": "refs/heads/main",  # the base branch: never a tag for the PR
        "GITHUB_REF_NAME": "main",
        "GITHUB_EVENT_PATH": str(event),
    }
    assert ci_ref(target) == CIRef("pull_request", number="7")
    gitlab = {"CI_MERGE_REQUEST_IID": "9", "CI_COMMIT_REF_NAME": "master"}
    assert ci_ref(gitlab) == CIRef("pull_request", number="9")


def test_pull_request_gets_no_branch_tag_unless_asked() -> None:
    pr = info(ref="pull_request", pull_request="42")
    result = made([{"git": {"branch": True}}], git=pr)
    assert [t.name for t in result.tags] == ["0123456"]
    assert any("pull-request build gets no branch tag" in n for n in result.notes)
    asked = made([{"git": {"branch": True, "pull_request": True}}], git=pr)
    assert [(t.name, t.floating) for t in asked.tags] == [("0123456", False), ("pr-42", True)]
    assert asked.notes == ()
    # on a branch build the pull_request option makes nothing
    main = info(branch="main")
    assert names([{"git": {"branch": True, "pull_request": True}}], git=main) == [
        "0123456",
        "main",
    ]


# 4. Tag checkouts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {"GITHUB_REF_TYPE": "tag", "GITHUB_REF": "refs/tags/v1.2.3", "GITHUB_REF_NAME": "v1.2.3"},
        {"GITHUB_REF": "refs/tags/v1.2.3"},
        {"CI_COMMIT_TAG": "v1.2.3", "CI_COMMIT_REF_NAME": "v1.2.3"},
    ],
)
def test_ci_tag_pipeline_is_a_tag_not_a_branch(env: dict[str, str]) -> None:
    assert ci_ref(env) == CIRef("tag", "v1.2.3")


def test_ci_branch_pipeline() -> None:
    github = {
        "GITHUB_REF_TYPE": "branch",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
    }
    assert ci_ref(github) == CIRef("branch", "main")
    assert ci_ref({"CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main"}) == CIRef(
        "branch", "main"
    )
    assert ci_ref({}) is None


def test_branch_rule_gives_nothing_on_a_tag_build() -> None:
    rules = [{"git": {"branch": True, "tag": True}}]
    in_ci = info(tag="v1.2.3", ref="tag")
    assert names(rules, git=in_ci) == ["0123456", "v1.2.3"]
    detached_at_tag = info(tag="v1.2.3")  # no CI variables: the checkout says it
    assert names(rules, git=detached_at_tag) == ["0123456", "v1.2.3"]
    with pytest.raises(TagRuleError, match="detached"):
        names(rules, git=info())


def _repo(path: Path) -> Path:
    def git(*args: str) -> None:
        run(["git", "-c", "user.name=t", "-c", "user.email=t@example.test", *args], cwd=path)

    git("init", "-q", "-b", "master")
    git("commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", "one")
    git("tag", "v1.2.3")
    git("remote", "add", "origin", "HTTPS://robot:p@ss@git.example.com/acme/app.git")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return _repo(tmp_path)


def test_read_on_a_fork_pull_request_from_master(repo: Path) -> None:
    read = gitinfo.read(repo, FORK_PR)
    assert read is not None
    assert read.branch is None and read.kind == "pull_request" and read.pull_request == "42"
    assert read.source_url == "https://git.example.com/acme/app"


def test_read_on_a_ci_tag_pipeline_and_a_local_tag_checkout(repo: Path) -> None:
    ci = {"GITHUB_REF_TYPE": "tag", "GITHUB_REF": "refs/tags/v1.2.3", "GITHUB_REF_NAME": "v1.2.3"}
    in_ci = gitinfo.read(repo, ci)
    assert in_ci is not None and in_ci.kind == "tag" and in_ci.branch is None
    assert in_ci.tag == "v1.2.3"
    run(["git", "checkout", "-q", "--detach", "v1.2.3"], cwd=repo)
    local = gitinfo.read(repo, {})
    assert local is not None and local.kind == "tag" and local.branch is None
    assert names([{"git": {"sha": False, "branch": True}}], git=local) == []


def test_read_on_a_branch(repo: Path) -> None:
    local = gitinfo.read(repo, {})
    assert local is not None and local.branch == "master" and local.kind == "branch"
    # GITHUB_HEAD_REF alone (no pull-request event) names no branch
    run(["git", "checkout", "-q", "--detach"], cwd=repo)
    run(["git", "tag", "-d", "v1.2.3"], cwd=repo)
    detached = gitinfo.read(repo, {"GITHUB_HEAD_REF": "master"})
    assert detached is not None and detached.kind == "detached" and detached.branch is None


def test_read_defaults_to_the_process_environment(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "CI_", "CHANGE_", "TAG_NAME", "BRANCH_NAME")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CI_MERGE_REQUEST_IID", "5")
    read = gitinfo.read(repo)
    assert read is not None and read.pull_request == "5" and read.branch is None


# 5. The 128-character cut ------------------------------------------------------------


def test_long_tags_keep_prefix_and_suffix_and_stay_distinct() -> None:
    git = info(branch="feature/" + "x" * 200)
    rules = [
        {"git": {"sha": False, "branch": True}, "prefix": "pre-", "suffix": "-arm64"},
        {"git": {"sha": False, "branch": True}, "prefix": "pre-", "suffix": "-amd64"},
    ]
    result = made(rules, git=git)
    arm, amd = (t.name for t in result.tags)
    assert len(arm) == len(amd) == MAX_TAG
    assert arm.startswith("pre-feature-xxx") and arm.endswith("-arm64")
    assert amd.startswith("pre-feature-xxx") and amd.endswith("-amd64")
    assert len(result.notes) == 2 and all("cut to" in n for n in result.notes)


def test_long_tags_that_differ_only_past_the_cut_differ() -> None:
    one = names([{"raw": "{{ branch }}"}], git=info(branch="b" * 150 + "-one"))
    two = names([{"raw": "{{ branch }}"}], git=info(branch="b" * 150 + "-two"))
    assert one != two and len(one[0]) == len(two[0]) == MAX_TAG
    short = names([{"raw": "{{ branch }}"}], git=info(branch="b" * MAX_TAG))
    assert short == ["b" * MAX_TAG]  # at the limit: not cut


def test_a_merged_tag_of_another_kind_is_said() -> None:
    result = made([{"semver": {}}, "latest"], version="1.2.3")
    assert [t.name for t in result.tags] == ["1.2.3", "1.2", "1", "latest"]
    (note,) = result.notes
    assert "latest" in note and "literal" in note


def test_affixes_too_long_for_any_tag_are_an_error() -> None:
    with pytest.raises(TagRuleError, match="no room"):
        made([{"raw": "x" * 10, "prefix": "p" * 70, "suffix": "s" * 70}])


# 6. Pre-release with full: false ------------------------------------------------------


def test_prerelease_with_full_false_falls_back_to_the_full_version() -> None:
    result = made([{"semver": {"full": False}}], version="1.3.0-rc.1")
    ((name, floating, rule),) = [(t.name, t.floating, t.rule) for t in result.tags]
    assert (name, floating) == ("1.3.0-rc.1", False)
    assert "pre-release" in rule
    assert names([{"semver": {"full": False}}], version="1.3.0") == ["1.3", "1", "latest"]


# 7. Build metadata ----------------------------------------------------------------------


def test_build_metadata_is_dropped_from_tags() -> None:
    assert names([{"semver": {}}], version="v1.2.3+build.5") == ["1.2.3", "1.2", "1", "latest"]
    assert names([{"semver": {}}], version="1.3.0-rc.1+b7") == ["1.3.0-rc.1"]
    assert names(
        [{"environment": {}}, {"raw": "r{{ version }}"}], version="1.2.3+b5", environment="qa"
    ) == ["qa", "1.2.3-qa", "r1.2.3"]
    latest = next(t for t in made([{"semver": {}}], version="1.2.3+b5").tags if t.name == "latest")
    assert latest.version == "1.2.3"
    assert should_move(latest, ["1.2.3", "1.2.2"]) == (True, "")


# 8. Source URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("HTTPS://robot:pw@git.example.com/x.git", "https://git.example.com/x"),
        ("https://robot:p@ss@git.example.com/acme/app.git", "https://git.example.com/acme/app"),
        ("https://robot:p:w@git.example.com/acme/app", "https://git.example.com/acme/app"),
        ("HtTp://User@Git.Example.com:8080/acme/app.git", "http://git.example.com:8080/acme/app"),
        ("ssh://git@host.example:2222/acme/app.git", "https://host.example/acme/app"),
        ("SSH://git@host.example/acme/app", "https://host.example/acme/app"),
        ("git://host.example/acme/app.git", "https://host.example/acme/app"),
        ("git+ssh://git@host.example/acme/app", "https://host.example/acme/app"),
        ("git@github.com:acme/app.git", "https://github.com/acme/app"),
        ("robot:p@ss@git.example.com:acme/app.git", "https://git.example.com/acme/app"),
        ("host.example:acme/app", "https://host.example/acme/app"),
        (
            "https://git.example.com/acme/app.git?private_token=abc#x",
            "https://git.example.com/acme/app",
        ),
        ("https://[2001:db8::1]:8443/acme/app", "https://[2001:db8::1]:8443/acme/app"),
    ],
)
def test_public_url_forms(remote: str, url: str) -> None:
    assert public_url(remote) == url


@pytest.mark.parametrize(
    "remote",
    [
        "/srv/git/app.git",
        "../app",
        "file:///srv/git/app.git",
        r"C:\repos\app",
        "https://robot:pa#ss@git.example.com/acme/app",  # '#' unencoded: the tail would show
        "https://robot:pa/ss@git.example.com/acme/app",  # '/' unencoded, likewise
        "https://git.example.com:port/acme/app",
        "persistent-https://git.example.com/acme/app",
    ],
)
def test_public_url_is_none_for_local_or_doubtful_remotes(remote: str) -> None:
    assert public_url(remote) is None


def test_source_label_never_carries_userinfo() -> None:
    git = info(source_url="HTTPS://robot:S3cret@git.example.com/acme/app.git")
    labels = oci_annotations("api", TagContext(now=NOW, git=git), "1.2.3+build.5")
    assert labels["org.opencontainers.image.source"] == "https://git.example.com/acme/app"
    assert labels["org.opencontainers.image.version"] == "1.2.3+build.5"
    assert not any("S3cret" in v or "robot" in v for v in labels.values())
