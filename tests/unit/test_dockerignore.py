""".dockerignore matching, against the test cases of moby/patternmatcher (the matcher
BuildKit vendors): the TestMatches table and its multi-pattern cases, run the way
BuildKit's context walk runs them (MatchesUsingParentResults, parents first), and the
folder exclusion cases. tests/integration/test_skip.py checks the same against what a
real BuildKit receives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mab.pipeline.inputs import context_entries
from mab.planning.dockerignore import Matcher, PatternError, read_patterns

EXACT, INEXACT, FAIL = "exact", "inexact", "fail"

CASES = [
    ("**", "file", EXACT),
    ("**/", "file", EXACT),
    ("**", "dir/file", EXACT),
    ("**/", "dir/file", EXACT),
    ("**/**", "dir/file", EXACT),
    ("dir/**", "dir/file", EXACT),
    ("dir/**", "dir/dir2/file", EXACT),
    ("**/dir", "dir", EXACT),
    ("**/dir", "dir/file", INEXACT),
    ("**/dir2/*", "dir/dir2/file", EXACT),
    ("**/dir2/**", "dir/dir2/dir3/file", EXACT),
    ("**file", "file", EXACT),
    ("**file", "dir/file", EXACT),
    ("**/file", "dir/file", EXACT),
    ("**file", "dir/dir/file", EXACT),
    ("**/file", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file.txt", EXACT),
    ("**/file*txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt*", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt2", "dir/dir/file.txt", FAIL),
    ("**/*.txt", "file.txt", EXACT),
    ("**/**/*.txt", "file.txt", EXACT),
    ("a**/*.txt", "a/file.txt", EXACT),
    ("a**/*.txt", "a/dir/file.txt", EXACT),
    ("a**/*.txt", "a/dir/dir/file.txt", EXACT),
    ("a/*.txt", "a/dir/file.txt", FAIL),
    ("a/*.txt", "a/file.txt", EXACT),
    ("a/*.txt**", "a/file.txt", EXACT),
    ("a[b-d]e", "ae", FAIL),
    ("a[b-d]e", "ace", EXACT),
    ("a[b-d]e", "aae", FAIL),
    ("a[^b-d]e", "aze", EXACT),
    (".*", ".foo", EXACT),
    (".*", "foo", FAIL),
    ("abc.def", "abcdef", FAIL),
    ("abc.def", "abc.def", EXACT),
    ("abc.def", "abcZdef", FAIL),
    ("abc?def", "abcZdef", EXACT),
    ("abc?def", "abcdef", FAIL),
    ("**/foo/bar", "foo/bar", EXACT),
    ("**/foo/bar", "dir/foo/bar", EXACT),
    ("**/foo/bar", "dir/dir2/foo/bar", EXACT),
    ("abc/**", "abc", FAIL),
    ("abc/**", "abc/def", EXACT),
    ("abc/**", "abc/def/ghi", EXACT),
    ("**/.foo", ".foo", EXACT),
    ("**/.foo", "bar.foo", FAIL),
    ("a(b)c/def", "a(b)c/def", EXACT),
    ("a(b)c/def", "a(b)c/xyz", FAIL),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", EXACT),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", EXACT),
    ("a\\\\", "a\\", EXACT),
    ("a\\*b", "a*b", EXACT),
    # from Go's filepath.Match tests, as patternmatcher runs them
    ("*c", "abc", EXACT),
    ("a*/b", "abc/b", EXACT),
    ("a*/b", "a/c/b", FAIL),
    ("a*b?c*x", "abxbbxdbxebxczzx", EXACT),
    ("a*b?c*x", "abxbbxdbxebxczzy", FAIL),
    ("ab[^e-g]", "abc", EXACT),
    ("a?b", "a☺b", EXACT),
    ("a???b", "a☺b", FAIL),
    ("a?b", "a/b", FAIL),
    ("*x", "xxx", EXACT),
]
MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", FAIL),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", EXACT),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", FAIL),
    (["docs", "!docs/README.md"], "docs/README.md", FAIL),
    (["docs/", "!docs/README.md"], "docs/README.md", FAIL),
    (["docs/*", "!docs/README.md"], "docs/README.md", FAIL),
    (["!fileutils.go", "*.go"], "fileutils.go", EXACT),
    (["*.go", "!fileutils.go"], "fileutils.go", FAIL),
]


def excluded(patterns: list[str], path: str) -> bool:
    """As BuildKit's context walk asks: each parent directory first, then the path."""
    matcher = Matcher.from_patterns(patterns)
    parent: list[bool] | None = None
    parts = path.split("/")
    for i in range(1, len(parts)):
        _, parent = matcher.matches("/".join(parts[:i]), parent)
    return matcher.matches(path, parent)[0]


@pytest.mark.parametrize(("pattern", "text", "expect"), CASES)
def test_patternmatcher_table(pattern: str, text: str, expect: str) -> None:
    assert excluded([pattern], text) == (expect != FAIL)


@pytest.mark.parametrize(("patterns", "text", "expect"), MULTI)
def test_patternmatcher_multi(patterns: list[str], text: str, expect: str) -> None:
    assert excluded(patterns, text) == (expect != FAIL)


def test_bad_patterns_are_refused() -> None:
    for bad in (["!"], ["["], ["a[b"]):
        with pytest.raises(PatternError):
            Matcher.from_patterns(bad)


def test_read_patterns_like_ignorefile() -> None:
    text = "\ufeff# comment\n  /abs/path  \n!  keep.txt\n\n./a/../b\n"
    assert read_patterns(text) == ["abs/path", "!keep.txt", "b"]


def test_context_walk_sends_what_buildkit_sends(tmp_path: Path) -> None:
    for rel in ("a.txt", "build/x.o", "build/keep/me.txt", "logs/1.log", "src/app.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / "empty").mkdir()
    os.symlink("a.txt", tmp_path / "link")
    patterns = ["build", "!build/keep/me.txt", "logs", "**/*.pyc"]
    sent = [rel for rel, _ in context_entries(tmp_path, Matcher.from_patterns(patterns))]
    assert sent == [
        "a.txt",
        "build",  # excluded, but a re-included file below brings its parents
        "build/keep",
        "build/keep/me.txt",
        "empty",
        "link",
        "src",
        "src/app.py",
    ]
