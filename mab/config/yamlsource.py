"""Load YAML while keeping the line of every key, and reject duplicate keys.

PyYAML silently keeps the last of two equal keys; in a build file that hides a
mistake (two ``tags:`` under one target), so it is an error here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mab.errors import ConfigError, ConfigIssue

Loc = tuple[str | int, ...]


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


def load_yaml(path: Path) -> tuple[Any, LineMap]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [ConfigIssue(path, None, None, "file not found")],
            hint="run mab in the folder that holds builds.yaml, or pass --file PATH",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(path, None, None, f"cannot read: {exc}")]) from None

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        if node is not None:
            lines[()] = node.start_mark.line + 1
            _index(node, (), lines, path)
            data = loader.construct_document(node)
        else:
            data = None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.context_mark is not None and exc.problem:
            problem += f" ({exc.context} on line {exc.context_mark.line + 1})"
        raise ConfigError(
            [ConfigIssue(path, line, None, f"YAML syntax error: {problem}")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(path, None, None, f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    return data, LineMap(lines)


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
