"""What git says about the source being built: commit, branch, tag, time, origin.

Read once per run by the CLI and handed to the pure tag and label computation. CI
systems check out a detached HEAD, so the branch falls back to their variables.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mab.proc import ProcessFailed, run

_CI_BRANCH_VARS = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME", "BRANCH_NAME")


@dataclass(frozen=True)
class GitInfo:
    sha: str
    branch: str | None
    tag: str | None
    commit_time: int
    source_url: str | None

    @property
    def short_sha(self) -> str:
        return self.sha[:7]


def _git(cwd: Path, *args: str) -> str | None:
    try:
        return run(["git", *args], cwd=cwd, timeout=15).strip() or None
    except ProcessFailed:
        return None


def read(path: Path) -> GitInfo | None:
    """Git facts for the work tree holding *path*, or None outside a git checkout."""
    sha = _git(path, "rev-parse", "HEAD")
    if sha is None:
        return None
    branch = _git(path, "symbolic-ref", "--short", "-q", "HEAD")
    if branch is None:
        branch = next((os.environ[v] for v in _CI_BRANCH_VARS if os.environ.get(v)), None)
    tag = _git(path, "describe", "--tags", "--exact-match", "HEAD")
    when = _git(path, "log", "-1", "--format=%ct", "HEAD")
    remote = _git(path, "config", "--get", "remote.origin.url")
    return GitInfo(
        sha=sha,
        branch=branch,
        tag=tag,
        commit_time=int(when) if when and when.isdigit() else 0,
        source_url=public_url(remote) if remote else None,
    )


def public_url(remote: str) -> str:
    """An https form of a git remote, with any user name or token removed.

    ``git@github.com:acme/app.git`` -> ``https://github.com/acme/app``;
    ``https://user:token@host/acme/app.git`` -> ``https://host/acme/app``.
    """
    url = remote.strip()
    scp = re.match(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$", url)
    if scp and "://" not in url:
        url = f"https://{scp.group(1)}/{scp.group(2)}"
    url = re.sub(r"^(ssh|git)://", "https://", url)
    url = re.sub(r"^(https?://)[^@/]*@", r"\1", url)
    return url.removesuffix(".git").rstrip("/")
