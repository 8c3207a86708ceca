"""builds.yaml: the typed model (pydantic v2); mab.config.project loads and checks it.

The model is strict: unknown keys are rejected (mab.config.project suggests the closest
valid key and reports every problem as ``FILE:LINE: FIELD: cause``, after checking that
the paths the file names exist), and platforms are normalised (``linux/arm64/v8`` ->
``linux/arm64``).

Every model defers building its validator (``defer_build``) to its first use: validating
builds.yaml builds BuildsConfig's, which holds the nested models, so each nested model's
own validator is built only where it is used alone; this saves about a tenth of a second
at every start.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from mab.config.install import check_install
from mab.config.yamlsource import Loc
from mab.platforms import PlatformValueError, normalize
from mab.secrets import (
    SECRET_NAME_RE,
    check_registry_string,
    looks_like_token,
    redact,
)

DEFAULT_REGISTRY = "localhost:5000"
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")

_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# A target name is a repository path component; registries cap those (and the whole name,
# 255 characters), so a longer one would fail at the first push, after the build.
MAX_NAME_LENGTH = 128


class FieldError(ValueError):
    """A ValueError from a model-level check that names the field it is about (relative to
    the model), so the issue is reported at that field's line rather than the model's."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _platform(value: str) -> str:
    try:
        return normalize(value)
    except PlatformValueError as exc:
        raise ValueError(str(exc)) from None


def _tag(value: str) -> str:
    if not _TAG_RE.match(value):
        raise ValueError(
            f"invalid tag '{value}': up to 128 characters of [A-Za-z0-9_.-], "
            "not starting with '.' or '-'"
        )
    return value


def _target_name(value: str) -> str:
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"target name is {len(value)} characters long; at most {MAX_NAME_LENGTH} (it "
            "becomes the repository name, which registries cap)"
        )
    if not _NAME_RE.match(value):
        raise ValueError(
            f"invalid target name '{value}': lowercase letters, digits and single . _ - "
            "between them (it becomes the repository name)"
        )
    return value


def _registry(value: str) -> str:
    return check_registry_string(value, "registry")


def _not_bool(value: object) -> object:
    # YAML reads true/false as booleans and pydantic takes a boolean as 1 or 0.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


def _scalar_to_str(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


PlatformStr = Annotated[str, AfterValidator(_platform)]
TagStr = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_tag)]
TargetName = Annotated[str, AfterValidator(_target_name)]
ScalarStr = Annotated[str, BeforeValidator(_scalar_to_str)]
RegistryStr = Annotated[str, AfterValidator(_registry)]
Count = Annotated[int, BeforeValidator(_not_bool)]


def _tag_literal(value: str) -> str:
    # A literal with {{ }} is a template, checked after rendering (mab.planning.tags).
    return value if "{{" in value else _tag(value)


