"""Preset variables, overrides and line tracking (hypothesis for the ${var} substitution rules)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.errors import ConfigError
from mosaic.runtime.testing.tiny_training import TINY_PRESET, tiny_registry
from mosaic.runtime.training.manifest import parse_manifest, resolved_yaml
from mosaic.runtime.training.variables import apply_overrides, parse_override, resolve_variables
from mosaic.runtime.training.yaml_source import decode_preset, load_yaml

REGISTRY = tiny_registry()
#: Plain words YAML 1.1 reads as null or booleans (an override value is YAML, so these are not strings).
YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off", "y", "n"}
NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
SCALARS = st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(st.characters(blacklist_characters="${}", blacklist_categories=("Cs",)), max_size=12))


@settings(max_examples=60, deadline=None)
@given(name=NAMES, value=SCALARS)
def test_whole_value_reference_keeps_its_type(name: str, value: object) -> None:
    resolved = resolve_variables({"vars": {name: value}, "x": f"${{{name}}}", "y": [f"${{{name}}}"]})
    assert resolved["x"] == value and type(resolved["x"]) is type(value)
    assert resolved["y"] == [value]


@settings(max_examples=60, deadline=None)
@given(name=NAMES, value=SCALARS, prefix=st.text(st.characters(blacklist_characters="${}",
                                                               blacklist_categories=("Cs",)), min_size=1, max_size=5))
def test_embedded_reference_interpolates_text(name: str, value: object, prefix: str) -> None:
    resolved = resolve_variables({"vars": {name: value}, "x": f"{prefix}${{{name}}}"})
    assert resolved["x"] == f"{prefix}{value}"


def test_variables_chain_and_cycles_are_named() -> None:
    resolved = resolve_variables({"vars": {"a": "${b}", "b": "${c}", "c": 3}, "x": "${a}"})
    assert resolved["x"] == 3
    with pytest.raises(ConfigError, match="a -> b -> a"):
        resolve_variables({"vars": {"a": "${b}", "b": "${a}"}})


@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.integers(-(2**63) + 1, 2**63 - 1), st.booleans(), st.text(st.characters(min_codepoint=97, max_codepoint=122),
                                                            min_size=1, max_size=8).filter(
    lambda word: word not in YAML_WORDS)))
def test_override_values_parse_as_yaml(value: object) -> None:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    parts, parsed = parse_override(f"targets[0].trainer.steps={text}")
    assert parts == ["targets", 0, "trainer", "steps"]
    assert parsed == value


def test_overrides_short_and_absolute_paths() -> None:
    data = {"vars": {"d": 1}, "targets": [{"trainer": {"steps": 5}}, {"trainer": {"steps": 6}}]}
    apply_overrides(data, ["trainer.steps=9", "vars.d=4", "targets[1].trainer.lr=0.5"])
    assert [t["trainer"]["steps"] for t in data["targets"]] == [9, 9]
    assert data["vars"]["d"] == 4 and data["targets"][1]["trainer"]["lr"] == 0.5
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(data, ["trainer.steps"])


def test_a_list_section_written_as_its_one_item_takes_the_path_presets_show_prints() -> None:
    data = {"targets": [{"curriculum": {"type": "c", "warmup_steps": 5}}]}
    apply_overrides(data, ["targets[0].curriculum[0].warmup_steps=1", "curriculum.cooldown_steps=2"])
    assert data["targets"][0]["curriculum"] == {"type": "c", "warmup_steps": 1, "cooldown_steps": 2}
    with pytest.raises(ConfigError, match=r"no list item \[1\]"):
        apply_overrides(data, ["curriculum[1].warmup_steps=1"])
    with pytest.raises(ConfigError, match=r"no list item \[0\]"):  # a section that is not there is not made up
        apply_overrides({"targets": [{}]}, ["schedule[0].warmup_steps=1"])


def test_override_of_a_variable_flows_into_the_config() -> None:
    manifest = parse_manifest(TINY_PRESET, REGISTRY, overrides=["vars.d_model=24"])
    assert manifest.experiments[0].model.config.d_model == 24
    assert resolved_yaml(manifest)["targets"][0]["model"]["d_model"] == 24


def test_lines_point_at_the_value() -> None:
    document = load_yaml(TINY_PRESET, source="tiny.yml")
    lines = TINY_PRESET.splitlines()
    assert "d_model: ${d_model}" in lines[document.lines["$.targets[0].model.d_model"] - 1]
    assert document.line_of("$.targets[0].model.nonexistent") == document.lines["$.targets[0].model"]


@settings(max_examples=200, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300))
def test_floats_in_any_python_spelling_read_as_floats(value: float) -> None:
    # repr gives 1e-05 and 1.5e+20: YAML 1.1 reads those as strings, a preset must not
    for spelling in (repr(value), f"{value:e}", f"{value:E}"):
        assert load_yaml(f"x: {spelling}\n", source="t.yml").data["x"] == float(spelling)
        assert parse_override(f"trainer.lr={spelling}")[1] == float(spelling)


def test_exponent_floats_reach_the_config() -> None:
    text = TINY_PRESET.replace("lr: 0.01", "lr: 1e-3")
    assert parse_manifest(text, REGISTRY).experiments[0].trainer.lr == 0.001
    manifest = parse_manifest(TINY_PRESET, REGISTRY, overrides=["trainer.lr=1e6"])
    assert manifest.experiments[0].trainer.lr == 1e6
    # plain words and versions stay what they were
    assert load_yaml("a: 1.2.3\nb: e5\nc: 1_000\n", source="t.yml").data == {"a": "1.2.3", "b": "e5", "c": 1000}


def test_unknown_override_variable_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"declares no variable 'd_modle' \(did you mean vars.d_model\?\)"):
        parse_manifest(TINY_PRESET, REGISTRY, overrides=["vars.d_modle=128"])
    assert parse_manifest(TINY_PRESET, REGISTRY, overrides=["vars.d_model=24"]).experiments[0].model.config.d_model == 24


YAML_PIECES = ["&a ", "*a", "&b ", "*b", "[", "]", "{", "}", ": ", "- ", "<<: ", "!!python/name:os.system ", "!x ",
               "\n", "  ", "1e3", "9" * 30, "'", '"', "? ", "key", "${v}", ", ", "~", ".nan", "\t", "#", "|", ">"]


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(st.text(max_size=200), st.lists(st.sampled_from(YAML_PIECES), max_size=60).map("".join)))
def test_any_text_is_a_document_or_one_config_error(text: str) -> None:
    try:
        document = load_yaml(text, source="fuzz.yml")
    except ConfigError as exc:
        assert exc.problems and all(problem.path.startswith("$") for problem in exc.problems)
        return
    assert document.line_of("$") is not None


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_are_a_preset_or_one_config_error(data: bytes) -> None:
    try:
        parse_manifest(decode_preset(data, source="fuzz.yml"), REGISTRY, source="fuzz.yml")
    except ConfigError as exc:
        assert exc.problems
