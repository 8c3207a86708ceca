"""CI generation: the build matrix, and GitHub Actions / GitLab CI files that run mab.

Pure: from a validated builds.yaml (its targets, platforms, ``registries:`` and ``ci:``
sections) to plain data and YAML text. No printing, no file writes (mab.cli.ci does both).

A generated pipeline is a split build: one job per platform runs
``mab build --platform P --push-by-digest --digests-out digests`` on a runner of that CPU
(QEMU set up only where the runner is not native), uploads its digest files, and one merge
job downloads them all and runs ``mab merge --digests digests``, which assembles, verifies
and tags the image indexes. Registry credentials are named, never written: the jobs log in
with ``mab login HOST``, which reads the environment variables builds.yaml's
``registries:`` entry names, and the workflow maps those from CI secrets.

Planning here reads the configuration directly, not ``make_plan``: a workflow does not
depend on this run's tags (a semver rule without a version must not stop generation).

The jobs install exactly the mab that generated them: ``pip install mab-build==VERSION``
by default, or ``ci.install`` (e.g. a git URL pinned to a commit). The distribution is
named ``mab-build`` because ``mab`` on PyPI is an unrelated project; :func:`install_problem`
is the check builds.yaml's ``ci.install`` must pass.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from mab.config.install import (
    _GIT_COMMIT_RE,
    DISTRIBUTION,
    _named_requirements,
    default_install,
    running_version,
)
from mab.config.models import BuildsConfig, CIConfig, RegistryAuth
from mab.config.project import Project
from mab.planning.plan import selection
from mab.platforms import Platform

Per = Literal["platform", "target-platform"]
Provider = Literal["github", "gitlab"]

DEFAULT_RUNNERS: dict[str, str] = {
    "linux/amd64": "ubuntu-24.04",
    "linux/arm64": "ubuntu-24.04-arm",
}
FALLBACK_RUNNER = "ubuntu-24.04"
DEFAULT_GITLAB_TAGS: dict[str, tuple[str, ...]] = {
    "linux/amd64": ("saas-linux-small-amd64",),
    "linux/arm64": ("saas-linux-small-arm64",),
}
FALLBACK_GITLAB_TAGS = ("saas-linux-small-amd64",)
DEFAULT_PATHS: dict[Provider, str] = {
    "github": ".github/workflows/mab.yml",
    "gitlab": ".gitlab-ci.yml",
}

DIGESTS_DIR = "digests"
ARTIFACT_PREFIX = "mab-digests-"
REPORT_FILE = "mab-report.json"
SUMMARY_FILE = "mab-summary.md"  # GitLab; GitHub appends to $GITHUB_STEP_SUMMARY
BINFMT_IMAGE = "tonistiigi/binfmt:latest"

# Actions the GitHub workflow uses: the first major of each that runs on node24 (node20
# actions are deprecated on GitHub's runners; actionlint flags them).
CHECKOUT = "actions/checkout@v5"
SETUP_PYTHON = "actions/setup-python@v6"
SETUP_QEMU = "docker/setup-qemu-action@v4"
SETUP_BUILDX = "docker/setup-buildx-action@v4"
GHA_RUNTIME = "crazy-max/ghaction-github-runtime@v3"  # exposes the cache API to buildx
UPLOAD = "actions/upload-artifact@v6"
DOWNLOAD = "actions/download-artifact@v7"

# Words in a runner label or tag that tell its CPU (``ubuntu-24.04-arm``,
# ``saas-linux-small-arm64``, ``[self-hosted, linux, riscv64]``). A runner whose labels say
# none of these is taken as amd64, the CPU of GitHub's and GitLab's default runners.
_ARCH_WORDS = {
    "arm64": "arm64",
    "aarch64": "arm64",
    "arm": "arm64",  # GitHub's hosted ubuntu-*-arm runners
    "amd64": "amd64",
    "x64": "amd64",
    "x86_64": "amd64",
    "riscv64": "riscv64",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
# What a runner runs without emulation, besides its own architecture.
_ALSO_NATIVE = {"amd64": frozenset({"386"})}
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


# --- how the jobs install mab: the rules live in mab.config.install -----------------------


def install_command(ci: CIConfig) -> str:
    return ci.install if ci.install is not None else default_install()


def _install_notes(ci: CIConfig, notes: _Notes) -> None:
    if ci.install is None:
        version = running_version()
        if "+" in version or ".dev" in version:
            notes.add(
                f"the jobs install {DISTRIBUTION}=={version}, a development version no "
                "package index has: set ci.install to a source you control, e.g. "
                'pip install "git+https://github.com/ORG/mab@COMMIT"'
            )
        return
    version = running_version()
    for word, name, rest in _named_requirements(ci.install):
        pinned = re.sub(r"^===?\s*|\s*;.*$", "", rest, flags=re.S)
        if name == DISTRIBUTION and pinned != version:
            notes.add(
                f"ci.install installs {word}, but this is mab {version}: the jobs run a "
                "workflow written for another version; regenerate it with that one, or "
                "pin this one"
            )
    for url in re.findall(r"git\+[^\s'\"]+", ci.install):
        if not _GIT_COMMIT_RE.search(url.rsplit("/", 1)[-1]):
            notes.add(
                f"ci.install installs {url} without a commit: each job gets whatever that "
                "branch or tag holds when it runs; pin one (URL@COMMIT)"
            )


# --- selection and the matrix ---------------------------------------------------------------


def select(
    config: BuildsConfig, targets: Sequence[str] = (), platforms: Sequence[str] = ()
) -> list[tuple[str, tuple[Platform, ...]]]:
    """The selected targets with the platforms each builds, in builds.yaml's order."""
    return [(name, chosen) for name, _, chosen in selection(config, targets, platforms)]