TagLiteral = Annotated[str, BeforeValidator(_scalar_to_str), AfterValidator(_tag_literal)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    prefix: str = Field("", description="Put before every tag this rule makes.")
    suffix: str = Field("", description="Put after every tag this rule makes.")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SemverOptions(_Options):
    full: bool = Field(True, description="MAJOR.MINOR.PATCH[-PRERELEASE]")
    minor: bool = Field(True, description="MAJOR.MINOR, moved only to the highest of its line")
    major: bool = Field(True, description="MAJOR, moved only to the highest of its line")
    latest: bool = Field(True, description="latest, moved only to the highest release")
    source: Literal["auto", "cli", "git", "file"] = Field(
        "auto",
        description="Where the version comes from: --version (cli), the git tag at HEAD "
        "(git), a file (file), or the first of these that gives one (auto).",
    )
    file: str = Field("VERSION", description="Version file, relative to builds.yaml.")


class SemverRule(_Rule):
    semver: SemverOptions = Field(default_factory=SemverOptions)


class EnvironmentOptions(_Options):
    name: str | None = Field(None, description="Environment; default: --env.")
    plain: bool = Field(True, description="The environment name as a tag (it moves).")
    versioned: bool = Field(True, description="VERSION-ENV, when a version is known.")


class EnvironmentRule(_Rule):
    environment: EnvironmentOptions = Field(default_factory=EnvironmentOptions)


class GitOptions(_Options):
    sha: bool = Field(True, description="The short commit sha.")
    sha_length: Count = Field(7, ge=4, le=40)
    branch: bool = Field(False, description="The branch name, sanitised (it moves).")
    tag: bool = Field(False, description="The git tag at HEAD, if any.")
    pull_request: bool = Field(
        False, description="On a pull/merge request build: pr-NUMBER (it moves)."
    )


class GitRule(_Rule):
    git: GitOptions = Field(default_factory=GitOptions)


class DateOptions(_Options):
    format: str = Field("%Y%m%d", description="strftime format, UTC; e.g. %Y%m%d-%H%M%S")


class DateRule(_Rule):
    date: DateOptions = Field(default_factory=DateOptions)


class RawRule(_Rule):
    raw: str = Field(
        description="A tag, with {{ }} over version, major, minor, patch, "
        "prerelease, sha, short_sha, branch, git_tag, env, date, datetime, target."
    )


RULE_KINDS = ("semver", "environment", "git", "date", "raw")


def _rule_kind(value: Any) -> str | None:
    if isinstance(value, str | int | float):
        return "literal"
    if isinstance(value, dict):
        return next((k for k in RULE_KINDS if k in value), None)
    if isinstance(value, BaseModel):
        return next((k for k in RULE_KINDS if k in type(value).model_fields), None)
    return None


TagItem = Annotated[
    Annotated[TagLiteral, Tag("literal")]
    | Annotated[SemverRule, Tag("semver")]
    | Annotated[EnvironmentRule, Tag("environment")]
    | Annotated[GitRule, Tag("git")]
    | Annotated[DateRule, Tag("date")]
    | Annotated[RawRule, Tag("raw")],
    Discriminator(
        _rule_kind,
        custom_error_type="tag_rule",
        custom_error_message="a tag is a string, or a rule: a mapping with one of the keys "
        + ", ".join(RULE_KINDS),
    ),
]


class Defaults(BaseModel):
    """What targets get when they do not say."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    tags: list[TagItem] | None = Field(None, min_length=1, description="Default tag rules.")
    labels: dict[str, ScalarStr] = Field(
        default_factory=dict, description="Labels every image gets (targets add to them)."
    )


# --- registries (credentials by reference) and retention: mab login, mab clean -----------

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEYS = ("password", "token", "secret", "auth", "identitytoken")
# Kept by default: semver releases (and their MAJOR.MINOR / MAJOR aliases), latest, and
# environment tags. Regular expressions, matched against the whole tag.
DEFAULT_KEEP_TAGS = (
    r"v?\d+\.\d+\.\d+",
    r"v?\d+\.\d+",
    r"v?\d{1,3}",
    r"latest",
    r"dev|development|test|qa|uat|stage|staging|preprod|prod|production",
)


def _env_name(value: str) -> str:
    # The value is never echoed: a mistake here may be a pasted secret.
    if not _ENV_NAME_RE.match(value):
        raise ValueError(
            "must name an environment variable (letters, digits and _), not hold a value"
        )
    return value


def _host(value: str) -> str:
    return check_registry_string(value, "registry host", allow_path=False)


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression '{value}': {exc}") from None
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]
HostStr = Annotated[str, AfterValidator(_host)]
PatternStr = Annotated[str, AfterValidator(_pattern)]


class LoginCommand(BaseModel):
    """A command whose stdout is the password (cloud registries' short-lived tokens)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    command: str | list[str] = Field(
        description="Run without a shell; its stdout is the password, e.g. "
        "'aws ecr get-login-password --region eu-west-1'."
    )


class RegistryAuth(BaseModel):
    """How to log in to one registry: credentials named by environment variable, or a
    login command. Values of secrets are never written in builds.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    username: str | None = Field(None, description="User name (not a secret).")
    username_env: EnvName | None = Field(None, description="Environment variable with it.")
    password_env: EnvName | None = Field(
        None, description="Environment variable holding the password or token."
    )
    login: LoginCommand | None = Field(
        None, description="Get the password from a command's stdout instead (cloud registries)."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_secret_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if str(key).lower() in _SECRET_KEYS:
                    raise ValueError(
                        f"'{key}' would put a secret in builds.yaml; name an environment "
                        "variable with password_env, or use login.command"
                    )
        return data

    @model_validator(mode="after")
    def _complete(self) -> RegistryAuth:
        if (self.username is None) == (self.username_env is None):
            raise ValueError("give exactly one of 'username' and 'username_env'")
        if (self.password_env is None) == (self.login is None):
            raise ValueError("give exactly one of 'password_env' and 'login'")
        return self


class Retention(BaseModel):
    """Which tags ``mab clean`` keeps. A tag is deleted only when no rule keeps it."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    keep_last: Count | None = Field(
        None, ge=0, description="Keep the newest N versions (distinct images, by created time)."
    )
    keep_tags: list[PatternStr] = Field(
        default_factory=lambda: list(DEFAULT_KEEP_TAGS),
        description="Keep tags matching any of these regular expressions (whole tag). Default: "
        "semver releases, latest and environment tags.",
    )
    older_than_days: Annotated[float, BeforeValidator(_not_bool)] | None = Field(
        None, gt=0, description="Delete only tags older than this many days."
    )

    @model_validator(mode="after")
    def _bounded(self) -> Retention:
        if self.keep_last is None and self.older_than_days is None:
            raise ValueError("give 'keep_last', 'older_than_days' or both")
        return self


