"""How CI jobs install mab (``ci.install``), checked: the distribution is ``mab-build``
(``mab`` on PyPI is someone else's project), and a job must install exactly the version
that generated its workflow, or a source the user controls.

In the config layer, so that builds.yaml's model can validate ``ci.install`` and the CI
generator (mab.ci.generate) can write the install line, with one rule between them."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from mab import __version__

# The distribution this project publishes; the command and the import package stay ``mab``.
# ``mab`` on PyPI is someone else's project (Multi-Armed Bandits, 0.1.24, 2016).
DISTRIBUTION = "mab-build"
FOREIGN_DISTRIBUTION = "mab"

# Words that run an installer: pip, pip3, pip3.12, /opt/mab/bin/pip, pipx, uv (uv pip
# install, uv tool install). ``python -m pip install`` has the word pip too.
_INSTALLER_RE = re.compile(r"^(?:pip[0-9.]*|pipx|uv)$")
# pip install options that take a value as the next word (``-r FILE``, ``-e PATH``, ...):
# that word is not a requirement
_VALUE_OPTIONS = frozenset(
    {
        *("-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-t", "--target"),
        *("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--prefix"),
        *("--root", "--src", "--python", "-p", "--platform", "--python-version"),
        *("--implementation", "--abi", "--no-binary", "--only-binary", "-C"),
        *("--config-settings", "--global-option", "--upgrade-strategy", "--trusted-host"),
        *("--cache-dir", "--log", "--proxy", "--retries", "--timeout", "--exists-action"),
        *("--cert", "--client-cert", "--report", "--progress-bar", "--index", "--with"),
    }
)
# NAME[EXTRAS] then the rest of a PEP 508 requirement (specifiers, ``@ URL``, ``; marker``)
_REQUIREMENT_RE = re.compile(
    r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*(.*)$", re.S
)
_EXACT_PIN_RE = re.compile(r"^(?:===?)\s*[A-Za-z0-9][A-Za-z0-9.+!_-]*\s*(?:;.*)?$", re.S)
_OPERATORS = ";&|()<>"  # what ends a simple command in a shell line
_GIT_COMMIT_RE = re.compile(r"@[0-9a-fA-F]{7,40}(?:$|#)")


def running_version() -> str:
    """The version of the running mab: its installed distribution's, else the package's."""
    from importlib import metadata  # noqa: PLC0415 - ~20 ms, and only --version and ci need it

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__


def default_install() -> str:
    """What the jobs run when builds.yaml sets no ``ci.install``: this very version."""
    return f"pip install {DISTRIBUTION}=={running_version()}"


def _normal_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PyPI's normalisation (PEP 503)


def _install_words(command: str) -> Iterable[list[str]]:
    """The words after an installer's ``install`` in each simple command of *command*
    (``pip install -U X && mab --version``: ``-U X``)."""
    for line in command.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=_OPERATORS)
        lexer.whitespace_split = True
        lexer.commenters = ""
        try:
            tokens = list(lexer)
        except ValueError:
            continue  # unbalanced quotes: the job's shell says so
        segments: list[list[str]] = [[]]
        for token in tokens:
            if token.startswith("#"):
                break  # a comment: the rest of the line
            if token and set(token) <= set(_OPERATORS):
                segments.append([])
            else:
                segments[-1].append(token)
        for segment in segments:
            names = [word.rsplit("/", 1)[-1] for word in segment]
            for i, name in enumerate(names):
                if name == "install" and any(_INSTALLER_RE.match(n) for n in names[:i]):
                    yield segment[i + 1 :]
                    break


def _named_requirements(command: str) -> Iterable[tuple[str, str, str]]:
    """(word, normalised name, rest) of each requirement *command* installs by name from an
    index; not a direct reference (``NAME @ URL``), a path, a URL or an option's value."""
    for words in _install_words(command):
        skip = False
        for word in words:
            if skip:
                skip = False
                continue
            if word.startswith("-"):
                skip = word in _VALUE_OPTIONS
                continue
            match = _REQUIREMENT_RE.match(word)
            if match is None:
                continue
            rest = match[2].strip()
            if rest == "" or rest[0] in "<>=!~;":
                yield word, _normal_name(match[1]), rest


def install_problem(command: str) -> str | None:
    """Why ``ci.install`` *command* must not be used, or None.

    It must not install ``mab`` from a package index (that is someone else's project), nor
    ``mab-build`` without an exact ``==VERSION`` (a job would get whatever is newest when it
    runs). A URL, a path or ``NAME @ URL`` is the user's own source and passes."""
    if not command.strip():
        return "empty: give the command that installs mab, or remove the key for the default"
    for word, name, rest in _named_requirements(command):
        if name == FOREIGN_DISTRIBUTION:
            return (
                f"'{word}' installs the PyPI project named mab, which is not this mab "
                "(it is an unrelated Multi-Armed Bandits library): every job would run "
                "someone else's code with the registry credentials in its environment. "
                f"This mab is the distribution {DISTRIBUTION}: remove ci.install for "
                f"the default (pip install {DISTRIBUTION}=={running_version()}), or "
                'install from a source you control, e.g. pip install "git+https://'
                'github.com/ORG/mab@COMMIT"'
            )
        if name == DISTRIBUTION and not _EXACT_PIN_RE.match(rest):
            return (
                f"'{word}' is not pinned: each job would install whatever {DISTRIBUTION} "
                "is newest when it runs, not the mab that generated the workflow. Pin "
                f"it ({DISTRIBUTION}=={running_version()}), or remove ci.install for "
                "that default"
            )
    return None


def check_install(command: str) -> str:
    """``ci.install``'s validation: *command*, or ValueError saying what is wrong with it."""
    problem = install_problem(command)
    if problem is not None:
        raise ValueError(problem)
    return command
