"""mab ci: the build matrix, and the GitHub Actions / GitLab CI files it generates.

The generated files are checked by the real linters: actionlint for the workflow and
check-jsonschema with GitLab's CI schema for .gitlab-ci.yml (both dev dependencies, so a
missing one fails the test rather than skipping it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mab.ci import generate as ci
from mab.cli.main import app
from mab.config import install
from mab.config.project import load_project
from mab.errors import ConfigError, UsageError
from mab.platforms import Platform

runner = CliRunner()

CONFIG = """\
registry: ghcr.io/acme
platforms: [linux/amd64, linux/arm64]
registries:
  ghcr.io: {username_env: GITHUB_ACTOR, password_env: GITHUB_TOKEN}
  docker.io: {username_env: HUB_USER, password_env: HUB_TOKEN}
targets:
  web: {context: app}
  api:
    context: goapp
    template: go
    vars: {main: .}
    platforms: [linux/amd64, linux/arm64, linux/arm/v7]
ci:
  variables: [HUB_USER]
"""


def _tool(name: str) -> str:
    """A dev dependency's command: beside this Python first (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install the dev extras (pip install -e '.[dev]')")
    return found


def _generate(path: Path, provider: str, *extra: str) -> Any:
    result = runner.invoke(app, ["ci", "generate", provider, "-f", str(path), *extra])
    assert result.exit_code == 0, result.output
    return result