# --- end of registries and retention -------------------------------------------------------


# --- ci: what `mab ci matrix` and `mab ci generate github|gitlab` write ---------------------


def _version_text(value: object) -> object:
    # YAML reads 3.10 as the float 3.1: a version must be written as a string.
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise ValueError(f'write the version as a string, e.g. "{value}" (YAML reads 3.10 as 3.1)')
    return value


def _pattern_text(value: str) -> str:
    if not value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"invalid branch or tag pattern '{value}': no spaces, not empty")
    return value


def _label(value: str) -> str:
    if not value.strip():
        raise ValueError("a runner label is not empty")
    return value


def _runner_labels(value: object) -> object:
    """A label or a list of labels, checked before pydantic's union so that an error is a
    plain sentence rather than one per union member, named after pydantic's types."""
    labels = value if isinstance(value, list) else [value]
    if not labels:
        raise ValueError("give a runner label or a list of them, e.g. [self-hosted, arm64]")
    for label in labels:
        if not isinstance(label, str):
            raise ValueError(
                f"a runner label is a string, e.g. ubuntu-24.04 (got {short_repr(label)})"
            )
        _label(label)
    return value


VersionText = Annotated[str, BeforeValidator(_version_text)]
RefPattern = Annotated[str, AfterValidator(_pattern_text)]
RunnerLabel = Annotated[str, AfterValidator(_label)]
RunnerLabels = Annotated[RunnerLabel | list[RunnerLabel], BeforeValidator(_runner_labels)]


class GitLabCIConfig(BaseModel):
    """GitLab CI specifics of ``mab ci generate gitlab``."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    runner_tags: dict[PlatformStr, list[RunnerLabel]] = Field(
        default_factory=dict,
        description="Runner tags of each platform's build job. Default: saas-linux-small-arm64 "
        "for linux/arm64, saas-linux-small-amd64 (with QEMU) for the others.",
    )
    image: str = Field(
        "docker:27", description="Job image: a docker CLI with buildx (mab adds python3 to it)."
    )
    service: str = Field("docker:27-dind", description="The Docker-in-Docker service jobs use.")
    setup: str = Field(
        "apk add --no-cache python3 py3-pip git",
        min_length=1,
        description="Shell command that gives the image python3 (with venv) and git.",
    )


def _install_command(value: str) -> str:
    return check_install(value)


class CIConfig(BaseModel):
    """How the CI workflows that ``mab ci generate`` writes build: one job per platform on
    its runner, then one merge job. Secrets are named here, never given."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    runners: dict[PlatformStr, RunnerLabels] = Field(
        default_factory=dict,
        description="GitHub Actions runs-on label(s) of each platform's build job. Default: "
        "linux/amd64 ubuntu-24.04, linux/arm64 ubuntu-24.04-arm, others ubuntu-24.04 with QEMU.",
    )
    qemu: dict[PlatformStr, bool] = Field(
        default_factory=dict,
        description="Set up QEMU in a platform's job (true) or not (false). Default: only when "
        "the runner's CPU, read from its label, is not the platform's.",
    )
    install: Annotated[str, AfterValidator(_install_command)] | None = Field(
        None,
        description="Shell command that installs mab in a job. Default: pip install "
        "mab-build==VERSION, VERSION being the mab that generates the workflow. Pin a source "
        "you control: mab-build==VERSION, or a git URL at a commit (pip install "
        '"git+https://github.com/ORG/mab@COMMIT"). Not mab (on PyPI, an unrelated project), '
        "nor mab-build without ==VERSION: both are errors.",
    )
    python: VersionText = Field(
        "3.12", description="Python version GitHub jobs set up (GitLab uses the image's python3)."
    )
    branches: list[RefPattern] = Field(
        default_factory=lambda: ["main"],
        description="Branches whose pushes run the workflow (glob patterns).",
    )
    git_tags: list[RefPattern] = Field(
        default_factory=lambda: ["v*"],
        description="Git tags whose pushes run the workflow (glob patterns); [] for none.",
    )
    cache: Literal["auto", "gha", "config"] = Field(
        "auto",
        description="BuildKit cache of the build jobs: the GitHub Actions cache (gha, a scope "
        "per target and platform), or builds.yaml's own cache: section (config; a registry "
        "cache by default). auto: gha on GitHub, config on GitLab.",
    )
    secrets: list[EnvName] = Field(
        default_factory=list,
        description="More secrets the registry login steps get as environment variables of "
        "the same name (e.g. what a registries login.command needs). The password_env and "
        "username_env of registries: entries are passed already.",
    )
    variables: list[EnvName] = Field(
        default_factory=list,
        description="Names that come from GitHub configuration variables (vars.NAME) rather "
        "than secrets (secrets.NAME).",
    )
    gitlab: GitLabCIConfig = Field(
        default_factory=GitLabCIConfig, description="GitLab CI specifics."
    )