def runner_arch(labels: Iterable[str]) -> str:
    """The CPU a runner has, read from the words of its label(s); amd64 when none says."""
    for label in labels:
        for word in re.split(r"[^a-z0-9_]+", label.lower()):
            if word in _ARCH_WORDS:
                return _ARCH_WORDS[word]
    return "amd64"


def is_native(platform: Platform, labels: Iterable[str]) -> bool:
    arch = runner_arch(labels)
    return platform.arch == arch or platform.arch in _ALSO_NATIVE.get(arch, frozenset())


def github_runner(ci: CIConfig, platform: Platform) -> str | list[str]:
    configured = ci.runners.get(str(platform))
    if configured is not None:
        return list(configured) if isinstance(configured, list) else configured
    return DEFAULT_RUNNERS.get(str(platform), FALLBACK_RUNNER)


def gitlab_tags(ci: CIConfig, platform: Platform) -> list[str]:
    configured = ci.gitlab.runner_tags.get(str(platform))
    if configured is not None:
        return list(configured)
    return list(DEFAULT_GITLAB_TAGS.get(str(platform), FALLBACK_GITLAB_TAGS))


def _labels(runner: str | Sequence[str]) -> list[str]:
    return [runner] if isinstance(runner, str) else list(runner)


def needs_qemu(ci: CIConfig, platform: Platform, runner: str | Sequence[str]) -> bool:
    forced = ci.qemu.get(str(platform))
    return forced if forced is not None else not is_native(platform, _labels(runner))


@dataclass(frozen=True)
class MatrixEntry:
    """One CI build job: a platform, the targets it builds, where it runs."""

    platform: Platform
    targets: tuple[str, ...]
    runner: str | tuple[str, ...]
    qemu: bool
    per_target: bool = False

    @property
    def id(self) -> str:
        """Unique among the entries and safe in file, job and artifact names."""
        return f"{self.targets[0]}-{self.platform.slug}" if self.per_target else self.platform.slug

    @property
    def artifact(self) -> str:
        return ARTIFACT_PREFIX + self.id

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "name": f"{self.targets[0]} {self.platform}" if self.per_target else str(self.platform),
            "platform": str(self.platform),
            "slug": self.platform.slug,
            "targets": list(self.targets),
        }
        if self.per_target:
            data["target"] = self.targets[0]
        data |= {
            "runner": self.runner if isinstance(self.runner, str) else list(self.runner),
            "qemu": self.qemu,
            "artifact": self.artifact,
        }
        return data


def matrix(
    config: BuildsConfig,
    per: Per = "platform",
    targets: Sequence[str] = (),
    platforms: Sequence[str] = (),
) -> list[MatrixEntry]:
    """The build jobs: one per distinct platform (with the targets that declare it), or
    one per target x platform. Runners are ``ci.runners`` (GitHub labels)."""
    chosen = select(config, targets, platforms)
    ci = config.ci

    def entry(platform: Platform, names: tuple[str, ...]) -> MatrixEntry:
        runner = github_runner(ci, platform)
        return MatrixEntry(
            platform=platform,
            targets=names,
            runner=runner if isinstance(runner, str) else tuple(runner),
            qemu=needs_qemu(ci, platform, runner),
            per_target=per == "target-platform",
        )

    if per == "target-platform":
        return [entry(p, (name,)) for name, plats in chosen for p in plats]
    order: dict[Platform, list[str]] = {}
    for name, plats in chosen:
        for p in plats:
            order.setdefault(p, []).append(name)
    return [entry(p, tuple(names)) for p, names in order.items()]


