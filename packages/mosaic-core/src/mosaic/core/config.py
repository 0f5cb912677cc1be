"""Structuring plain mappings (from YAML, JSON or the command line) into attrs config classes.

One strict cattrs converter: extra keys are rejected, numbers are not silently truncated
(``3.5`` is not an ``int``), booleans are not numbers, a list field takes a list (not a string, whose
characters cattrs would otherwise take as the items, nor a mapping, whose keys it would take), and
every problem is reported at once as a ``$.path: message`` line inside a single
:class:`~mosaic.core.errors.ConfigError`.
"""

from __future__ import annotations

import collections.abc
import functools
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_mapping_structure_fn

from mosaic.core.errors import ConfigError, ConfigProblem, InvalidFieldError

T = TypeVar("T")


def _structure_int(value: Any, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected int, got {_describe(value)}")
    return value


def _structure_float(value: Any, _type: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected float, got {_describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return float(value)


def _structure_bool(value: Any, _type: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected bool (true/false), got {_describe(value)}")
    return value


def _structure_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


@functools.cache
def converter() -> cattrs.Converter:
    """The shared strict converter (built on first use, never at import)."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook_func(_is_literal_type, _structure_literal)
    # per mapping type, keys and values checked; make_mapping_structure_fn (unlike the converter's
    # gen_structure_mapping) registers nothing that would take precedence over this hook
    generated = functools.cache(lambda type_: make_mapping_structure_fn(type_, conv))
    conv.register_structure_hook_func(_is_mapping_type, functools.partial(_structure_mapping, generated))
    conv.register_structure_hook_factory(_is_sequence_type, lambda type_: _sequence_hook(conv, type_))
    return conv


SEQUENCE_ORIGINS = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)


def _is_sequence_type(type_: Any) -> bool:
    return (typing.get_origin(type_) or type_) in SEQUENCE_ORIGINS


def _sequence_hook(conv: cattrs.Converter, type_: Any) -> Callable[[Any, Any], Any]:
    """cattrs' own list / tuple structuring, behind a check that the value is a list: cattrs iterates
    whatever it is given, so ``tasks: add`` became ``('a', 'd', 'd')`` and a mapping its keys."""
    args = typing.get_args(type_)
    is_tuple = (typing.get_origin(type_) or type_) is tuple
    if is_tuple and args and args[-1] is not Ellipsis:
        base: Callable[[Any, Any], Any] = functools.partial(_structure_fixed_tuple, conv, args)
    elif is_tuple:
        base = homogenous_tuple_structure_factory(type_, conv)
    else:
        base = list_structure_factory(type_, conv)

    def structure(value: Any, target: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {_describe(value)}")
        return base(value, target)

    return structure


def _structure_fixed_tuple(conv: cattrs.Converter, args: tuple[Any, ...], value: Any, type_: Any) -> tuple[Any, ...]:
    """A ``tuple[A, B, C]``: exactly that many items, each problem reported at its index."""
    if len(value) != len(args):
        raise ValueError(f"expected a list of {len(args)} items, got {len(value)}")
    items, errors = [], []
    for index, (item, item_type) in enumerate(zip(value, args, strict=True)):
        try:
            items.append(conv.structure(item, item_type))
        except Exception as exc:  # noqa: BLE001 - collected with its index, re-raised below
            note = IterableValidationNote(f"Structuring {type_!r} @ index {index}", index, item_type)
            exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]  # add_note: 3.11+
            errors.append(exc)
    if errors:
        raise IterableValidationError(f"While structuring {type_!r}", errors, type_)
    return tuple(items)


def _is_literal_type(type_: Any) -> bool:
    return bool(typing.get_origin(type_) == typing.Literal)


def _structure_literal(value: Any, type_: Any) -> Any:
    allowed = typing.get_args(type_)
    # bool is an int: `True` must not pass for a Literal[1]
    if not any(value == choice and type(value) is type(choice) for choice in allowed):
        raise ValueError(f"must be one of {', '.join(map(repr, allowed))}, got {repr(value)[:60]}")
    return value


def _is_mapping_type(type_: Any) -> bool:
    return typing.get_origin(type_) is dict or type_ is dict


def _structure_mapping(generated: Any, value: Any, type_: Any) -> Any:
    # cattrs' own mapping hook calls .items() on anything: a string would fail with an AttributeError
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {_describe(value)}")
    return dict(value) if type_ is dict else generated(type_)(value, type_)


def _format_exception(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown key(s): {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, (TypeError, ValueError)) and str(exc):
        return str(exc)
    name = getattr(type_, "__name__", None) or str(type_)
    return f"invalid value for {name}: {exc}"


def config_problems(exc: BaseException, *, path: str = "$") -> list[ConfigProblem]:
    """Flatten a cattrs validation error into ``ConfigProblem``s with ``$.a.b`` paths.

    Paths come from cattrs' structured notes (attribute names, list indices, mapping keys) and, for
    a rule that failed in ``__init__``, from :class:`InvalidFieldError.field`; never from the text.
    """
    problems: list[ConfigProblem] = []
    _collect(exc, path, None, problems)
    return problems


def _collect(exc: BaseException, path: str, type_: Any, problems: list[ConfigProblem]) -> None:
    if isinstance(exc, cattrs.BaseValidationError):
        for inner in exc.exceptions:
            child, child_type = path, None
            for note in getattr(inner, "__notes__", ()):
                if isinstance(note, AttributeValidationNote):
                    child, child_type = f"{path}.{note.name}", note.type
                elif isinstance(note, IterableValidationNote):
                    child, child_type = f"{path}[{note.index!r}]" if not isinstance(note.index, str) \
                        else f"{path}.{note.index}", note.type
            _collect(inner, child, child_type, problems)
        return
    if isinstance(exc, InvalidFieldError):
        problems.append(ConfigProblem(path=f"{path}.{exc.field}", message=exc.detail))
    elif isinstance(exc, ConfigError):
        # a nested structure_config call (e.g. a registry-built sub-config) already has full paths
        problems.extend(exc.problems)
    else:
        problems.append(ConfigProblem(path=path, message=_format_exception(exc, type_)))


def structure_config(
    data: Any, cls: type[T], *, path: str = "$", source: str | None = None
) -> T:
    """Build ``cls`` from ``data`` or raise a :class:`ConfigError` listing every problem."""
    target: type[T] = cls  # attrs.has narrows ``cls`` to an attrs class and loses T
    if not attrs.has(cls):
        raise TypeError(f"{cls!r} is not an attrs class")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            [ConfigProblem(path, f"expected a mapping of {cls.__name__} fields, got {_describe(data)}")],
            source=source,
        )
    try:
        return converter().structure(dict(data), target)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, ConfigError) as exc:
        # a rule that failed in __init__ (after every field structured) arrives bare: same walk
        problems = config_problems(exc, path=path)
    raise ConfigError(_attributed_validator_problems(data, target, path) or problems, source=source)


def _attributed_validator_problems(data: Mapping[str, Any], cls: type, path: str) -> list[ConfigProblem]:
    """Every field validator's complaint, each at its field's path; ``[]`` when that cannot be told.

    A plain attrs validator (``attrs.validators.gt(0)`` in a third-party plugin's config) raises from
    ``__init__`` without naming its field in a form the structuring walk can read, so its problem
    would be reported at the class's path. To place it, the same data is structured again with
    validators switched off and each field's validator is run on its own value. This pass only
    diagnoses: if the data cannot be structured even so (a type error, or a post-init rule that
    fails on unvalidated values), the caller keeps the problems it already has.
    """
    try:
        with attrs.validators.disabled():
            instance: Any = converter().structure(dict(data), cls)
    except Exception:  # noqa: BLE001 - diagnosis only; the original problems stand
        return []
    problems: list[ConfigProblem] = []
    _validate_fields(instance, path, problems, depth=0)
    return problems


def _validate_fields(value: Any, path: str, problems: list[ConfigProblem], depth: int) -> None:
    if depth > 32:  # configs are shallow; a cycle or a pathological nesting stops here
        return
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            child = getattr(value, field.name)
            if field.validator is not None:
                try:
                    field.validator(value, field, child)
                except InvalidFieldError as exc:
                    problems.append(ConfigProblem(path=f"{path}.{exc.field}", message=exc.detail))
                except (TypeError, ValueError) as exc:
                    # attrs' own validators put the message first and the attribute and bounds after
                    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
                    problems.append(ConfigProblem(path=f"{path}.{field.name}", message=message))
            _validate_fields(child, f"{path}.{field.name}", problems, depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _validate_fields(item, f"{path}[{index}]", problems, depth + 1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _validate_fields(item, f"{path}.{key}", problems, depth + 1)


def unstructure_config(config: Any) -> Any:
    """The plain (YAML/JSON-ready) form of a config object."""
    return converter().unstructure(config)


def config_fields(cls: type) -> list[tuple[str, str, Any]]:
    """``(name, type, default)`` for each field of an attrs config class, for display."""
    rows = []
    for field in attrs.fields(cls):
        type_name = _type_name(field.type)
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory() if not default.takes_self else "<computed>"
        elif default is attrs.NOTHING:
            default = "<required>"
        rows.append((field.name, type_name, default))
    return rows


def _type_name(type_: Any) -> str:
    if type_ is None:
        return "any"
    if isinstance(type_, str):
        return type_
    if isinstance(type_, type) and not getattr(type_, "__args__", None):
        return type_.__name__
    return str(type_).replace("typing.", "")
