"""The registry: semantic IDs, lazy factories, conflicts, lookups and building."""

from __future__ import annotations

import attrs
import pytest

from mosaic.core.errors import (
    ConfigError,
    DuplicateComponentError,
    InvalidComponentError,
    UnknownComponentError,
)
from mosaic.core.registry import Component, Registry
from mosaic.core.validators import positive


@attrs.frozen
class WidgetConfig:
    width: int = attrs.field(default=4, validator=positive)
    label: str = "w"


def make_widget(config: WidgetConfig) -> tuple[int, str]:
    return (config.width, config.label)


def component(component_id: str, **kwargs) -> Component:
    defaults = {"factory": make_widget, "summary": "a widget", "config": WidgetConfig}
    return Component(id=component_id, **{**defaults, **kwargs})


def test_build_structures_config_and_calls_factory() -> None:
    registry = Registry()
    registry.add(component("layer.widget"))
    assert registry.build("layer.widget", {"width": 7}) == (7, "w")
    assert registry.build("layer.widget") == (4, "w")
    assert registry.build("layer.widget", WidgetConfig(width=2, label="x")) == (2, "x")


def test_build_reports_every_config_problem_with_paths() -> None:
    registry = Registry()
    registry.add(component("layer.widget"))
    with pytest.raises(ConfigError) as info:
        registry.build("layer.widget", {"width": "wide", "colour": "red"}, path="$.model")
    text = str(info.value)
    assert "$.model.width: expected int" in text
    assert "unknown key(s): colour" in text
    assert len(info.value.problems) == 2


def test_validator_failure_is_a_config_error() -> None:
    registry = Registry()
    registry.add(component("layer.widget"))
    with pytest.raises(ConfigError, match=r"\$\.width: must be > 0, got 0"):
        registry.build("layer.widget", {"width": 0})


def test_import_path_factory_resolves_lazily() -> None:
    registry = Registry()
    registry.add(component("layer.lazy", factory="collections:OrderedDict", config=None))
    assert registry.build("layer.lazy") == {}
    registry.add(component("layer.missing", factory="no_such_module_xyz:thing", config=None))
    with pytest.raises(InvalidComponentError, match=r"layer\.missing .*factory 'no_such_module_xyz:thing' cannot "
                                                    r"be imported \(ModuleNotFoundError"):
        registry.build("layer.missing")
    # a plugin's config class behind a broken import path is the same clear error, named by component
    registry.add(component("layer.ghost", factory="collections:OrderedDict", config="no_such_module_xyz:Cfg"))
    with pytest.raises(InvalidComponentError, match=r"layer\.ghost .*config 'no_such_module_xyz:Cfg'"):
        registry.build("layer.ghost", {"width": 1})


def test_duplicate_names_both_providers() -> None:
    registry = Registry()
    registry.add(component("model.tiny", provider="dist-a", provider_version="1.0"))
    with pytest.raises(DuplicateComponentError) as info:
        registry.add(component("model.tiny", provider="dist-b", provider_version="2.0"))
    assert "dist-a 1.0" in str(info.value) and "dist-b 2.0" in str(info.value)


@pytest.mark.parametrize(
    "bad_id", ["tiny", "model.", ".tiny", "Model.tiny", "model.tiny-net", "model.1tiny", "weird.kind"]
)
def test_ill_formed_ids_are_rejected(bad_id: str) -> None:
    with pytest.raises(InvalidComponentError):
        Registry().add(component(bad_id))


def test_summary_and_factory_shape_are_checked() -> None:
    registry = Registry()
    with pytest.raises(InvalidComponentError, match="summary"):
        registry.add(component("model.a", summary=""))
    with pytest.raises(InvalidComponentError, match="one line"):
        registry.add(component("model.b", summary="two\nlines"))
    with pytest.raises(InvalidComponentError, match="module:attribute"):
        registry.add(component("model.c", factory="not_a_path"))
    with pytest.raises(InvalidComponentError, match="attrs class"):
        registry.add(component("model.d", config=dict))


def test_unknown_id_suggests_and_lists_same_kind() -> None:
    registry = Registry()
    registry.add(component("router.topk"))
    registry.add(component("router.chrono"))
    with pytest.raises(UnknownComponentError) as info:
        registry.get("router.chrona")
    assert info.value.suggestions == ("router.chrono",)
    assert set(info.value.known_ids) == {"router.topk", "router.chrono"}
    assert "did you mean router.chrono" in str(info.value)


def test_unknown_builtin_id_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mosaic.core.registry._is_installed", lambda distribution: False)
    with pytest.raises(UnknownComponentError, match="provided by mosaic-layers — pip install mosaic-layers") as info:
        Registry().get("model.mosaic_lm")
    # both forms: from an index, and from a checkout (the sibling packages are on no index yet)
    assert "pip install mosaic-layers (from a package index)" in str(info.value)
    assert "pip install ./packages/mosaic-layers (from a MOSAIC checkout)" in str(info.value)


def test_unknown_builtin_id_of_installed_package_points_at_plugin_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mosaic.core.registry._is_installed", lambda distribution: True)
    with pytest.raises(UnknownComponentError, match="installed but did not register it.*mosaic plugins list"):
        Registry().get("model.mosaic_lm")


def test_component_without_config_rejects_settings() -> None:
    registry = Registry()
    registry.add(component("opcode.X", factory=lambda: "x", config=None))
    assert registry.build("opcode.X") == "x"
    with pytest.raises(InvalidComponentError, match="takes no configuration"):
        registry.build("opcode.X", {"a": 1})