def matrix_json(entries: Sequence[MatrixEntry]) -> list[dict[str, Any]]:
    """What ``strategy.matrix.include`` takes (``fromJSON``)."""
    return [e.to_dict() for e in entries]


# --- generation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    """A CI file's text, its build jobs, and what the user should know about it."""

    provider: Provider
    text: str
    jobs: tuple[MatrixEntry, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Options:
    """How the generated file calls mab: ``file`` is builds.yaml relative to the
    repository root (where CI jobs start); ``command`` regenerates the file."""

    file: str = "builds.yaml"
    registry: str = "localhost:5000"
    targets: tuple[str, ...] = ()
    command: str = ""
    # builds.yaml routes platforms to named builders, which CI runners do not have: each
    # job builds its platform with the runner's own builder (--builder current)
    current_builder: bool = False


@dataclass
class _Notes:
    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text not in self.items:
            self.items.append(text)


def _q(word: str) -> str:
    return shlex.quote(word)


def _file_flag(options: Options) -> str:
    return "" if options.file == "builds.yaml" else f" -f {_q(options.file)}"


def _target_flags(options: Options) -> str:
    return "".join(f" --target {_q(t)}" for t in options.targets)


def _cache_mode(ci: CIConfig, provider: Provider, notes: _Notes) -> Literal["gha", "config"]:
    if ci.cache == "gha" and provider == "gitlab":
        notes.add("ci.cache is gha, which only GitHub has: the GitLab jobs use builds.yaml's cache")
        return "config"
    if ci.cache == "auto":
        return "gha" if provider == "github" else "config"
    return "gha" if ci.cache == "gha" else "config"


def _gha_cache_flags(entry: MatrixEntry) -> str:
    # One scope per target and platform once mab build fills {target} in --cache-from/
    # --cache-to as it does in builds.yaml's cache: templates; left literal, the targets of
    # one platform job share the job's scope (still one per platform, nothing breaks).
    scope = f"mab-{{target}}-{entry.platform.slug}"
    return (
        f" --cache-from {_q(f'type=gha,scope={scope}')}"
        f" --cache-to {_q(f'type=gha,scope={scope},mode=max,ignore-error=true')}"
    )


def build_command(entry: MatrixEntry, options: Options, cache: Literal["gha", "config"]) -> str:
    targets = entry.targets if entry.per_target else options.targets
    command = (
        f"mab build{_file_flag(options)} --platform {entry.platform} --push-by-digest "
        f"--digests-out {DIGESTS_DIR}" + "".join(f" --target {_q(t)}" for t in targets)
    )
    if options.current_builder:
        command += " --builder current"
    return command + (_gha_cache_flags(entry) if cache == "gha" else "")


def merge_command(options: Options, summary: str) -> str:
    return (
        f"mab merge{_file_flag(options)} --digests {DIGESTS_DIR}{_target_flags(options)} "
        f"--report {REPORT_FILE} --summary {summary}"
    )


def _host(registry: str) -> str:
    return registry.split("/", 1)[0]


def _is_local(host: str) -> bool:
    return host.split(":", 1)[0] in _LOCAL_HOSTS or host.startswith("[::1]")


def _login_hosts(config: BuildsConfig, registry: str) -> list[tuple[str, RegistryAuth | None]]:
    """The registries the jobs log in to: the build registry first, then every other
    ``registries:`` entry (base image mirrors, promotion targets)."""
    host = _host(registry)
    hosts: list[tuple[str, RegistryAuth | None]] = [(host, config.registries.get(host))]
    hosts += [(h, a) for h, a in sorted(config.registries.items()) if h != host]
    return hosts


def _registry_notes(config: BuildsConfig, registry: str, provider: Provider, notes: _Notes) -> None:
    host = _host(registry)
    if _is_local(host):
        notes.add(
            f"the registry is {registry}, on the machine of each job: the merge job cannot "
            "see what the build jobs push there. Set registry: in builds.yaml to a shared one"
        )
    elif host not in config.registries and not (
        (provider == "github" and host == "ghcr.io")
        or (provider == "gitlab" and host == "registry.gitlab.com")
    ):
        notes.add(
            f"builds.yaml has no registries: entry for {host}, so the jobs do not log in to "
            f"it; add one that names the CI secrets (username_env, password_env)"
        )
    for name, auth in sorted(config.registries.items()):
        if auth.login is not None and not config.ci.secrets and provider == "github":
            notes.add(
                f"registries.{name} gets its password from login.command: list the secrets "
                "that command needs (e.g. cloud credentials) under ci.secrets"
            )


# --- YAML ------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style, indented sequences, literal blocks for multi-line strings."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True  # steps shared by several jobs are written out in each, no &anchors


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


class _GitHubDumper(_Dumper):
    """Writes the key ``on`` plainly: GitHub reads YAML 1.2, where it is not a boolean."""


_GitHubDumper.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not (tag.endswith(":bool") and first in "oO")]
    for first, resolvers in _Dumper.yaml_implicit_resolvers.items()
}


