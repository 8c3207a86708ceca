"""mab's error types.

Every failure a user can act on is a ``MabError``. The CLI maps ``exit_code`` to the
process exit status and prints ``str(error)`` (plus ``hint``) without a traceback.
Configuration problems exit 2; build, publish, verify and engine problems exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class MabError(Exception):
    """Base class: a failure with a one-line cause and, where known, a fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration or template file, located to a line."""

    file: Path
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(MabError):
    """builds.yaml (or a template it names) is invalid. Exit code 2."""

    exit_code = 2

    def __init__(self, issues: list[ConfigIssue], hint: str | None = None) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues), hint)


class UsageError(MabError):
    """The command line asks for something the configuration does not have. Exit code 2."""

    exit_code = 2


class EngineError(MabError):
    """The Docker engine, buildx or the builder cannot do what the plan needs."""


class RegistryError(MabError):
    """The registry is unreachable or refused an operation."""


class BuildError(MabError):
    """A platform image failed to build or push."""


class PushError(BuildError):
    """A built image failed to reach the registry (mab's upload of BuildKit's layout)."""


class PublishError(MabError):
    """Writing an image index under its tags failed."""


class VerifyError(MabError):
    """What the registry serves is not what the plan declared."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like SIGINT's KeyboardInterrupt (exit 143)."""

    exit_code = 143