# --- end of ci ---------------------------------------------------------------------------------


_SECRET_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _secret_id(value: str) -> str:
    if not _SECRET_ID_RE.match(value):
        raise ValueError(
            f"invalid secret id '{value}': letters, digits, '.', '_' and '-' (e.g. pip.conf)"
        )
    return value


SecretId = Annotated[str, AfterValidator(_secret_id)]


def _some_platforms(value: list[str]) -> list[str]:
    if not value:
        raise ValueError(
            "an empty list builds nothing: name a platform, or remove the key for the "
            "top-level platforms"
        )
    return value


def _positive_size(value: ByteSize) -> ByteSize:
    if value <= 0:
        raise ValueError("a size budget is above 0, e.g. 50MiB; remove the key for no budget")
    return value


TargetPlatforms = Annotated[list[PlatformStr], AfterValidator(_some_platforms)]
SizeBudget = Annotated[ByteSize, BeforeValidator(_not_bool), AfterValidator(_positive_size)]


class BuildSecret(BaseModel):
    """Where a build secret comes from: a file or an environment variable, never a value.

    BuildKit mounts it for the RUN steps that ask (``RUN --mount=type=secret,id=ID``); it
    is not written into any layer, the image's history or the build cache."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    file: str | None = Field(
        None, description="A file with the secret: absolute, or relative to builds.yaml."
    )
    env: EnvName | None = Field(None, description="An environment variable with the secret.")

    @model_validator(mode="after")
    def _one_source(self) -> BuildSecret:
        if (self.file is None) == (self.env is None):
            raise ValueError("give either 'file' or 'env'")
        return self


# --- publish gates: signing, attestations, scan, smoke test (issue 12) ---------------------

# What mab fills in a scan command's arguments.
SCAN_PLACEHOLDERS = ("ref", "platform")
_PLACEHOLDER_RE = re.compile(r"(?<!\$)\{([^{}\s]*)\}")  # {ref}; not a shell's ${VAR}


def _key_reference(value: str) -> str:
    # The value is never echoed: a mistake here may be a pasted key.
    if "-----BEGIN" in value or "\n" in value or looks_like_token(value):
        raise ValueError(
            "looks like a key, not where one is (not shown here): write the path of the key "
            "file (relative to builds.yaml), a KMS URI, or use key_env: NAME"
        )
    return value


def _command_words(value: str | list[str]) -> str | list[str]:
    words = [value] if isinstance(value, str) else value
    if not words or not all(w.strip() for w in words):
        raise ValueError("give a command: a string, or a list of its words")
    return value


def _scan_command(value: str | list[str]) -> str | list[str]:
    words = [value] if isinstance(value, str) else value
    known = ", ".join(f"{{{name}}}" for name in SCAN_PLACEHOLDERS)
    for word in words:
        for name in _PLACEHOLDER_RE.findall(word):
            if name not in SCAN_PLACEHOLDERS:
                raise ValueError(f"unknown placeholder '{{{name}}}'; use {known}")
    return value


def _provenance_mode(value: object) -> object:
    return "min" if value is True else value  # BuildKit's --provenance=true is mode=min


KeyReference = Annotated[str, AfterValidator(_key_reference)]
ProvenanceMode = Annotated[Literal[False, "min", "max"], BeforeValidator(_provenance_mode)]
CommandWords = Annotated[str | list[str], AfterValidator(_command_words)]
ScanCommand = Annotated[
    str | list[str], AfterValidator(_command_words), AfterValidator(_scan_command)
]


class SigningConfig(BaseModel):
    """Sign the image index and every platform image with cosign (key-based, signatures
    stored as tags beside the image) before any tag is written."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    key: KeyReference | None = Field(
        None,
        description="cosign private key: a file (relative to builds.yaml) or a KMS URI "
        "(awskms://, gcpkms://, azurekms://, hashivault://).",
    )
    key_env: EnvName | None = Field(
        None, description="Or: an environment variable holding the private key (PEM)."
    )
    password_env: EnvName = Field(
        "COSIGN_PASSWORD",
        description="Environment variable with the key's password (empty for a key without "
        "one). Passed to cosign in its environment, never in its arguments.",
    )
    public_key: KeyReference = Field(
        description="cosign public key (a file relative to builds.yaml, or a KMS URI) that the "
        "gates and mab verify check signatures with."
    )
    tlog_upload: bool = Field(
        False,
        description="Upload signatures to the transparency log (Rekor). Off: signing and "
        "verifying work offline.",
    )

    @model_validator(mode="after")
    def _one_key(self) -> SigningConfig:
        if (self.key is None) == (self.key_env is None):
            raise ValueError("give either 'key' (a file or KMS URI) or 'key_env'")
        return self