def _run_steps(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


# --- the matrix ---------------------------------------------------------------------------


def test_matrix_per_platform(write_config: Callable[[str], Path]) -> None:
    config = load_project(write_config(CONFIG)).config
    data = ci.matrix_json(ci.matrix(config))
    assert [e["platform"] for e in data] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert [e["slug"] for e in data] == ["linux-amd64", "linux-arm64", "linux-arm-v7"]
    assert [e["targets"] for e in data] == [["web", "api"], ["web", "api"], ["api"]]
    assert [e["runner"] for e in data] == ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-24.04"]
    assert [e["qemu"] for e in data] == [False, False, True]
    assert data[2]["artifact"] == "mab-digests-linux-arm-v7"
    assert data[2]["id"] == "linux-arm-v7"


def test_matrix_per_target_platform(write_config: Callable[[str], Path]) -> None:
    config = load_project(write_config(CONFIG)).config
    data = ci.matrix_json(ci.matrix(config, "target-platform"))
    assert [(e["target"], e["platform"]) for e in data] == [
        ("web", "linux/amd64"),
        ("web", "linux/arm64"),
        ("api", "linux/amd64"),
        ("api", "linux/arm64"),
        ("api", "linux/arm/v7"),
    ]
    assert len({e["id"] for e in data}) == 5
    assert data[-1]["id"] == "api-linux-arm-v7" and data[-1]["qemu"] is True


def test_matrix_runners_and_qemu_are_configurable(write_config: Callable[[str], Path]) -> None:
    config = load_project(
        write_config(
            CONFIG
            + "  runners:\n"
            + "    linux/arm/v7: ubuntu-24.04-arm\n"
            + "    linux/amd64: [self-hosted, linux, x64]\n"
            + "  qemu: {linux/arm/v7: false}\n"
        )
    ).config
    by_platform = {e["platform"]: e for e in ci.matrix_json(ci.matrix(config))}
    assert by_platform["linux/amd64"]["runner"] == ["self-hosted", "linux", "x64"]
    assert by_platform["linux/amd64"]["qemu"] is False
    assert by_platform["linux/arm/v7"]["runner"] == "ubuntu-24.04-arm"
    assert by_platform["linux/arm/v7"]["qemu"] is False  # forced off
    assert by_platform["linux/arm64"]["runner"] == "ubuntu-24.04-arm"  # default kept


@pytest.mark.parametrize(
    ("labels", "platform", "native"),
    [
        (["ubuntu-24.04"], "linux/amd64", True),
        (["ubuntu-24.04"], "linux/386", True),
        (["ubuntu-24.04"], "linux/arm64", False),
        (["ubuntu-24.04-arm"], "linux/arm64", True),
        (["ubuntu-24.04-arm"], "linux/arm/v7", False),  # no AArch32 assumed: QEMU
        (["saas-linux-small-arm64"], "linux/arm64", True),
        (["self-hosted", "linux", "riscv64"], "linux/riscv64", True),
        (["big-box"], "linux/s390x", False),
    ],
)
def test_native_from_runner_labels(labels: list[str], platform: str, native: bool) -> None:
    assert ci.is_native(Platform.parse(platform), labels) is native


def test_matrix_narrowing_and_unknown_names(write_config: Callable[[str], Path]) -> None:
    config = load_project(write_config(CONFIG)).config
    (only,) = ci.matrix(config, targets=["api"], platforms=["linux/arm"])
    assert str(only.platform) == "linux/arm/v7" and only.targets == ("api",)
    with pytest.raises(UsageError, match="did you mean 'api'"):
        ci.matrix(config, targets=["apii"])
    with pytest.raises(UsageError, match="nothing to build"):
        ci.matrix(config, targets=["web"], platforms=["linux/arm/v7"])


def test_matrix_cli_prints_one_json_line(write_config: Callable[[str], Path]) -> None:
    path = write_config(CONFIG)
    result = runner.invoke(app, ["ci", "matrix", "-f", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1  # fits "include=$(mab ci matrix)" >> $GITHUB_OUTPUT
    assert [e["platform"] for e in json.loads(lines[0])] == [
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
    ]
    result = runner.invoke(
        app, ["ci", "matrix", "-f", str(path), "--per", "target-platform", "-t", "web"]
    )
    assert [e["id"] for e in json.loads(result.stdout)] == ["web-linux-amd64", "web-linux-arm64"]
    result = runner.invoke(app, ["ci", "matrix", "-f", str(path), "-t", "nope"])
    assert result.exit_code == 2 and "no target 'nope'" in result.stderr


# --- GitHub Actions -------------------------------------------------------------------------


def test_github_workflow_passes_actionlint(
    write_config: Callable[[str], Path], project_dir: Path
) -> None:
    path = write_config(CONFIG)
    _generate(path, "github")
    workflow = project_dir / ".github" / "workflows" / "mab.yml"
    lint = subprocess.run(
        [_tool("actionlint"), "-no-color", str(workflow)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_github_workflow_structure(write_config: Callable[[str], Path], project_dir: Path) -> None:
    _generate(write_config(CONFIG), "github")
    text = (project_dir / ".github" / "workflows" / "mab.yml").read_text()
    assert text.startswith("# Generated by `mab ci generate github`")
    assert "mab ci generate github --force" in text.splitlines()[2]
    assert "\non:\n" in text  # the key written plainly, not 'on'
    data = yaml.safe_load(text)
    jobs = data["jobs"]
    builds = ["build-linux-amd64", "build-linux-arm64", "build-linux-arm-v7"]
    assert list(jobs) == [*builds, "merge"]
    assert [jobs[b]["runs-on"] for b in builds] == [
        "ubuntu-24.04",
        "ubuntu-24.04-arm",
        "ubuntu-24.04",
    ]
    for name, platform in zip(builds, ["linux/amd64", "linux/arm64", "linux/arm/v7"], strict=True):
        job = jobs[name]
        (build,) = [r for r in _run_steps(job) if r.startswith("mab build")]
        assert f"--platform {platform} --push-by-digest --digests-out digests" in build
        scope = f"mab-{{target}}-{Platform.parse(platform).slug}"
        assert f"--cache-from 'type=gha,scope={scope}'" in build
        assert f"--cache-to 'type=gha,scope={scope},mode=max,ignore-error=true'" in build
        upload = next(s for s in job["steps"] if s.get("uses", "").startswith(ci.UPLOAD))
        assert upload["with"]["name"] == f"mab-digests-{Platform.parse(platform).slug}"
        assert upload["with"]["path"] == "digests/"
        assert "docker/setup-buildx-action" in _uses(job)
    # QEMU only where the runner is not native
    assert "docker/setup-qemu-action" not in _uses(jobs["build-linux-amd64"])
    assert "docker/setup-qemu-action" not in _uses(jobs["build-linux-arm64"])
    qemu = next(s for s in jobs["build-linux-arm-v7"]["steps"] if "setup-qemu" in s.get("uses", ""))
    assert qemu["with"] == {"platforms": "linux/arm/v7"}

    merge = jobs["merge"]
    assert merge["needs"] == builds
    download = next(s for s in merge["steps"] if s.get("uses", "").startswith(ci.DOWNLOAD))
    assert download["with"] == {
        "pattern": "mab-digests-*",
        "path": "digests/",
        "merge-multiple": True,
    }
    (run,) = [r for r in _run_steps(merge) if r.startswith("mab merge")]
    assert run.startswith("mab merge --digests digests")
    assert '--summary "$GITHUB_STEP_SUMMARY"' in run
    assert data["permissions"] == {"contents": "read", "packages": "write"}


def test_github_logins_name_secrets_never_values(
    write_config: Callable[[str], Path], project_dir: Path
) -> None:
    _generate(write_config(CONFIG), "github")
    data = yaml.safe_load((project_dir / ".github" / "workflows" / "mab.yml").read_text())
    for job in data["jobs"].values():
        logins = [s for s in job["steps"] if s["name"].startswith("Log in to")]
        assert [s["run"] for s in logins] == ["mab login ghcr.io", "mab login docker.io"]
        # GITHUB_ACTOR is set by GitHub itself; HUB_USER is a configuration variable
        assert logins[0]["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
        assert logins[1]["env"] == {
            "HUB_USER": "${{ vars.HUB_USER }}",
            "HUB_TOKEN": "${{ secrets.HUB_TOKEN }}",
        }
        # no password is ever on a command line
        assert not [r for r in _run_steps(job) if "--password " in r or " -p " in r]


def test_github_ghcr_without_registries_entry_uses_the_job_token(
    write_config: Callable[[str], Path],
) -> None:
    path = write_config("registry: ghcr.io/acme\ntargets:\n  web: {context: app}\n")
    result = _generate(path, "github", "--out", "-")
    data = yaml.safe_load(result.stdout)
    login = next(s for s in data["jobs"]["merge"]["steps"] if s["name"] == "Log in to ghcr.io")
    assert login["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    assert "--password-stdin" in login["run"] and "$GITHUB_TOKEN" in login["run"]
    assert "note:" not in result.stderr


def test_github_triggers_install_and_narrowing(write_config: Callable[[str], Path]) -> None:
    path = write_config(
        CONFIG + '  install: pip install mab-build==1.2.3\n  python: "3.11"\n'
        "  branches: [main, release/*]\n  git_tags: []\n  cache: config\n"
    )
    data = yaml.safe_load(_generate(path, "github", "--out", "-", "-t", "web").stdout)
    on = data[True]  # PyYAML reads YAML 1.1, where a plain on is true; GitHub does not
    assert on == {"push": {"branches": ["main", "release/*"]}, "workflow_dispatch": {}}
    assert list(data["jobs"]) == ["build-linux-amd64", "build-linux-arm64", "merge"]
    job = data["jobs"]["build-linux-amd64"]
    assert "pip install mab-build==1.2.3" in _run_steps(job)
    assert job["steps"][1]["with"] == {"python-version": "3.11"}
    build = next(r for r in _run_steps(job) if r.startswith("mab build"))
    assert build.endswith("--target web")  # narrowed; no --cache-* with cache: config
    assert "ghaction-github-runtime" not in str(job)
    merge = next(r for r in _run_steps(data["jobs"]["merge"]) if r.startswith("mab merge"))
    assert "--target web" in merge


def test_builds_yaml_outside_the_root_is_passed_with_f(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    sub = tmp_path / "images"
    (sub / "app").mkdir(parents=True)
    (sub / "app" / "Dockerfile").write_text("FROM scratch\n")
    (sub / "builds.yaml").write_text("registry: ghcr.io/acme\ntargets:\n  web: {context: app}\n")
    _generate(sub / "builds.yaml", "github")
    data = yaml.safe_load((tmp_path / ".github" / "workflows" / "mab.yml").read_text())
    build = next(r for r in _run_steps(data["jobs"]["build-linux-amd64"]) if "mab build" in r)
    assert build.startswith("mab build -f images/builds.yaml --platform linux/amd64")


def test_localhost_registry_gets_a_note(write_config: Callable[[str], Path]) -> None:
    path = write_config("targets:\n  web: {context: app}\n")
    result = _generate(path, "github", "--out", "-")
    assert "note: the registry is localhost:5000" in result.stderr


# --- GitLab CI ------------------------------------------------------------------------------


def test_gitlab_pipeline_passes_the_gitlab_schema(
    write_config: Callable[[str], Path], project_dir: Path
) -> None:
    _generate(write_config(CONFIG), "gitlab")
    check = subprocess.run(
        [
            _tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(project_dir / ".gitlab-ci.yml"),
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_gitlab_pipeline_structure(write_config: Callable[[str], Path], project_dir: Path) -> None:
    _generate(write_config(CONFIG), "gitlab")
    text = (project_dir / ".gitlab-ci.yml").read_text()
    assert text.startswith("# Generated by `mab ci generate gitlab`")
    data = yaml.safe_load(text)
    assert data["stages"] == ["build", "merge"]
    assert data["workflow"]["rules"][:2] == [
        {"if": '$CI_COMMIT_BRANCH == "main"'},
        {"if": "$CI_COMMIT_TAG =~ /^v[^\\/]*$/"},
    ]
    builds = ["build-linux-amd64", "build-linux-arm64", "build-linux-arm-v7"]
    assert [data[b]["tags"] for b in builds] == [
        ["saas-linux-small-amd64"],
        ["saas-linux-small-arm64"],
        ["saas-linux-small-amd64"],
    ]
    for name, platform in zip(builds, ["linux/amd64", "linux/arm64", "linux/arm/v7"], strict=True):
        job = data[name]
        assert job["stage"] == "build" and job["extends"] == ".mab"
        (build,) = job["script"]
        assert build.startswith(f"mab build --platform {platform} --push-by-digest --digests-out")
        assert "--cache" not in build  # GitLab: builds.yaml's own cache (auto)
        assert job["artifacts"]["paths"] == ["digests/"]
        assert "mab login ghcr.io" in job["before_script"]
        binfmt = [line for line in job["before_script"] if "binfmt" in line]
        assert binfmt == (
            ["docker run --privileged --rm tonistiigi/binfmt:latest --install arm"]
            if platform == "linux/arm/v7"
            else []
        )
    merge = data["merge"]
    assert merge["stage"] == "merge"
    assert merge["needs"] == [{"job": b, "artifacts": True} for b in builds]
    assert merge["script"] == [
        "mab merge --digests digests --report mab-report.json --summary mab-summary.md"
    ]
    assert not [line for line in merge["before_script"] if "binfmt" in line]


def test_gitlab_runner_tags_are_configurable(write_config: Callable[[str], Path]) -> None:
    path = write_config(CONFIG + "  gitlab:\n    runner_tags: {linux/arm/v7: [arm64, pi]}\n")
    data = yaml.safe_load(_generate(path, "gitlab", "--out", "-").stdout)
    assert data["build-linux-arm-v7"]["tags"] == ["arm64", "pi"]


def test_glob_regex() -> None:
    assert ci.glob_regex("v*") == "/^v[^\\/]*$/"
    assert ci.glob_regex("release/**") == "/^release\\/.*$/"
    assert ci.glob_regex("v1.?") == "/^v1\\.[^\\/]$/"


# --- writing the file -----------------------------------------------------------------------


def test_existing_file_is_not_overwritten_without_force(
    write_config: Callable[[str], Path], project_dir: Path
) -> None:
    path = write_config(CONFIG)
    workflow = project_dir / ".github" / "workflows" / "mab.yml"
    first = _generate(path, "github")
    assert "wrote" in first.stderr
    generated = workflow.read_text()
    again = _generate(path, "github")  # the same text: nothing to do
    assert "up to date" in again.stderr

    workflow.write_text("# my own workflow\n")
    result = runner.invoke(app, ["ci", "generate", "github", "-f", str(path)])
    assert result.exit_code == 2
    assert "not overwritten" in result.stderr and "--force" in result.stderr
    assert workflow.read_text() == "# my own workflow\n"

    _generate(path, "github", "--force")
    assert workflow.read_text() == generated


def test_out_option_writes_elsewhere(write_config: Callable[[str], Path], tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "ci.yml"
    _generate(write_config(CONFIG), "gitlab", "--out", str(out))
    assert yaml.safe_load(out.read_text())["stages"] == ["build", "merge"]
    # the command to regenerate is run from the repository root (here: builds.yaml's folder)
    assert (
        out.read_text().splitlines()[2]
        == "#   mab ci generate gitlab --out elsewhere/ci.yml --force"
    )


# --- the ci: section ------------------------------------------------------------------------


def test_ci_section_errors_are_located(write_config: Callable[[str], Path]) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(write_config(CONFIG + "  python: 3.10\n  runner: {}\n"))
    text = str(info.value)
    assert "builds.yaml:15: ci.python: write the version as a string" in text
    assert "ci.runner: unknown key 'runner'; did you mean 'runners'?" in text
    with pytest.raises(ConfigError, match="must name an environment variable"):
        load_project(write_config(CONFIG + "  secrets: [hunter2 is my password]\n"))


def test_builds_with_routed_builders_use_the_runners_builder(
    write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    routed = CONFIG.replace(
        "targets:",
        "builders:\n  - {name: arm-box, endpoint: 'ssh://arm', platforms: [linux/arm64]}\ntargets:",
        1,
    )
    out = tmp_path / "routed.yml"
    _generate(write_config(routed), "github", "--out", str(out))
    jobs = yaml.safe_load(out.read_text())["jobs"]
    builds = [
        run for job in jobs.values() for run in _run_steps(job) if run.startswith("mab build")
    ]
    assert builds and all(
        run.endswith("--builder current") or "--builder current " in run for run in builds
    )
    plain = tmp_path / "plain.yml"
    _generate(write_config(CONFIG), "github", "--out", str(plain))
    assert "--builder" not in plain.read_text()


# --- how the jobs install mab ---------------------------------------------------------------

# The version of the mab under test, as pip installed it (scripts/venv: editable)
VERSION = metadata.version("mab-build")
PINNED_COMMIT = "0123456789abcdef0123456789abcdef01234567"
GIT_INSTALL = f'pip install "git+https://example.com/org/mab@{PINNED_COMMIT}"'


def _install_lines(text: str) -> list[str]:
    """Every line of a generated file that installs something with pip."""
    return [
        line[line.index("pip install") :] for line in text.splitlines() if "pip install" in line
    ]


def test_version_names_the_distribution() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"mab {VERSION} (distribution mab-build)\n"
    assert install.DISTRIBUTION == "mab-build" and install.running_version() == VERSION


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_jobs_install_exactly_the_generating_version(
    write_config: Callable[[str], Path], provider: str
) -> None:
    result = _generate(write_config(CONFIG), provider, "--out", "-")
    text = result.stdout
    assert f"(mab {VERSION})" in text.splitlines()[0]
    wanted = f"pip install mab-build=={VERSION}"
    assert install.default_install() == wanted
    data = yaml.safe_load(text)
    if provider == "github":
        installs = [
            step["run"]
            for job in data["jobs"].values()
            for step in job["steps"]
            if step["name"] == "Install mab"
        ]
        assert len(installs) == len(data["jobs"])  # every job, build and merge
    else:
        jobs = [v for k, v in data.items() if k.startswith("build-") or k == "merge"]
        installs = [line for job in jobs for line in job["before_script"] if "install m" in line]
        assert len(installs) == len(jobs)
    assert set(installs) == {wanted}
    assert _install_lines(text) == [wanted] * len(installs)
    # never the bare name: mab on PyPI is someone else's project
    assert not re.search(r"pip install (mab|mab-build)(\s|$)", text)
    assert "note: ci.install" not in result.stderr


FOREIGN = "installs the PyPI project named mab, which is not this mab"
UNPINNED = "is not pinned: each job would install whatever mab-build is newest"


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ("pip install mab", FOREIGN),
        ("pip install -U mab", FOREIGN),
        ("python -m pip install mab==0.1.24", FOREIGN),  # pinned or not: the other project
        ("pip3 install 'mab>=0.1'", FOREIGN),
        ("pipx install mab", FOREIGN),
        ("pip install MAB", FOREIGN),
        ("pip install -q \\\n  mab", FOREIGN),
        ("set -e; pip install wheel\npip install mab  # the CLI", FOREIGN),
        ("pip install mab-build", UNPINNED),
        ("pip install mab_build", UNPINNED),  # the same name to PyPI
        ("pip install 'Mab.Build>=0.1'", UNPINNED),
        ("pip install 'mab-build~=0.1'", UNPINNED),
        ("pip install 'mab-build==0.*'", UNPINNED),
        ("pip install 'mab-build[extra]'", UNPINNED),
        ("uv pip install mab-build", UNPINNED),
        ("/opt/mab/bin/pip install -U pip && /opt/mab/bin/pip install mab-build", UNPINNED),
        ("pip install --index-url https://pypi.example.com/simple mab-build", UNPINNED),
    ],
)
def test_unpinned_or_foreign_installs_are_refused(command: str, why: str) -> None:
    problem = install.install_problem(command)
    assert problem is not None and why in problem
    assert f"mab-build=={VERSION}" in problem  # the way out
    with pytest.raises(ValueError, match=re.escape(problem)):
        install.check_install(command)


@pytest.mark.parametrize(
    "command",
    [
        "pip install mab-build==0.1.0",
        "pip install mab_build===0.1.0",
        "pip install 'mab-build[extra]==0.1.0'",
        "pip install 'mab-build==0.1.0; python_version >= \"3.11\"'",
        "pip install --index-url https://pypi.example.com/simple mab-build==0.1.0",
        GIT_INSTALL,
        f'pip install "mab-build @ git+https://example.com/org/mab@{PINNED_COMMIT}"',
        "pip install ./wheels/mab_build-0.1.0-py3-none-any.whl",
        "pip install --no-index --find-links wheels mab-build==0.1.0",
        "pip install -r ci/requirements.txt",
        "pip install -r mab -c mab",  # files named mab, not the project
        "pip install -e .",
        "pip install mabel && pip download mab",  # no mab installed
        "pip install mab-build==0.1.0 'unbalanced",
    ],
)
def test_pinned_or_own_source_installs_pass(command: str) -> None:
    assert install.install_problem(command) is None
    assert install.check_install(command) == command


@pytest.mark.parametrize(
    ("install", "expected"),
    [
        ("pip install mab", "unrelated Multi-Armed Bandits library"),
        ("python3 -m pip install 'mab-build>=0.1'", "is not pinned"),
        ('""', "empty: give the command that installs mab"),
    ],
)
def test_ci_install_problems_are_config_errors(
    write_config: Callable[[str], Path], install: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(write_config(CONFIG + f"  install: {install}\n"))
    text = str(info.value)
    assert "builds.yaml:15: ci.install:" in text and expected in text


def test_ci_install_null_is_the_default(write_config: Callable[[str], Path]) -> None:
    config = load_project(write_config(CONFIG + "  install: null\n")).config
    assert config.ci.install is None
    assert ci.install_command(config.ci) == f"pip install mab-build=={VERSION}"


def test_ci_install_git_url_pinned_to_a_commit(
    write_config: Callable[[str], Path], project_dir: Path
) -> None:
    path = write_config(CONFIG + f"  install: '{GIT_INSTALL}'\n")
    github = _generate(path, "github")
    workflow = project_dir / ".github" / "workflows" / "mab.yml"
    steps = [
        step["run"]
        for job in yaml.safe_load(workflow.read_text())["jobs"].values()
        for step in job["steps"]
        if step["name"] == "Install mab"
    ]
    assert steps and set(steps) == {GIT_INSTALL}
    assert "note: ci.install" not in github.stderr
    lint = subprocess.run(
        [_tool("actionlint"), "-no-color", str(workflow)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr

    gitlab = _generate(path, "gitlab", "--out", "-")
    assert GIT_INSTALL in yaml.safe_load(gitlab.stdout)["merge"]["before_script"]
    assert "note: ci.install" not in gitlab.stderr


def test_ci_install_git_url_without_a_commit_gets_a_note(
    write_config: Callable[[str], Path],
) -> None:
    path = write_config(
        CONFIG + "  install: pip install git+https://example.com/org/mab.git@main\n"
    )
    result = _generate(path, "github", "--out", "-")
    assert "note: ci.install installs git+https://example.com/org/mab.git@main without a " in (
        result.stderr
    )


def test_ci_install_of_another_version_gets_a_note(write_config: Callable[[str], Path]) -> None:
    other = write_config(CONFIG + "  install: pip install 'mab-build==99.0'\n")
    result = _generate(other, "github", "--out", "-")
    assert f"note: ci.install installs mab-build==99.0, but this is mab {VERSION}" in (
        result.stderr
    )
    same = write_config(CONFIG + f"  install: python -m pip install mab_build=={VERSION}\n")
    result = _generate(same, "gitlab", "--out", "-")
    assert "note: ci.install" not in result.stderr
    assert f"python -m pip install mab_build=={VERSION}" in result.stdout
