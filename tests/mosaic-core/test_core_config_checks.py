"""The validator vocabulary, problem paths without message parsing, nested component mappings
structured through the registry, and provides/requires matching between components."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mosaic.core.component_slots import component_field, structure_nested
from mosaic.core.config import structure_config
from mosaic.core.contract.compat import Capability, Head, Provided, Relation, Required, check_compatibility
from mosaic.core.errors import ConfigError, InvalidFieldError
from mosaic.core.registry import Component, Registry
from mosaic.core.validators import (
    at_least,
    between,
    each,
    one_of,
    open_unit,
    optional,
    positive,
    power_of_two,
    reject,
)


@attrs.frozen
class Inner:
    # a message that does not start with the field name: the path must still name the field
    buckets: int = attrs.field(default=4, validator=power_of_two)
    low: float = 0.1
    high: float = 0.9

    def __attrs_post_init__(self) -> None:
        if self.low >= self.high:
            reject("low", f"must be < high ({self.high}), got {self.low}")


@attrs.frozen
class Outer:
    inner: Inner = attrs.Factory(Inner)
    items: tuple[Inner, ...] = ()
    rate: float = attrs.field(default=0.5, validator=open_unit)
    mode: str = attrs.field(default="a", validator=one_of("a", "b"))
    limit: int | None = attrs.field(default=None, validator=optional(at_least(1)))
    sigmas: tuple[float, ...] = attrs.field(default=(1.0,), validator=each(at_least(0.0)))


@pytest.mark.parametrize(("data", "path", "message"), [
    ({"inner": {"buckets": 6}}, "$.inner.buckets", "must be a power of two >= 2 (the memory routes by bits), got 6"),
    ({"inner": {"low": 0.9, "high": 0.1}}, "$.inner.low", "must be < high (0.1), got 0.9"),
    ({"items": [{}, {"buckets": 3}]}, "$.items[1].buckets", "must be a power of two"),
    ({"rate": 1.0}, "$.rate", "must be in (0.0, 1.0), got 1.0"),
    ({"mode": "c"}, "$.mode", "must be one of 'a', 'b', got 'c'"),
    ({"limit": 0}, "$.limit", "must be >= 1, got 0"),
    ({"sigmas": [1.0, -2.0]}, "$.sigmas", "must be >= 0.0, got -2.0"),
    ({"rate": float("inf")}, "$.rate", "expected a finite number, got inf"),
])
def test_problems_are_reported_at_the_field_whatever_the_wording(data: dict, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        structure_config(data, Outer, path="$")
    assert [(p.path, message in p.message) for p in info.value.problems] == [(path, True)], info.value


def test_every_problem_at_once_across_nesting() -> None:
    with pytest.raises(ConfigError) as info:
        structure_config({"inner": {"buckets": 5}, "rate": "fast", "mode": 3}, Outer, path="$.x")
    assert {p.path for p in info.value.problems} == {"$.x.inner.buckets", "$.x.rate", "$.x.mode"}


@given(low=st.floats(-10, 10), high=st.floats(-10, 10), low_open=st.booleans(), high_open=st.booleans(),
       value=st.floats(-20, 20))
def test_between_agrees_with_its_wording(low: float, high: float, low_open: bool, high_open: bool,
                                         value: float) -> None:
    rule = between(low, high, low_open=low_open, high_open=high_open)
    inside = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    field = attrs.fields(Outer).rate
    if inside:
        rule(None, field, value)
    else:
        with pytest.raises(InvalidFieldError) as info:
            rule(None, field, value)
        assert info.value.field == "rate" and info.value.detail.startswith(f"must be {rule.wording}, got ")


# --- nested component mappings ---------------------------------------------------------------------


@attrs.frozen
class RouterConfig:
    n_experts: int = attrs.field(validator=positive)
    top_k: int = attrs.field(validator=positive)
    jitter: float = attrs.field(default=0.0, validator=at_least(0.0))


@attrs.frozen
class MixtureConfig:
    width: int = attrs.field(validator=positive)
    n_experts: int = attrs.field(default=4, validator=positive)
    top_k: int = attrs.field(default=2, validator=positive)
    router: dict[str, Any] = component_field("router", injected=("n_experts", "top_k"), default={"type": "router.r"})

    def __attrs_post_init__(self) -> None:
        if self.top_k > self.n_experts:
            reject("top_k", f"must be <= n_experts ({self.n_experts}), got {self.top_k}")


@attrs.frozen
class BlockConfig:
    width: int = 8
    ffn: dict[str, Any] | None = component_field("layer", injected=("width",))


@attrs.frozen
class ModelConfig:
    block: BlockConfig = attrs.Factory(BlockConfig)


def registry() -> Registry:
    registry = Registry()
    registry.add(Component("router.r", lambda config: config, "router", config=RouterConfig))
    registry.add(Component("layer.mix", lambda config: config, "mixture", config=MixtureConfig))
    registry.add(Component("layer.plain", lambda: "plain", "no config"))
    return registry


def nested(ffn: dict[str, Any]) -> tuple[list[Any], list[tuple[str, str]]]:
    config = structure_config({"block": {"ffn": ffn}}, ModelConfig, path="$.model")
    found, problems = structure_nested(config, registry(), path="$.model")
    return found, [(p.path, p.message + (f" ({p.hint})" if p.hint else "")) for p in problems]


def test_nested_mappings_are_structured_with_injected_fields() -> None:
    found, problems = nested({"type": "layer.mix", "n_experts": 8, "router": {"type": "router.r", "jitter": 0.1}})
    assert problems == []
    assert [(c.path, c.id) for c in found] == [("$.model.block.ffn", "layer.mix"), ("$.model.block.ffn.router", "router.r")]
    assert found[0].config.width == 8 and found[1].config == RouterConfig(n_experts=8, top_k=2, jitter=0.1)


@pytest.mark.parametrize(("ffn", "path", "message"), [
    ({"type": "layer.mix", "n_experts": 0}, "$.model.block.ffn.n_experts", "must be > 0, got 0"),
    ({"type": "layer.mix", "top_k": 5}, "$.model.block.ffn.top_k", "must be <= n_experts (4), got 5"),
    ({"type": "layer.mixx"}, "$.model.block.ffn.type", "did you mean layer.mix?"),
    ({"type": "layer.mix", "n_expert": 2}, "$.model.block.ffn.n_expert", "did you mean 'n_experts'?"),
    ({"type": "layer.mix", "router": {"type": "router.q"}}, "$.model.block.ffn.router.type", "unknown component"),
    ({"type": "layer.mix", "router": {"type": "router.r", "jitter": -1.0}}, "$.model.block.ffn.router.jitter",
     "must be >= 0.0, got -1.0"),
    ({"type": "layer.mix", "router": {"type": "router.r", "jiter": 1}}, "$.model.block.ffn.router.jiter",
     "did you mean 'jitter'?"),
    ({"type": "layer.plain", "size": 3}, "$.model.block.ffn", "layer.plain takes no settings, got size"),
    ({"type": "layer.mix", "router": {"type": "router.r", "top_k": 1}}, "$.model.block.ffn.router.top_k",
     "must not be set here: the owner sets top_k"),
])
def test_nested_mistakes_are_reported_at_their_own_path(ffn: dict, path: str, message: str) -> None:
    _found, problems = nested(ffn)
    assert [p for p, m in problems if message in m] == [path], problems


@pytest.mark.parametrize(("ffn", "path", "message"), [
    ({"type": "router.r"}, "$.model.block.ffn.type", "must name a layer.<name> component, got 'router.r'"),
    ({"type": "layer.mix", "width": 4}, "$.model.block.ffn.width", "must not be set here: the owner sets width"),
    ("layer.mix", "$.model.block.ffn", "expected a mapping, got str 'layer.mix'"),
])
def test_slot_shape_is_checked_when_the_owner_is_built(ffn: Any, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        nested(ffn)
    assert [(p.path, message in p.message) for p in info.value.problems] == [(path, True)], info.value


# --- provides / requires ------------------------------------------------------------------------------


@attrs.frozen
class Declares:
    offers: tuple[Provided, ...] = ()
    needs: tuple[Required, ...] = ()

    def provides(self) -> Iterator[Provided]:
        yield from self.offers

    def requires(self) -> Iterator[Required]:
        yield from self.needs


def test_requirements_are_matched_against_what_others_provide() -> None:
    model = Declares(offers=(Provided(Capability.HEADS, frozenset({Head.MEMORY}), "block"),),
                     needs=(Required(Capability.VOCAB_SIZE, Relation.AT_LEAST, 100, "vocab_size", "embedding"),))
    data = Declares(offers=(Provided(Capability.VOCAB_SIZE, 256, "vocab_size"),),
                    needs=(Required(Capability.MEMORY_BUCKETS, Relation.EQUALS, 16, "mem_buckets", "teacher"),))
    objective = Declares(needs=(Required(Capability.HEADS, Relation.SUBSET, frozenset({Head.COMMITMENT}), "w", "w>0"),))
    problems = check_compatibility({"$.m": model, "$.d": data, "$.o": objective, "$.plugin": object()})
    assert [(p.path, p.message, p.hint) for p in problems] == [
        ("$.m.vocab_size", "must be >= 256 (embedding), got 100", "$.d.vocab_size provides vocab_size 256"),
        ("$.o.w", "w>0: missing {commitment}", "$.m.block provides heads {memory}"),
    ]  # nobody provides MEMORY_BUCKETS here, so that requirement constrains nothing


def test_a_component_does_not_satisfy_or_break_its_own_requirements() -> None:
    both = Declares(offers=(Provided(Capability.VOCAB_SIZE, 512, "v"),),
                    needs=(Required(Capability.VOCAB_SIZE, Relation.AT_LEAST, 100, "v", "r"),))
    assert check_compatibility({"$.x": both}) == []


@given(required=st.integers(0, 50), provided=st.integers(0, 50))
def test_relations(required: int, provided: int) -> None:
    assert Relation.AT_LEAST.holds(required, provided) == (required >= provided)
    assert Relation.AT_MOST.holds(required, provided) == (required <= provided)
    assert Relation.EQUALS.holds(required, provided) == (required == provided)
    assert Relation.SUBSET.holds({required}, {provided, 7}) == (required in {provided, 7})


def test_registry_passes_itself_to_factories_that_ask_for_it() -> None:
    registry = Registry()
    registry.add(Component("layer.asks", lambda config, *, registry: registry, "asks", config=RouterConfig))
    registry.add(Component("layer.plain_asks", lambda *, registry: registry, "asks, no config"))
    registry.add(Component("layer.does_not_ask", lambda config: "built", "does not ask", config=RouterConfig))
    assert registry.build("layer.asks", {"n_experts": 1, "top_k": 1}) is registry
    assert registry.build("layer.plain_asks") is registry
    assert registry.build("layer.does_not_ask", {"n_experts": 1, "top_k": 1}) == "built"


@attrs.frozen
class WithMappings:
    spec: dict[str, Any] | None = None
    counts: dict[str, int] = attrs.Factory(dict)


def test_mapping_fields_refuse_non_mappings_and_check_their_values_every_time() -> None:
    for _ in range(2):  # the second round runs after the mapping hooks were generated and cached
        assert structure_config({"spec": {"a": [1]}, "counts": {"a": 1}}, WithMappings).counts == {"a": 1}
        with pytest.raises(ConfigError, match=r"\$\.spec: expected a mapping, got str 'moe'"):
            structure_config({"spec": "moe"}, WithMappings)
        with pytest.raises(ConfigError, match=r"\$\.counts\.a: expected int, got str 'x'"):
            structure_config({"counts": {"a": "x"}}, WithMappings)


@attrs.frozen
class PlainInner:
    # a third-party plugin's config written with attrs' own validators, not the toolkit's vocabulary
    k: int = attrs.field(default=1, validator=attrs.validators.gt(0))


@attrs.frozen
class PlainConfig:
    n: int = attrs.field(default=1, validator=attrs.validators.gt(0))
    mode: str = attrs.field(default="a", validator=attrs.validators.in_(["a", "b"]))
    inner: PlainInner = attrs.field(factory=PlainInner)
    stages: list[PlainInner] = attrs.field(factory=list)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"n": 0}, ["$.n"]),
        ({"mode": "z"}, ["$.mode"]),
        ({"inner": {"k": -1}}, ["$.inner.k"]),
        ({"n": 0, "inner": {"k": -1}}, ["$.n", "$.inner.k"]),
        ({"stages": [{"k": 1}, {"k": 0}]}, ["$.stages[1].k"]),
    ],
)
def test_plain_attrs_validators_are_reported_at_their_field(data: dict, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        structure_config(data, PlainConfig)
    assert [problem.path for problem in info.value.problems] == expected
    # the message is attrs' own sentence, not the repr of its argument tuple
    assert all("Attribute(" not in problem.message for problem in info.value.problems)


def test_a_type_error_beside_a_plain_validator_keeps_the_type_problem() -> None:
    with pytest.raises(ConfigError) as info:
        structure_config({"n": "three", "mode": "z"}, PlainConfig)
    assert [problem.path for problem in info.value.problems] == ["$.n"]
    assert "expected int" in info.value.problems[0].message


@attrs.frozen
class WithSequences:
    tasks: tuple[str, ...] = ("add",)
    stages: list[PlainInner] = attrs.field(factory=list)
    sigmas: tuple[float, float, float] = (1.0, 2.0, 3.0)


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        # cattrs iterates whatever it is given: a string became its characters, a mapping its keys
        ({"tasks": "add"}, "$.tasks", "expected a list, got str 'add'"),
        ({"tasks": {"add": 1}}, "$.tasks", "expected a list, got dict"),
        ({"tasks": b"add"}, "$.tasks", "expected a list, got bytes"),
        ({"stages": {"k": 1}}, "$.stages", "expected a list, got dict"),
        ({"sigmas": "abc"}, "$.sigmas", "expected a list, got str 'abc'"),
        ({"sigmas": [1.0, 2.0]}, "$.sigmas", "expected a list of 3 items, got 2"),
        ({"sigmas": [1.0, "x", 3.0]}, "$.sigmas[1]", "expected float, got str 'x'"),
        ({"tasks": ["add", 3]}, "$.tasks[1]", "expected str, got int 3"),
        ({"stages": [{"k": 1}, {"k": "2"}]}, "$.stages[1].k", "expected int, got str '2'"),
    ],
)
def test_list_fields_take_lists_only(data: dict, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        structure_config(data, WithSequences)
    [problem] = info.value.problems
    assert (problem.path, message in problem.message) == (path, True), problem


def test_list_fields_keep_their_items_and_container_type() -> None:
    config = structure_config({"tasks": ["add", "mul"], "stages": [{"k": 2}], "sigmas": (0.5, 1, 2)}, WithSequences)
    assert config.tasks == ("add", "mul") and config.stages == [PlainInner(2)] and config.sigmas == (0.5, 1.0, 2.0)
    assert isinstance(config.sigmas[1], float)


def test_path_component_names_are_matched_whole() -> None:
    from mosaic.core.validators import is_path_component

    assert is_path_component("run-1.a_b", 64) and is_path_component("x" * 64, 64)
    for bad in ("", ".hidden", "-x", "a/b", "..", "x\n", "x\r", "x" * 65, "é", 3, None):
        assert not is_path_component(bad, 64), bad


def test_component_ids_are_matched_whole() -> None:
    """A $-anchored pattern also accepts a trailing newline: "layer.moe\\n" passed before."""
    import pytest

    from mosaic.core.errors import InvalidComponentError
    from mosaic.core.registry import parse_component_id

    assert parse_component_id("layer.moe") == ("layer", "moe")
    with pytest.raises(InvalidComponentError, match="not a semantic ID"):
        parse_component_id("layer.moe\n")