class SbomConfig(BaseModel):
    """BuildKit's SBOM attestation with a generator image of your choice."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    generator: str = Field(
        min_length=1,
        description="An image that follows BuildKit's SBOM scanner protocol (reads the rootfs "
        "at $BUILDKIT_SCAN_SOURCE, writes SPDX to $BUILDKIT_SCAN_DESTINATION).",
    )


class AttestationsConfig(BaseModel):
    """BuildKit attestations, one set per platform image, stored in the image index and
    linked to their image; the publish gates check they are there."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    provenance: ProvenanceMode = Field(
        "min",
        description="SLSA provenance: false, min, or max (max records the build args, so "
        "args named like secrets are refused unless listed in safe_args).",
    )
    sbom: bool | SbomConfig = Field(
        False,
        description="An SPDX SBOM per platform: true (BuildKit's default generator image) or "
        "{generator: IMAGE}.",
    )
    safe_args: list[str] = Field(
        default_factory=list,
        description="Build args named like secrets that may go into max provenance anyway "
        "(their values are not secret).",
    )


class ScanConfig(BaseModel):
    """A vulnerability scanner run on every platform image, by digest, before any tag."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    command: ScanCommand = Field(
        description="Run in the folder of builds.yaml, without a shell (a string is split "
        "like a shell would); {ref} is REPOSITORY@DIGEST of one platform image, {platform} "
        "its platform. A non-zero exit fails that platform."
    )
    timeout: Annotated[float, BeforeValidator(_not_bool)] = Field(
        900, gt=0, description="Seconds one scan may take."
    )


class SmokeTest(BaseModel):
    """A command run in the image of every platform (by digest; foreign ones under QEMU)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    command: CommandWords = Field(
        description="The container's command (docker run --rm IMAGE COMMAND); a string is "
        "split like a shell would, without one."
    )
    expect: PatternStr | None = Field(
        None, description="A regular expression searched in its output; no match fails it."
    )


# --- end of publish gates ----------------------------------------------------------------------