def _header(provider: Provider, options: Options) -> str:
    command = options.command or f"mab ci generate {provider} --force"
    return (
        f"# Generated by `mab ci generate {provider}` (mab {running_version()}) from "
        f"{options.file}.\n"
        "# Do not edit it by hand: change builds.yaml (its ci: section), then regenerate:\n"
        f"#   {command}\n"
    )


def _dump(data: dict[str, Any], dumper: type[_Dumper], spaced_under: str | None) -> str:
    text = yaml.dump(data, Dumper=dumper, sort_keys=False, width=4096, allow_unicode=True)
    out: list[str] = []
    section = ""
    for line in text.splitlines():
        top = bool(line) and not line.startswith(" ")
        if top:
            section = line.split(":", 1)[0]
        child = section == spaced_under and re.match(r"^  [^ #-][^:]*:$", line) is not None
        first_child = child and out and out[-1] == f"{spaced_under}:"
        if out and (top or (child and not first_child)):
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n"


# --- GitHub Actions --------------------------------------------------------------------------


def _github_env_value(name: str, ci: CIConfig) -> str | None:
    if name in ci.variables:
        return f"${{{{ vars.{name} }}}}"
    if name.startswith("GITHUB_") and name != "GITHUB_TOKEN":
        return None  # GitHub sets GITHUB_ACTOR, GITHUB_REPOSITORY_OWNER, ... itself
    return f"${{{{ secrets.{name} }}}}"


def _github_env(names: Iterable[str], ci: CIConfig) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in names:
        value = _github_env_value(name, ci)
        if value is not None:
            env[name] = value
    return env


def _build_secrets(
    config: BuildsConfig, targets: Iterable[str], provider: Provider, notes: _Notes
) -> list[str]:
    """The environment variables the build secrets of *targets* come from; a note for each
    file secret, which the CI job must create before ``mab build``."""
    names: list[str] = []
    for name in targets:
        for sid, secret in config.targets[name].secrets.items():
            if secret.env and secret.env not in names:
                names.append(secret.env)
            elif secret.file:
                notes.add(
                    f"targets.{name}.secrets.{sid} comes from the file {secret.file}: the "
                    f"{provider} build job must create it before mab build (or use env:)"
                )
    if names and provider == "gitlab":
        notes.add(
            "build secrets come from CI/CD variables "
            f"{', '.join(names)}: define them (masked) in the project's settings"
        )
    return names


def _step(name: str, run: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"name": name}
    if env:
        step["env"] = env
    step["run"] = run
    return step


