"""What git says about the source being built: commit, branch, tag, time, origin.

Read once per run by the CLI and handed to the pure tag and label computation. CI
systems check out a detached HEAD, so what was built (a branch, a tag, a pull request)
comes from their variables (``ci_ref``), and those win over the checkout: a pull request
or a tag pipeline has no branch, whatever ``GITHUB_HEAD_REF`` or a local branch says.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from mab.proc import ProcessFailed, run

RefKind = Literal["branch", "tag", "pull_request", "detached"]

_PR_EVENTS = ("pull_request", "pull_request_target")
_GITHUB_PR_REF = re.compile(r"^refs/pull/(\d+)/")
_EVENT_FILE_MAX = 16 * 1024 * 1024
# Remote schemes that name a host a browser can reach over https.
_WEB_SCHEMES = frozenset({"https", "http", "ssh", "git", "git+ssh", "ssh+git", "git+https"})


@dataclass(frozen=True)
class GitInfo:
    sha: str
    branch: str | None  # None on a pull request, a tag build or a detached HEAD
    tag: str | None
    commit_time: int
    source_url: str | None
    # What was built; None: derived from branch and tag (see ``kind``).
    ref: RefKind | None = None
    pull_request: str | None = None  # the pull/merge request number, when known

    @property
    def short_sha(self) -> str:
        return self.sha[:7]

    @property
    def kind(self) -> RefKind:
        if self.ref is not None:
            return self.ref
        if self.branch:
            return "branch"
        return "tag" if self.tag else "detached"


@dataclass(frozen=True)
class CIRef:
    """What a CI system says it is building, from its environment variables."""

    kind: Literal["branch", "tag", "pull_request"]
    name: str | None = None  # the branch or tag name
    number: str | None = None  # the pull/merge request number


def ci_ref(env: Mapping[str, str]) -> CIRef | None:
    """The ref a CI run builds (GitHub Actions, GitLab CI, Jenkins), or None outside CI.

    Pull requests first: a PR from a fork's ``master`` must never look like ``master``.
    """
    return _github(env) or _gitlab(env) or _jenkins(env) or _generic(env)


def _github(env: Mapping[str, str]) -> CIRef | None:
    ref = env.get("GITHUB_REF", "")
    if env.get("GITHUB_EVENT_NAME") in _PR_EVENTS:
        found = _GITHUB_PR_REF.match(ref)
        return CIRef("pull_request", number=found.group(1) if found else _event_number(env))
    name = env.get("GITHUB_REF_NAME") or None
    if env.get("GITHUB_REF_TYPE") == "tag" or ref.startswith("refs/tags/"):
        return CIRef("tag", name or ref.removeprefix("refs/tags/"))
    if env.get("GITHUB_REF_TYPE") == "branch" or ref.startswith("refs/heads/"):
        return CIRef("branch", name or ref.removeprefix("refs/heads/"))
    return None


def _event_number(env: Mapping[str, str]) -> str | None:
    """The PR number from the event payload (``pull_request_target`` has it nowhere else)."""
    path = Path(env.get("GITHUB_EVENT_PATH") or "")
    try:
        if not path.is_file() or path.stat().st_size > _EVENT_FILE_MAX:
            return None
        event = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(event, dict):
        return None
    pull = event.get("pull_request")
    number = event.get("number") or (pull.get("number") if isinstance(pull, dict) else None)
    return str(number) if isinstance(number, int) else None


def _gitlab(env: Mapping[str, str]) -> CIRef | None:
    for var in ("CI_MERGE_REQUEST_IID", "CI_EXTERNAL_PULL_REQUEST_IID"):
        if env.get(var):
            return CIRef("pull_request", number=env[var])
    if env.get("CI_COMMIT_TAG"):
        return CIRef("tag", env["CI_COMMIT_TAG"])
    name = env.get("CI_COMMIT_BRANCH") or env.get("CI_COMMIT_REF_NAME")
    return CIRef("branch", name) if name else None


def _jenkins(env: Mapping[str, str]) -> CIRef | None:
    if env.get("CHANGE_ID"):
        return CIRef("pull_request", number=env["CHANGE_ID"])
    if env.get("TAG_NAME"):
        return CIRef("tag", env["TAG_NAME"])
    return None


def _generic(env: Mapping[str, str]) -> CIRef | None:
    return CIRef("branch", env["BRANCH_NAME"]) if env.get("BRANCH_NAME") else None


def _git(cwd: Path, *args: str) -> str | None:
    try:
        return run(["git", *args], cwd=cwd, timeout=15).strip() or None
    except ProcessFailed:
        return None


def read(path: Path, env: Mapping[str, str] | None = None) -> GitInfo | None:
    """Git facts for the work tree holding *path*, or None outside a git checkout.

    *env* (default: ``os.environ``) supplies the CI variables.
    """
    sha = _git(path, "rev-parse", "HEAD")
    if sha is None:
        return None
    local_branch = _git(path, "symbolic-ref", "--short", "-q", "HEAD")
    tag = _git(path, "describe", "--tags", "--exact-match", "HEAD")
    when = _git(path, "log", "-1", "--format=%ct", "HEAD")
    remote = _git(path, "config", "--get", "remote.origin.url")
    ci = ci_ref(os.environ if env is None else env)
    kind, branch, number = _what_was_built(ci, local_branch, tag)
    if ci is not None and ci.kind == "tag":
        tag = tag or ci.name  # a shallow CI clone may lack the tag object
    return GitInfo(
        sha=sha,
        branch=branch,
        tag=tag,
        commit_time=int(when) if when and when.isdigit() else 0,
        source_url=public_url(remote) if remote else None,
        ref=kind,
        pull_request=number,
    )


def _what_was_built(
    ci: CIRef | None, local_branch: str | None, tag: str | None
) -> tuple[RefKind, str | None, str | None]:
    """(kind, branch, PR number): a CI pull request or tag wins over the checkout; a
    checked-out branch wins over a CI branch variable; a detached HEAD at a tag is a tag."""
    if ci is not None and ci.kind != "branch":
        return ci.kind, None, ci.number
    branch = local_branch or (ci.name if ci else None)
    if branch:
        return "branch", branch, None
    return ("tag" if tag else "detached"), None, None


def public_url(remote: str) -> str | None:
    """An https form of a git remote with no user name, password or token, or None
    when the remote is no web address (a local path, ``file://``) or is too malformed
    to be sure nothing secret is left in it.

    ``git@github.com:acme/app.git`` -> ``https://github.com/acme/app``;
    ``HTTPS://user:p@ss@host/acme/app.git`` -> ``https://host/acme/app``.
    """
    text = remote.strip()
    scp = _scp(text)
    if scp is not None:
        host, path = scp
        return _assemble("https", host, None, "/" + path)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _WEB_SCHEMES or not parts.hostname:
        return None
    if "@" in f"{parts.path}{parts.query}{parts.fragment}":
        return None  # an unencoded '/', '?' or '#' in a password: its tail would show
    web = "http" if scheme == "http" else "https"
    return _assemble(web, parts.hostname, port if web == scheme else None, parts.path)


def _scp(text: str) -> tuple[str, str] | None:
    """(host, path) of git's scp-like form ``[user@]host:path``, else None."""
    if "://" in text:
        return None
    head = text.split("/", 1)[0]
    if ":" not in head:
        return None  # a local path
    rest = text[head.rfind("@") + 1 :]  # the user (and any password) dropped
    host, _, path = rest.partition(":")
    if not host or "@" in path or len(host) == 1:  # 'C:\\x' is a Windows path
        return None
    return host.lower(), path.lstrip("/")


def _assemble(scheme: str, host: str, port: int | None, path: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    if port is not None:
        shown = f"{shown}:{port}"
    tail = path.rstrip("/").removesuffix(".git").rstrip("/")
    return f"{scheme}://{shown}{tail}"