class TargetConfig(BaseModel):
    """One image: built from a Dockerfile or a template, for one or more platforms."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    context: str = Field(".", description="Build context folder, relative to builds.yaml.")
    dockerfile: str | None = Field(
        None,
        description="Dockerfile path relative to the context (default: Dockerfile). "
        "Exclusive with template.",
    )
    template: str | None = Field(
        None,
        description="Name of a template in templates/ (e.g. 'go'), or a path to a .j2 file "
        "relative to builds.yaml. Exclusive with dockerfile.",
    )
    vars: dict[str, Any] = Field(
        default_factory=dict, description="Variables for the template (StrictUndefined)."
    )
    args: dict[str, ScalarStr] = Field(default_factory=dict, description="Build arguments.")
    platforms: TargetPlatforms | None = Field(
        None, description="Platforms for this target; default: the top-level platforms."
    )
    tags: list[TagItem] | None = Field(
        None,
        min_length=1,
        description="Tags of the image index: strings and tag rules. Default: defaults.tags, "
        "else [latest].",
    )
    stage: str | None = Field(None, description="Build stage to stop at (--target).")
    size_budget: SizeBudget | None = Field(
        None,
        description="Largest compressed image size per platform, e.g. 50MiB or 20MB; a "
        "bigger image fails the target before any tag is written.",
    )
    labels: dict[str, ScalarStr] = Field(default_factory=dict, description="Image labels.")
    secrets: dict[SecretId, BuildSecret] = Field(
        default_factory=dict,
        description="Build secrets by id (buildx --secret), e.g. {pip.conf: {file: pip.conf}} "
        "or {npmrc: {env: NPMRC}}: package-index credentials that must not end up in the "
        "image. The templates mount pip.conf and npmrc when given.",
    )
    retention: Retention | None = Field(None, description="What mab clean keeps.")
    test: SmokeTest | None = Field(
        None, description="Smoke test run in every platform image before any tag is written."
    )
    signing: SigningConfig | None = Field(None, description="Replaces the top-level signing.")
    attestations: AttestationsConfig | None = Field(
        None, description="Replaces the top-level attestations."
    )
    scan: ScanConfig | None = Field(None, description="Replaces the top-level scan.")

    @model_validator(mode="after")
    def _one_source(self) -> TargetConfig:
        if self.dockerfile is not None and self.template is not None:
            raise ValueError("give either 'dockerfile' or 'template', not both")
        return self


# What mab.planning.cache fills in a cache ref, dir or scope.
CACHE_PLACEHOLDERS = ("repository", "target", "platform")
_BRACED = re.compile(r"\{([^{}]*)\}")


def _cache_template(value: str) -> str:
    known = ", ".join(f"{{{name}}}" for name in CACHE_PLACEHOLDERS)
    for name in _BRACED.findall(value):
        if name not in CACHE_PLACEHOLDERS:
            raise ValueError(f"unknown placeholder '{{{name}}}' in '{value}'; use {known}")
    if any(brace in _BRACED.sub("", value) for brace in "{}"):
        raise ValueError(f"unbalanced brace in '{value}'; placeholders are {known}")
    return value


CacheTemplate = Annotated[str, AfterValidator(_cache_template)]


class CacheConfig(BaseModel):
    """BuildKit cache, per target and platform (so parallel jobs never share one)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    type: Literal["registry", "local", "gha", "inline", "none"] = Field(
        "registry", description="Where the cache lives."
    )
    mode: Literal["min", "max"] = Field(
        "max", description="max also caches the layers of intermediate (build) stages."
    )
    export: Literal["auto", "always", "never"] = Field(
        "auto",
        description="When to export (write) the cache: auto, only in CI (CI=true) and in a "
        "split build's jobs, where BuildKit starts empty; locally BuildKit's own cache "
        "serves the next run and the export would only cost time. Imported always.",
    )
    ref: CacheTemplate = Field(
        "{repository}-buildcache:{platform}",
        description="registry: the cache ref; {repository}, {target}, {platform} (a slug).",
    )
    dir: CacheTemplate = Field(
        ".mab-cache/{target}/{platform}", description="local: folder, relative to builds.yaml."
    )
    scope: CacheTemplate = Field("{target}-{platform}", description="gha: the cache scope.")


