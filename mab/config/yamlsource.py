"""Load YAML while keeping the line of every key, and reject duplicate keys.

PyYAML silently keeps the last of two equal keys; in a build file that hides a
mistake (two ``tags:`` under one target), so it is an error here.

The file may come from anyone (a pull request, a careless ``--file``), so reading it is
bounded before PyYAML sees it: a regular file of at most ``MAX_BYTES``, UTF-8 text
without control characters, nesting at most ``MAX_DEPTH`` deep, and aliases that add at
most ``MAX_ALIAS_NODES`` nodes. A first pass over the parser's events (which recurses
nowhere) checks the last two, so neither an alias bomb nor ``[[[[...]]]]`` reaches the
composer, the line index or the model. Every problem is a ConfigError with its line.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mab.errors import ConfigError, ConfigIssue

Loc = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024  # 1 MiB: a builds.yaml is a few KiB
MAX_DEPTH = 100  # nested mappings and lists; a real builds.yaml uses about 6
MAX_ALIAS_NODES = 100_000  # nodes that aliases (*name) may add once expanded

# libyaml's parser when PyYAML was built with it (faster, no Python recursion); the
# pure-Python one otherwise. Both give the same nodes, marks and errors.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# What YAML 1.1 forbids in a stream (PyYAML's Reader.NON_PRINTABLE).
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_BOOL_TAG = "tag:yaml.org,2002:bool"


@dataclass(frozen=True)
class LineMap:
    """Maps a field path such as ``("targets", "api", "platforms", 1)`` to its 1-based line."""

    lines: Mapping[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of *loc*, or of its nearest ancestor that has one."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


def _fail(path: Path, line: int | None, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError([ConfigIssue(path, line, None, message)], hint=hint)


def read_text(path: Path) -> str:
    """The text of *path*: a regular file of at most MAX_BYTES, UTF-8, no control characters.

    Opened non-blocking, then checked with fstat, so a FIFO or a device (``/dev/zero``)
    is refused without waiting on it or reading it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _fail(
            path,
            None,
            "file not found",
            hint="run mab in the folder that holds builds.yaml, or pass --file PATH",
        ) from None
    except OSError as exc:
        raise _fail(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
            raise _fail(path, None, f"not a regular file ({kind})")
        data = _read_at_most(fd, MAX_BYTES + 1)
    except OSError as exc:
        raise _fail(path, None, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise _fail(path, None, "larger than 1 MiB, the most mab reads of a YAML file")
    return _decode(path, data)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(
            path,
            line,
            f"not UTF-8: byte 0x{data[exc.start]:02x} at column {column}; save the file as UTF-8",
        ) from None
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise _fail(
            path,
            line,
            f"control character U+{ord(bad.group()):04X} at column {column}; "
            "YAML allows only tabs, line breaks and printable characters",
        )
    return text


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    text = read_text(path)
    lines: dict[Loc, int] = {}
    try:
        _check_bounds(text, path)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                lines[()] = node.start_mark.line + 1
                _index(node, (), lines, path)
                data = loader.construct_document(node)
            else:
                data = None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(path, exc) from None
    except yaml.reader.ReaderError as exc:  # not expected after _decode; located anyway
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        raise _fail(path, line, f"YAML error: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise _fail(path, None, f"YAML error: {exc}") from None
    return data, LineMap(lines)


def _syntax_error(path: Path, exc: yaml.MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.context_mark is not None and exc.problem:
        problem += f" ({exc.context} on line {exc.context_mark.line + 1})"
    return _fail(path, line, f"YAML syntax error: {problem}")


def _check_bounds(text: str, path: Path) -> None:
    """Refuse nesting deeper than MAX_DEPTH and aliases that expand to more than
    MAX_ALIAS_NODES nodes, from the event stream alone (no recursion, nothing built).

    The expanded size of every anchored node is kept, so ``*name`` costs what it would
    cost once copied in: the classic "billion laughs" stops at the alias that crosses the
    limit, with that alias's line."""
    loader = _Loader(text)
    open_nodes: list[list[Any]] = []  # [anchor, expanded size so far] per open collection
    sizes: dict[str, int] = {}  # anchor -> expanded size of its (closed) node
    added = 0
    try:
        while loader.check_event():
            event: yaml.Event = loader.get_event()  # type: ignore[no-untyped-call]
            line = event.start_mark.line + 1 if event.start_mark else None
            if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                open_nodes.append([event.anchor, 1])
                if len(open_nodes) > MAX_DEPTH:
                    raise _fail(
                        path, line, f"nested more than {MAX_DEPTH} levels deep; mab refuses it"
                    )
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, size = open_nodes.pop()
            elif isinstance(event, yaml.ScalarEvent):
                anchor, size = event.anchor, 1
            elif isinstance(event, yaml.AliasEvent):
                anchor, size = None, _alias_size(str(event.anchor), line, sizes, open_nodes, path)
                added += size
                if added > MAX_ALIAS_NODES:
                    raise _fail(
                        path,
                        line,
                        f"aliases expand to more than {MAX_ALIAS_NODES} nodes "
                        f"(at '*{event.anchor}'); mab refuses YAML that grows this much when read",
                    )
            else:
                continue
            if anchor is not None:
                sizes[anchor] = size
            if open_nodes:
                open_nodes[-1][1] += size
    finally:
        loader.dispose()


def _alias_size(
    name: str, line: int | None, sizes: dict[str, int], open_nodes: list[list[Any]], path: Path
) -> int:
    if name in sizes:
        return sizes[name]
    if any(anchor == name for anchor, _ in open_nodes):
        raise _fail(
            path,
            line,
            f"alias '*{name}' is inside its own anchor '&{name}' (a structure that contains "
            "itself)",
        )
    return 1  # an undefined alias: the composer reports it with its line


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int], path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if (
                not isinstance(key_node, yaml.ScalarNode)
                or key_node.tag == "tag:yaml.org,2002:merge"
            ):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            _check_key(key_node, (*loc, key), line, path)
            if key in seen:
                dotted = ".".join(str(p) for p in (*loc, key))
                raise ConfigError(
                    [
                        ConfigIssue(
                            path,
                            line,
                            dotted,
                            f"duplicate key '{key}' (first defined on line {seen[key]})",
                        )
                    ]
                )
            seen[key] = line
            lines[(*loc, key)] = line
            _index(value_node, (*loc, key), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _index(item, (*loc, i), lines, path)


def _check_key(key_node: yaml.ScalarNode, loc: Loc, line: int, path: Path) -> None:
    """YAML 1.1 reads an unquoted ``on:``, ``off:``, ``yes:`` or ``no:`` key as a boolean;
    no key of builds.yaml is a boolean, so say so at the key's own line."""
    if key_node.tag != _BOOL_TAG:
        return
    word = key_node.value
    value = "true" if yaml.constructor.SafeConstructor.bool_values[word.lower()] else "false"
    dotted = ".".join(str(p) for p in loc)
    raise ConfigError(
        [
            ConfigIssue(
                path,
                line,
                dotted,
                f"key {word} is read by YAML as the boolean {value}, not a word; "
                f"quote it: '{word}':",
            )
        ]
    )
