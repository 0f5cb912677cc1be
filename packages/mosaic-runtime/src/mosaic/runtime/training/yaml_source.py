"""Reading YAML while remembering where every value came from.

Presets are reported by ``$.targets[0].model.d_model``-style paths; this module keeps a map from
those paths to the YAML line each value sits on, so that every problem names its line.
"""

from __future__ import annotations

from typing import Any

import attrs
import yaml

from mosaic.core.errors import ConfigError, ConfigProblem


@attrs.frozen
class YamlDocument:
    """A parsed YAML document plus the 1-based line of every ``$.path`` in it."""

    data: Any
    lines: dict[str, int]
    source: str

    def line_of(self, path: str) -> int | None:
        """The line of ``path`` or, failing that, of its nearest recorded ancestor."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = parent_path(path)
        return None


def parent_path(path: str) -> str:
    """``$.a.b[0]`` -> ``$.a.b`` -> ``$.a`` -> ``$`` -> ``""``."""
    if path == "$":
        return ""
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else "$"


def child_path(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def load_yaml(text: str, *, source: str) -> YamlDocument:
    """Parse one YAML document; syntax errors become a :class:`ConfigError` with the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem("$", f"YAML syntax error: {problem}", line=line)], source=source) from None
    if node is None:
        return YamlDocument(data=None, lines={"$": 1}, source=source)
    lines: dict[str, int] = {}
    problems: list[ConfigProblem] = []
    data = _construct(node, "$", lines, problems)
    if problems:
        raise ConfigError(problems, source=source)
    return YamlDocument(data=data, lines=lines, source=source)


def _construct(node: yaml.Node, path: str, lines: dict[str, int], problems: list[ConfigProblem]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            key_path = child_path(path, key)
            if key in result:
                problems.append(
                    ConfigProblem(key_path, "duplicate key (the later value would silently win)",
                                  line=key_node.start_mark.line + 1)
                )
                continue
            if not isinstance(key, str):
                problems.append(ConfigProblem(path, f"keys must be strings, got {type(key).__name__} {key!r}",
                                              line=key_node.start_mark.line + 1))
                continue
            result[key] = _construct(value_node, key_path, lines, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, child_path(path, index), lines, problems) for index, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
