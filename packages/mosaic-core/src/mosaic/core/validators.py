"""The one validator vocabulary of the toolkit's config classes.

Every rule raises :class:`~mosaic.core.errors.InvalidFieldError`, which carries the field's name
apart from its message, so :func:`mosaic.core.config.structure_config` reports the problem at
``$.path.field`` without reading the message. Messages share one form: ``must be <rule>, got
<value>``. Rules that tie fields together (``top_k <= n_experts``) call :func:`reject` from
``__attrs_post_init__``, naming the field the user should change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import attrs

from mosaic.core.errors import InvalidFieldError


def is_path_component(name: object, max_length: int) -> bool:
    """Is ``name`` safe as one path component (a preset's runs directory, a session, a study):
    letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit, at most ``max_length``
    characters. Matched whole (``re.fullmatch``): a ``$`` anchor also accepts a trailing newline."""
    return isinstance(name, str) and re.fullmatch(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{max_length - 1}}}", name) is not None


@attrs.frozen
class Rule:
    """One attrs validator: ``test(value)`` must hold, else ``must be <wording>, got <value>``."""

    wording: str
    test: Callable[[Any], bool] = attrs.field(repr=False)

    def __call__(self, _instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not self.test(value):
            reject(attribute.name, f"must be {self.wording}, got {value!r}")


@attrs.frozen
class OptionalRule:
    """``rule`` for any value but ``None``."""

    rule: Rule

    def __call__(self, instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            self.rule(instance, attribute, value)


@attrs.frozen
class EachRule:
    """``rule`` for every item of a sequence field (reported at the field)."""

    rule: Rule

    def __call__(self, instance: Any, attribute: attrs.Attribute[Any], value: Iterable[Any]) -> None:
        for item in value:
            self.rule(instance, attribute, item)


def reject(field: str, message: str) -> NoReturn:
    """Raise the vocabulary's error for ``field`` (cross-field rules, ``__attrs_post_init__``)."""
    raise InvalidFieldError(field, message)


def greater_than(bound: float) -> Rule:
    return Rule(f"> {bound}", lambda value: value > bound)


def at_least(bound: float) -> Rule:
    return Rule(f">= {bound}", lambda value: value >= bound)


def at_most(bound: float) -> Rule:
    return Rule(f"<= {bound}", lambda value: value <= bound)


def less_than(bound: float) -> Rule:
    return Rule(f"< {bound}", lambda value: value < bound)


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """``low <= value <= high``, each end excluded when open: wording ``in (0, 1]``."""

    def test(value: Any) -> bool:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return bool(above and below)

    return Rule(f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}", test)


def one_of(*choices: Any) -> Rule:
    return Rule(f"one of {', '.join(map(repr, choices))}", lambda value: value in choices)


def optional(rule: Rule) -> OptionalRule:
    return OptionalRule(rule)


def each(rule: Rule) -> EachRule:
    return EachRule(rule)


positive = greater_than(0)
non_negative = at_least(0)
#: strictly between 0 and 1 (EMA retentions, thresholds that must leave both sides reachable)
open_unit = between(0.0, 1.0, low_open=True, high_open=True)
probability = between(0.0, 1.0)
power_of_two = Rule("a power of two >= 2 (the memory routes by bits)",
                    lambda value: value >= 2 and not value & (value - 1))
