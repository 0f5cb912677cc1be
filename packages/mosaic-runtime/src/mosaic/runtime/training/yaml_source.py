"""Reading YAML while remembering where every value came from, with every parse bounded.

Presets are reported by ``$.targets[0].model.d_model``-style paths; this module keeps a map from
those paths to the YAML line each value sits on, so that every problem names its line.

A preset may come from anyone, so reading one is bounded before it starts: the bytes must be UTF-8
and at most :data:`MAX_PRESET_BYTES`; the event stream is counted (at most :data:`MAX_NODES` values,
nesting at most :data:`MAX_DEPTH` deep) before a node graph is built; aliases are expanded against
the same node budget (a "billion laughs" file stops at the budget) and an alias inside its own
anchor is refused. Only plain YAML types are built: a ``!!python/*`` or any other explicit tag, and
``<<`` merge keys, are reported, never constructed. Integers are bounded (a 400-digit step count is
a mistake, not a number). Floats may be written ``1e-3`` (YAML 1.1 would read that as a string).
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import yaml

from mosaic.core.errors import ConfigError, ConfigProblem

#: presets are a few KiB; anything this large is a mistake or an attack
MAX_PRESET_BYTES = 1024 * 1024
#: values (scalars, mappings, lists) in one document, aliases expanded
MAX_NODES = 100_000
#: nesting of mappings and lists
MAX_DEPTH = 64
#: integers are 64-bit, as every tensor and counter they end up in (|n| < 2**63) ...
INT_LIMIT = 2**63
#: ... so a literal with more digits is refused before Python builds it (2**63 has 19 digits)
MAX_INT_DIGITS = 19

_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {f"{_TAG}{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq")}
#: YAML 1.2's float form, which also accepts ``1e-3`` and ``2E6`` (no dot, unsigned exponent)
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")


class PresetLoader(yaml.SafeLoader):
    """SafeLoader whose float resolver also accepts ``1e-3``; used for presets and ``--set`` values."""

    yaml_implicit_resolvers = {key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()}


PresetLoader.add_implicit_resolver(f"{_TAG}float", _FLOAT, list("-+0123456789."))


class YamlSyntaxError(ConfigError):
    """The text is not YAML at all (as opposed to YAML that breaks a preset rule)."""


def override_value(text: str) -> Any:
    """A ``--set`` value, read as the same value in a preset would be (``1e-3`` is a float); text
    that is not YAML stays the text it is."""
    if not text.strip():
        return ""
    try:
        return load_yaml(text, source="--set").data
    except YamlSyntaxError:
        return text


@attrs.frozen
class YamlDocument:
    """A parsed YAML document plus the 1-based line of every ``$.path`` in it."""

    data: Any
    lines: dict[str, int]
    source: str

    def line_of(self, path: str) -> int | None:
        """The line of ``path`` or, failing that, of its nearest recorded ancestor; ``None`` for a
        place outside the document (``--set``)."""
        if not path.startswith("$"):
            return None
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


def decode_preset(data: bytes, *, source: str) -> str:
    """The text of a preset file's bytes: bounded in size, strictly UTF-8."""
    if len(data) > MAX_PRESET_BYTES:
        raise ConfigError([ConfigProblem("$", f"preset is more than the limit of {MAX_PRESET_BYTES:,} bytes",
                                         line=1)], source=source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem("$", f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}",
                                         line=line)], source=source) from None