class BuilderConfig(BaseModel):
    """A buildx builder and the platforms it serves natively."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str = Field(description="buildx builder name (a docker context name for 'docker').")
    driver: Literal["docker", "docker-container", "remote", "kubernetes"] = Field(
        "docker", description="buildx driver."
    )
    endpoint: str | None = Field(
        None,
        description="docker: the engine (unix:///var/run/docker.sock, tcp://host:2376); "
        "docker-container: the engine hosting the BuildKit container; remote: the BuildKit "
        "address (tcp://buildkitd:1234); kubernetes: unused.",
    )
    driver_opts: dict[str, ScalarStr] = Field(
        default_factory=dict,
        description="buildx --driver-opt KEY=VALUE pairs. docker-container: image, network, "
        "memory, cpu-*, env.NAME ...; remote: cacert, cert, key (TLS files: paths, absolute "
        "or relative to builds.yaml, never the PEM itself), servername; kubernetes: passed "
        "as given; docker: none.",
    )
    config: str | None = Field(
        None,
        description="docker-container and kubernetes: a buildkitd.toml (buildx "
        "--buildkitd-config), relative to builds.yaml. A remote BuildKit reads its own.",
    )
    platforms: list[PlatformStr] = Field(
        min_length=1, description="Platforms this builder runs natively."
    )
    emulates: list[PlatformStr] = Field(
        default_factory=list,
        description="Platforms it can build under QEMU, used when no builder is native.",
    )

    @model_validator(mode="after")
    def _driver_options(self) -> BuilderConfig:
        check_driver_options(self.driver, self.endpoint, self.driver_opts, self.config)
        return self


# buildx 0.29's --driver-opt keys, per driver (docker-container also takes env.NAME); buildx
# rejects any other at `buildx create`, after the run has started: mab says so at load time.
CONTAINER_OPTS = (
    "image",
    "network",
    "memory",
    "memory-swap",
    "cpu-quota",
    "cpu-period",
    "cpu-shares",
    "cpuset-cpus",
    "cpuset-mems",
    "cgroup-parent",
    "restart-policy",
    "default-load",
)
REMOTE_OPTS = ("cacert", "cert", "key", "servername", "default-load")
TLS_FILE_OPTS = ("cacert", "cert", "key")
REMOTE_SCHEMES = ("tcp://", "unix://")


def check_driver_options(
    driver: str, endpoint: str | None, opts: Mapping[str, str], config: str | None
) -> None:
    """What buildx would refuse, or what would leak a secret, in a builder's options:
    unknown keys for the driver, a remote endpoint that is not tcp:// or unix://, TLS
    options without their partners (buildx's own rules), TLS material written inline."""
    if driver == "docker" and opts:
        raise FieldError(
            ("driver_opts",),
            "the docker driver takes no driver options (mab makes a docker context for it)",
        )
    if config is not None and driver not in ("docker-container", "kubernetes"):
        where = "on its own machine" if driver == "remote" else "by dockerd's daemon.json"
        raise FieldError(
            ("config",),
            f"config: is for docker-container and kubernetes builders; a {driver} builder's "
            f"BuildKit is configured {where}",
        )
    known = {"docker-container": CONTAINER_OPTS, "remote": REMOTE_OPTS}.get(driver)
    if known is not None:
        for key in opts:
            if key in known or (driver == "docker-container" and key.startswith("env.")):
                continue
            close = difflib.get_close_matches(key, known, n=1)
            extra = f"; did you mean '{close[0]}'?" if close else ""
            raise FieldError(
                ("driver_opts", key),
                f"unknown {driver} driver option '{key}'{extra} (valid: {', '.join(known)}"
                + (", env.NAME)" if driver == "docker-container" else ")"),
            )
    for key in TLS_FILE_OPTS:
        value = opts.get(key)
        if driver == "remote" and value is not None and _inline_material(value):
            raise FieldError(
                ("driver_opts", key),
                f"{key} holds the TLS material itself (not shown here): write the path of a "
                "file that holds it; builds.yaml names files, never certificates or keys",
            )
    if driver != "remote":
        return
    if endpoint is None:
        raise FieldError(
            ("endpoint",), "a remote builder needs its BuildKit address, e.g. tcp://buildkitd:1234"
        )
    if not endpoint.startswith(REMOTE_SCHEMES):
        raise FieldError(
            ("endpoint",),
            f"a remote builder's endpoint is tcp://HOST:PORT or unix:///PATH, not '{endpoint}'",
        )
    tls = [k for k in ("cacert", "cert", "key", "servername") if k in opts]
    if tls and not endpoint.startswith("tcp://"):
        raise FieldError(("driver_opts", tls[0]), "TLS options need a tcp:// endpoint")
    if ("cert" in opts) != ("key" in opts):
        have, lacks = ("cert", "key") if "cert" in opts else ("key", "cert")
        raise FieldError(
            ("driver_opts", have), f"{have} needs {lacks} too (the client's certificate pair)"
        )
    if tls and "cacert" not in opts:
        raise FieldError(
            ("driver_opts", tls[0]),
            f"{tls[0]} needs cacert too: the CA that signed the BuildKit server's certificate",
        )


def _inline_material(value: str) -> bool:
    # a value that looks like a token but is no file is caught by the file check
    return "-----BEGIN" in value or "\n" in value


class BuildsConfig(BaseModel):
    """The whole builds.yaml, version 1."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        defer_build=True,
        title="mab builds.yaml",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    version: Literal[1] = Field(1, description="Format version of this file.")
    registry: RegistryStr | None = Field(
        None,
        description="Where images go, HOST[:PORT][/PATH]. Default: localhost:5000, started "
        "by mab if nothing answers there.",
    )
    platforms: list[PlatformStr] = Field(
        default_factory=lambda: list(DEFAULT_PLATFORMS),
        min_length=1,
        description="Default platforms of every target.",
    )
    base_images: dict[str, str] = Field(
        default_factory=dict,
        description="Map an image named in FROM to another image (a mirror); passed to buildx "
        "as named build contexts, so Dockerfiles keep their official names.",
    )
    defaults: Defaults = Field(default_factory=Defaults, description="Target defaults.")
    registries: dict[HostStr, RegistryAuth] = Field(default_factory=dict, description="Logins.")
    builder: str | None = Field(None, description="buildx builder to use; default: current.")
    builders: list[BuilderConfig] = Field(
        default_factory=list,
        description="Builders to route platforms to: each platform goes to a builder that "
        "serves it natively, else to one that emulates it (slower).",
    )
    cache: CacheConfig = Field(default_factory=CacheConfig, description="Build cache.")
    concurrency: Count = Field(
        4,
        ge=1,
        le=64,
        description="buildx builds run at once (one builds a target's platforms together, "
        "or one platform).",
    )
    allow_external_templates: bool = Field(
        False,
        description="Let template: name a .j2 file outside the folder of builds.yaml (an "
        "absolute path, '..', a symlink out). Off: templates come only from templates/ beside "
        "builds.yaml, paths under that folder, and mab's own.",
    )
    ci: CIConfig = Field(
        default_factory=CIConfig,
        description="The CI workflows mab ci generate writes (runners, install, triggers).",
    )
    signing: SigningConfig | None = Field(
        None, description="Sign every target's index and platform images (cosign) before tags."
    )
    attestations: AttestationsConfig | None = Field(
        None, description="BuildKit provenance and SBOM attestations of every target."
    )
    scan: ScanConfig | None = Field(
        None, description="Scan every platform image of every target before any tag is written."
    )
    targets: dict[TargetName, TargetConfig] = Field(
        min_length=1, description="The images to build, by name."
    )

    @model_validator(mode="after")
    def _provenance_args(self) -> BuildsConfig:
        """Max provenance records every build arg in the published attestation: an arg
        named like a secret (the names lint rule MAB005 flags) is refused there unless the
        user lists it in safe_args."""
        for name, target in self.targets.items():
            wanted = target.attestations or self.attestations
            if wanted is None or wanted.provenance != "max":
                continue
            for arg in target.args:
                if SECRET_NAME_RE.search(arg) and arg not in wanted.safe_args:
                    raise FieldError(
                        ("targets", name, "args", arg),
                        f"build arg '{arg}' is named like a secret and provenance: max records "
                        "every build arg in the published attestation, readable by anyone who "
                        "can pull the image; pass it as a build secret (secrets:), use "
                        f"provenance: min, or, if its value is not secret, list it in "
                        f"attestations: {{safe_args: [{arg}]}}",
                    )
        return self

    @model_validator(mode="after")
    def _builders(self) -> BuildsConfig:
        first: dict[str, int] = {}
        for i, builder in enumerate(self.builders):
            if builder.name in first:
                raise FieldError(
                    ("builders", i, "name"),
                    f"name used twice: {builder.name} (also builders[{first[builder.name]}]);"
                    " give each builder its own name",
                )
            first[builder.name] = i
        if self.builder is not None and self.builders:
            raise FieldError(("builder",), "give either 'builder' or 'builders', not both")
        return self


def short_repr(value: object) -> str:
    """*value*'s repr for an error message: secrets redacted, at most 60 characters."""
    text = redact(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def json_schema() -> dict[str, Any]:
    return BuildsConfig.model_json_schema()
