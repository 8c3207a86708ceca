""".dockerignore semantics exactly as BuildKit applies them, to know which files of a
build context BuildKit would send (for the input digest of a build).

A port of the rules of moby/patternmatcher (the matcher BuildKit vendors; read from
BuildKit v0.26.3's vendor tree) and of ``ignorefile.ReadAll``, checked against that
project's test cases (tests/unit/test_dockerignore.py) and against a real BuildKit
(tests/integration/test_skip.py lists what a ``COPY . /ctx`` received):

- a line starting with ``#`` is a comment; lines are trimmed, cleaned like Go's
  ``filepath.Clean`` and a leading ``/`` dropped; ``!`` re-includes;
- ``*`` and ``?`` never cross ``/``; ``**`` matches any number of directories;
  ``[...]`` classes and ``\\`` escapes as in Go's ``filepath.Match``;
- a pattern that matches a directory excludes everything under it, but a later ``!``
  pattern can re-include a file below it (its parent directories come with it);
- the last pattern that matches decides.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_ESCAPE = set(".+()|{}$")


def clean(path: str) -> str:
    """Go's ``filepath.Clean`` for slash paths."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file (``ignorefile.ReadAll``)."""
    patterns: list[str] = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix("\ufeff") if number == 0 else raw
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append(("!" if invert else "") + line)
    return patterns


@dataclass
class _Pattern:
    text: str
    exclusion: bool
    kind: str = ""  # exact, prefix, suffix, regexp
    regexp: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        self._compile()

    def _compile(self) -> None:
        out = "^"
        kind = "exact"
        text = self.text
        i = 0
        step = 0
        while i < len(text):
            ch = text[i]
            i += 1
            if ch == "*":
                if i < len(text) and text[i] == "*":
                    i += 1
                    if i < len(text) and text[i] == "/":
                        i += 1
                    if i >= len(text):
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            out += ".*"
                            kind = "regexp"
                    else:
                        out += "(.*/)?"
                        kind = "regexp"
                    if step == 0:
                        kind = "suffix"
                else:
                    out += "[^/]*"
                    kind = "regexp"
            elif ch == "?":
                out += "[^/]"
                kind = "regexp"
            elif ch in _ESCAPE:
                out += "\\" + ch
            elif ch == "\\":
                if i < len(text):
                    out += "\\" + text[i]
                    i += 1
                    kind = "regexp"
                else:
                    out += "\\\\"
            elif ch in "[]":
                out += ch
                kind = "regexp"
            else:
                out += ch  # as Go does: other regexp characters (^) keep their meaning
            step += 1
        self.kind = kind
        if kind == "regexp":
            self.regexp = re.compile(out + "$")

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regexp is not None
        return self.regexp.match(path) is not None


class PatternError(ValueError):
    """A .dockerignore pattern BuildKit would refuse."""


@dataclass
class Matcher:
    """``PatternMatcher`` with ``MatchesUsingParentResults``, the walk BuildKit's context
    transfer (fsutil) does: a path's per-pattern results start from its parent's."""

    patterns: list[_Pattern] = field(default_factory=list)

    @classmethod
    def from_patterns(cls, patterns: Sequence[str]) -> Matcher:
        compiled: list[_Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise PatternError('illegal exclusion pattern: "!"')
                text = text[1:]
            if text.count("[") != text.count("]"):
                raise PatternError(f"syntax error in pattern: {raw!r}")
            compiled.append(_Pattern(text, exclusion))
        return cls(compiled)

    @property
    def exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str, parent: Sequence[bool] | None) -> tuple[bool, list[bool]]:
        """(excluded?, per-pattern matches to hand to the children of *path*)."""
        matched = False
        info = [False] * len(self.patterns)
        for index, pattern in enumerate(self.patterns):
            match = bool(parent[index]) if parent else False
            if not match:
                if pattern.exclusion != matched:
                    continue
                match = pattern.match(path)
                if not match and not parent:
                    head = posixpath.dirname(path)
                    if head:
                        dirs = head.split("/")
                        match = any(
                            pattern.match("/".join(dirs[: i + 1])) for i in range(len(dirs))
                        )
            info[index] = match
            if match:
                matched = not pattern.exclusion
        return matched, info
