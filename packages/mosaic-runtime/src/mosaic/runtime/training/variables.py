"""``${var}`` substitution in presets and ``--set a.b=value`` overrides.

A string that is exactly ``${name}`` takes the variable's value with its type (``${d_model}`` stays
an int); ``${name}`` inside longer text is interpolated as text. Variables may refer to other
variables; a cycle is an error naming the chain.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from mosaic.core.errors import ConfigError, ConfigProblem
from mosaic.runtime.training.yaml_source import MAX_DEPTH, child_path, override_value

REFERENCE = re.compile(r"\$\{([^}]*)\}")
#: characters plus values that all uses of variables may add to a preset
MAX_EXPANSION = 1_000_000


def _size(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_size(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(_size(item) for item in value)
    return len(value) if isinstance(value, str) else 1


class _Resolver:
    def __init__(self, variables: Mapping[str, Any], problems: list[ConfigProblem]) -> None:
        self.variables = dict(variables)
        self.problems = problems
        self.resolved: dict[str, Any] = {}
        self.active: list[str] = []
        self.sizes: dict[str, int] = {}
        self.expanded = 0
        self.over_budget = False

    def variable(self, name: str, used_at: str) -> tuple[bool, Any]:
        if name in self.resolved:
            return self.spend(name, used_at)
        if name not in self.variables:
            close = difflib.get_close_matches(name, list(self.variables), n=1)
            self.problems.append(
                ConfigProblem(
                    used_at,
                    f"unknown variable ${{{name}}}",
                    hint=f"did you mean ${{{close[0]}}}?" if close else f"known: {', '.join(sorted(self.variables)) or 'none'}",
                )
            )
            return False, None
        if name in self.active:
            chain = " -> ".join([*self.active[self.active.index(name):], name])
            self.problems.append(ConfigProblem(f"$.vars.{name}", f"variable cycle: {chain}"))
            return False, None
        self.active.append(name)
        value = self.value(self.variables[name], f"$.vars.{name}")
        self.active.pop()
        self.resolved[name] = value
        self.sizes[name] = _size(value)
        return True, value

    def spend(self, name: str, used_at: str) -> tuple[bool, Any]:
        """Each use of a variable copies its value; bound the total, so that variables built from
        variables (``b: ${a}${a}``, ``c: ${b}${b}`` ...) cannot grow a small preset without limit."""
        self.expanded += self.sizes.get(name, 1)
        if self.expanded > MAX_EXPANSION:
            if not self.over_budget:
                self.problems.append(ConfigProblem(used_at, f"variables expand to more than {MAX_EXPANSION:,} "
                                                            "characters and values"))
            self.over_budget = True
            return False, None
        return True, self.resolved[name]

    def value(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {key: self.value(item, child_path(path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item, child_path(path, index)) for index, item in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = REFERENCE.fullmatch(value)
        if whole:
            ok, resolved = self.variable(whole.group(1).strip(), path)
            return resolved if ok else value

        def substitute(match: re.Match[str]) -> str:
            ok, resolved = self.variable(match.group(1).strip(), path)
            return str(resolved) if ok else match.group(0)

        return REFERENCE.sub(substitute, value)


def resolve_variables(data: dict[str, Any], *, source: str | None = None) -> dict[str, Any]:
    """Substitute every ``${var}`` of ``data`` (a preset mapping) from its ``vars`` section."""
    problems: list[ConfigProblem] = []
    variables = data.get("vars") or {}
    if not isinstance(variables, dict):
        raise ConfigError([ConfigProblem("$.vars", "expected a mapping of variable names to values")], source=source)
    resolver = _Resolver(variables, problems)
    for name in variables:
        resolver.variable(name, f"$.vars.{name}")
    out = {key: (resolver.resolved if key == "vars" else resolver.value(value, child_path("$", key)))
           for key, value in data.items()}
    if problems:
        raise ConfigError(_unique(problems), source=source)
    return out


def _unique(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            out.append(problem)
    return out


TOP_LEVEL_KEYS = ("version", "name", "notes", "vars", "targets")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``trainer.steps=50`` -> (["trainer", "steps"], 50); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError([ConfigProblem("--set", f"expected KEY=VALUE, got {text!r}")])
    parts: list[str | int] = []
    for match in _SEGMENT.finditer(key):
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
    canonical = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    if not parts or isinstance(parts[0], int) or canonical != key:
        raise ConfigError([ConfigProblem("--set", f"malformed key {key!r}")])
    if len(parts) > MAX_DEPTH:  # as deep as a preset file may nest, and no deeper
        raise ConfigError([ConfigProblem("--set", f"the key has {len(parts)} parts; a preset nests at most "
                                                  f"{MAX_DEPTH} deep")])
    try:
        return parts, override_value(raw)
    except ConfigError as exc:  # a value the preset reader refuses (a 400-digit integer, a tag)
        raise ConfigError([ConfigProblem("--set", f"{text!r}: {problem.message}", hint=problem.hint)
                           for problem in exc.problems]) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides. Keys starting with a top-level preset key (``vars.x``,
    ``targets[0].trainer.steps``) are absolute; any other key applies to every target
    (``trainer.steps=50``). A variable the preset does not declare is an error: a typo
    (``vars.d_modle``) would otherwise change nothing, silently."""
    problems: list[ConfigProblem] = []
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] == "vars" and len(parts) > 1:
            found = data.get("vars")
            declared: dict[str, Any] = found if isinstance(found, dict) else {}
            if parts[1] not in declared:
                close = difflib.get_close_matches(str(parts[1]), list(declared), n=1)
                problems.append(ConfigProblem(
                    "--set", f"{text!r}: the preset declares no variable {parts[1]!r}",
                    hint=f"did you mean vars.{close[0]}?" if close else f"declared: {', '.join(declared) or 'none'}",
                ))
                continue
        if parts[0] in TOP_LEVEL_KEYS:
            _set(data, parts, value, text, problems)
            continue
        targets = data.get("targets")
        if not isinstance(targets, list) or not targets:
            problems.append(ConfigProblem("--set", f"{text!r}: the preset has no targets to apply it to"))
            continue
        for target in targets:
            _set(target, parts, value, text, problems)
    if problems:
        raise ConfigError(problems, source="--set")
    return data


def _set(node: Any, parts: list[str | int], value: Any, text: str, problems: list[ConfigProblem]) -> None:
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(part, int):
            if part == 0 and not last and isinstance(node, dict) and node:
                # a section that takes a list (curriculum) may be written as its one item; `presets
                # show` prints it as the list it means, so the path shown there must work too
                continue
            if not isinstance(node, list) or part >= len(node):
                problems.append(ConfigProblem("--set", f"{text!r}: no list item [{part}] there"))
                return
            if last:
                node[part] = value
            else:
                node = node[part]
            continue
        if not isinstance(node, dict):
            problems.append(ConfigProblem("--set", f"{text!r}: {part!r} is not inside a mapping"))
            return
        if last:
            node[part] = value
        else:
            node = node.setdefault(part, {})