def _github_logins(config: BuildsConfig, options: Options) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    ci = config.ci
    for host, auth in _login_hosts(config, options.registry):
        if auth is not None:
            names = [n for n in (auth.username_env, auth.password_env) if n] + list(ci.secrets)
            run = f"mab login {host}{_file_flag(options)}"
            steps.append(_step(f"Log in to {host}", run, _github_env(names, ci)))
        elif host == "ghcr.io":
            steps.append(
                _step(
                    "Log in to ghcr.io",
                    'printf \'%s\\n\' "$GITHUB_TOKEN" | mab login ghcr.io -u "$GITHUB_ACTOR" '
                    "--password-stdin",
                    {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"},
                )
            )
    return steps


def _github_setup(ci: CIConfig) -> list[dict[str, Any]]:
    return [
        {"name": "Check out", "uses": CHECKOUT, "with": {"fetch-depth": 0}},
        {"name": "Set up Python", "uses": SETUP_PYTHON, "with": {"python-version": ci.python}},
        _step("Install mab", install_command(ci)),
    ]


def _buildx_step(builder: str | None) -> dict[str, Any]:
    step: dict[str, Any] = {"name": "Set up Docker Buildx", "uses": SETUP_BUILDX}
    if builder:
        step["with"] = {"name": builder}
    return step


def github_workflow(project: Project, options: Options) -> Generated:
    """The GitHub Actions workflow: a build job per platform, then the merge job."""
    config = project.config
    ci = config.ci
    notes = _Notes()
    _registry_notes(config, options.registry, "github", notes)
    _install_notes(ci, notes)
    cache = _cache_mode(ci, "github", notes)
    entries = matrix(config, "platform", options.targets)
    logins = _github_logins(config, options)

    jobs: dict[str, Any] = {}
    for entry in entries:
        steps = _github_setup(ci)
        if entry.qemu:
            steps.append(
                {
                    "name": "Set up QEMU",
                    "uses": SETUP_QEMU,
                    "with": {"platforms": str(entry.platform)},
                }
            )
        steps.append(_buildx_step(config.builder))
        if cache == "gha":
            steps.append({"name": "Expose the GitHub Actions cache to buildx", "uses": GHA_RUNTIME})
        steps += logins
        secret_env = _github_env(_build_secrets(config, entry.targets, "github", notes), ci)
        steps.append(
            _step(f"Build {entry.platform}", build_command(entry, options, cache), secret_env)
        )
        steps.append(
            {
                "name": "Upload the digests",
                "uses": UPLOAD,
                "with": {
                    "name": entry.artifact,
                    "path": f"{DIGESTS_DIR}/",
                    "if-no-files-found": "error",
                    "retention-days": 1,
                },
            }
        )
        jobs[f"build-{entry.id}"] = {
            "name": f"build {entry.platform}",
            "runs-on": list(entry.runner) if isinstance(entry.runner, tuple) else entry.runner,
            "timeout-minutes": 120,
            "steps": steps,
        }

    merge_steps = _github_setup(ci)
    merge_steps.append(_buildx_step(config.builder))
    merge_steps += logins
    merge_steps.append(
        {
            "name": "Download the digests",
            "uses": DOWNLOAD,
            "with": {
                "pattern": f"{ARTIFACT_PREFIX}*",
                "path": f"{DIGESTS_DIR}/",
                "merge-multiple": True,
            },
        }
    )
    merge_steps.append(
        _step(
            "Assemble, verify and tag the image indexes",
            merge_command(options, '"$GITHUB_STEP_SUMMARY"'),
        )
    )
    merge_steps.append(
        {
            "name": "Upload the report",
            "if": "always()",
            "uses": UPLOAD,
            "with": {"name": "mab-report", "path": REPORT_FILE, "if-no-files-found": "ignore"},
        }
    )
    jobs["merge"] = {
        "name": "merge and publish",
        "needs": [f"build-{e.id}" for e in entries],
        "runs-on": github_runner(ci, Platform("linux", "amd64")),
        "timeout-minutes": 30,
        "steps": merge_steps,
    }

    push: dict[str, Any] = {}
    if ci.branches:
        push["branches"] = list(ci.branches)
    if ci.git_tags:
        push["tags"] = list(ci.git_tags)
    triggers: dict[str, Any] = {"push": push} if push else {}
    triggers["workflow_dispatch"] = {}
    hosts = {h for h, _ in _login_hosts(config, options.registry)}
    permissions = {"contents": "read"}
    if "ghcr.io" in hosts:
        permissions["packages"] = "write"
    data: dict[str, Any] = {
        "name": "mab",
        "on": triggers,
        "permissions": permissions,
        # one run per ref at a time: two runs must not move the same tags at once
        "concurrency": {"group": "mab-${{ github.ref }}", "cancel-in-progress": False},
        "jobs": jobs,
    }
    text = _header("github", options) + "\n" + _dump(data, _GitHubDumper, "jobs")
    return Generated("github", text, tuple(entries), tuple(notes.items))


# --- GitLab CI -------------------------------------------------------------------------------


def glob_regex(pattern: str) -> str:
    """A GitHub-style ref glob as a GitLab rules regex literal: ``*`` and ``?`` match no
    ``/``, ``**`` anything. Every ``/`` is escaped: GitLab ends the literal at a bare one."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^\\/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^\\/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]).replace("/", "\\/"), i + 1
    return f"/^{out}$/"


def _gitlab_rule(variable: str, pattern: str) -> dict[str, str]:
    if any(c in pattern for c in "*?"):
        return {"if": f"${variable} =~ {glob_regex(pattern)}"}
    return {"if": f'${variable} == "{pattern}"'}


def _gitlab_logins(config: BuildsConfig, options: Options) -> list[str]:
    lines: list[str] = []
    for host, auth in _login_hosts(config, options.registry):
        if auth is not None:
            lines.append(f"mab login {host}{_file_flag(options)}")
        elif host == "registry.gitlab.com":
            lines.append(
                "printf '%s\\n' \"$CI_REGISTRY_PASSWORD\" | mab login registry.gitlab.com "
                '-u "$CI_REGISTRY_USER" --password-stdin'
            )
    return lines


def _gitlab_before(config: BuildsConfig, options: Options, qemu: Platform | None) -> list[str]:
    ci = config.ci
    lines = [
        ci.gitlab.setup,
        "python3 -m venv /opt/mab",
        'export PATH="/opt/mab/bin:$PATH"',
        install_command(ci),
    ]
    if qemu is not None:
        lines.append(f"docker run --privileged --rm {BINFMT_IMAGE} --install {qemu.arch}")
    builder = config.builder or "mab"
    lines.append(f"docker buildx create --name {_q(builder)} --driver docker-container --use")
    lines += _gitlab_logins(config, options)
    return lines


def gitlab_pipeline(project: Project, options: Options) -> Generated:
    """The GitLab CI pipeline: a build job per platform (stage build), then merge."""
    config = project.config
    ci = config.ci
    notes = _Notes()
    _registry_notes(config, options.registry, "gitlab", notes)
    _install_notes(ci, notes)
    cache = _cache_mode(ci, "gitlab", notes)
    entries: list[MatrixEntry] = []
    for entry in matrix(config, "platform", options.targets):
        _build_secrets(config, entry.targets, "gitlab", notes)
        tags = gitlab_tags(ci, entry.platform)
        entries.append(
            MatrixEntry(
                entry.platform,
                entry.targets,
                tuple(tags),
                needs_qemu(ci, entry.platform, tags),
            )
        )

    rules = [_gitlab_rule("CI_COMMIT_BRANCH", b) for b in ci.branches]
    rules += [_gitlab_rule("CI_COMMIT_TAG", t) for t in ci.git_tags]
    rules.append({"if": '$CI_PIPELINE_SOURCE == "web"'})
    data: dict[str, Any] = {
        "workflow": {"rules": rules},
        "stages": ["build", "merge"],
        "variables": {
            # Docker-in-Docker over TLS, as GitLab's docs set it up
            "DOCKER_HOST": "tcp://docker:2376",
            "DOCKER_TLS_CERTDIR": "/certs",
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": "/certs/client",
            "GIT_DEPTH": "0",  # tag rules and labels read the history and tags
        },
        ".mab": {
            "image": ci.gitlab.image,
            "services": [{"name": ci.gitlab.service, "alias": "docker"}],
            "interruptible": False,
        },
    }
    for entry in entries:
        data[f"build-{entry.id}"] = {
            "extends": ".mab",
            "stage": "build",
            "tags": list(entry.runner),
            "timeout": "2h",
            "before_script": _gitlab_before(
                config, options, entry.platform if entry.qemu else None
            ),
            "script": [build_command(entry, options, cache)],
            "artifacts": {"paths": [f"{DIGESTS_DIR}/"], "expire_in": "1 day"},
        }
    data["merge"] = {
        "extends": ".mab",
        "stage": "merge",
        "tags": gitlab_tags(ci, Platform("linux", "amd64")),
        "needs": [{"job": f"build-{e.id}", "artifacts": True} for e in entries],
        "before_script": _gitlab_before(config, options, None),
        "script": [merge_command(options, SUMMARY_FILE)],
        "artifacts": {
            "when": "always",
            "paths": [REPORT_FILE, SUMMARY_FILE],
            "expire_in": "30 days",
        },
    }
    text = _header("gitlab", options) + "\n" + _dump(data, _Dumper, None)
    return Generated("gitlab", text, tuple(entries), tuple(notes.items))


def generate(provider: Provider, project: Project, options: Options) -> Generated:
    if provider == "github":
        return github_workflow(project, options)
    return gitlab_pipeline(project, options)