def load_yaml(text: str, *, source: str) -> YamlDocument:
    """Parse one YAML document within the limits above; every problem becomes a
    :class:`ConfigError` with its line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PRESET_BYTES:
        raise ConfigError([ConfigProblem("$", f"preset is more than the limit of {MAX_PRESET_BYTES:,} bytes",
                                         line=1)], source=source)
    try:
        _check_shape(text)
        node = yaml.compose(text, Loader=PresetLoader)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        character = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise YamlSyntaxError([ConfigProblem("$", f"YAML syntax error: character {character} is not allowed in YAML",
                                             line=line)], source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where: int | None = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlSyntaxError([ConfigProblem("$", f"YAML syntax error: {problem}", line=where)],
                              source=source) from None
    except _TooLarge as exc:
        raise ConfigError([ConfigProblem("$", str(exc), line=exc.line)], source=source) from None
    if node is None:
        return YamlDocument(data=None, lines={"$": 1}, source=source)
    builder = _Builder()
    try:
        data = builder.construct(node, "$")
    except _TooLarge as exc:
        raise ConfigError([ConfigProblem("$", str(exc), line=exc.line)], source=source) from None
    if builder.problems:
        raise ConfigError(builder.problems, source=source)
    return YamlDocument(data=data, lines=builder.lines, source=source)


class _TooLarge(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def _check_shape(text: str) -> None:
    """Count values and nesting in the event stream, before any node graph exists."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=PresetLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooLarge(f"nested more than {MAX_DEPTH} levels deep", _line(event))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise _TooLarge(f"more than {MAX_NODES:,} values", _line(event))


def _line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark is not None else None


class _Builder:
    """Plain Python values from a composed node graph, aliases expanded against the node budget."""

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.problems: list[ConfigProblem] = []
        self.built = 0
        self.active: set[int] = set()  # nodes being built: an alias to one of them is a cycle

    def construct(self, node: yaml.Node, path: str) -> Any:
        line = node.start_mark.line + 1
        self.built += 1
        if self.built > MAX_NODES:
            raise _TooLarge(f"aliases expand to more than {MAX_NODES:,} values", line)
        self.lines.setdefault(path, line)
        if id(node) in self.active:
            self.problems.append(ConfigProblem(path, "an alias refers to the mapping or list that contains it",
                                               line=line))
            return None
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node, path, self.problems)
        if node.tag not in _PLAIN_TAGS:
            self.problems.append(_tag_problem(node, path))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return [self.construct(item, child_path(path, index)) for index, item in enumerate(node.value)]
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == f"{_TAG}merge":
                self.problems.append(ConfigProblem(path, "merge keys (<<) are not supported in presets",
                                                   line=line, hint="write the keys out, or use ${variables}"))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problems.append(ConfigProblem(path, "keys must be strings, got a mapping or list", line=line))
                continue
            key = _scalar(key_node, path, self.problems)
            key_path = child_path(path, key)
            if not isinstance(key, str):
                self.problems.append(ConfigProblem(path, f"keys must be strings, got {type(key).__name__} {key!r}",
                                                   line=line))
                continue
            if key in result:
                self.problems.append(ConfigProblem(key_path, "duplicate key (the later value would silently win)",
                                                   line=line))
                continue
            result[key] = self.construct(value_node, key_path)
        return result


def _tag_problem(node: yaml.Node, path: str) -> ConfigProblem:
    return ConfigProblem(path, f"the YAML tag {node.tag.replace(_TAG, '!!')} is not allowed in a preset",
                         line=node.start_mark.line + 1,
                         hint="presets hold only strings, numbers, booleans, null, mappings and lists")


def _scalar(node: yaml.ScalarNode, path: str, problems: list[ConfigProblem]) -> Any:
    line = node.start_mark.line + 1
    if node.tag not in _PLAIN_TAGS:
        problems.append(_tag_problem(node, path))
        return None
    if node.tag == f"{_TAG}int":
        digits = len(node.value.lstrip("+-").replace("_", "").lstrip("0"))
        if digits > MAX_INT_DIGITS:
            problems.append(ConfigProblem(path, f"integer of {digits} digits is out of range "
                                                f"(at most {MAX_INT_DIGITS})", line=line))
            return None
    loader = PresetLoader("")
    try:
        value = loader.construct_object(node, deep=True)
        if isinstance(value, int) and not isinstance(value, bool) and not -INT_LIMIT < value < INT_LIMIT:
            problems.append(ConfigProblem(path, f"integer {value} is out of range (|n| < 2**63)", line=line))
            return None
        return value
    except (yaml.YAMLError, ValueError) as exc:
        problems.append(ConfigProblem(path, f"cannot read this value: {getattr(exc, 'problem', None) or exc}",
                                      line=line))
        return None
    finally:
        loader.dispose()
