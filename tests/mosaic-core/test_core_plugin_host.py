"""Plugin loading: isolation, rollback, unknown hooks, selection by environment, strict mode."""

from __future__ import annotations

import types
from importlib import metadata

import pytest

from mosaic.core.errors import PluginError
from mosaic.core.plugins import PluginHost, PluginLoadFailures, PluginSelection, hookimpl


class GoodPlugin:
    @hookimpl
    def register_models(self, register):
        register("model.tiny", "collections:OrderedDict", summary="a tiny model")

    @hookimpl
    def register_opcodes(self, register):
        register("opcode.NUDGE", "collections:OrderedDict", summary="nudge")


class HalfwayPlugin:
    """Registers one component, then raises: the component must be rolled back."""

    @hookimpl
    def register_models(self, register):
        register("model.half", "collections:OrderedDict", summary="half")
        raise RuntimeError("boom after registering")


class DuplicatePlugin:
    @hookimpl
    def register_models(self, register):
        register("model.other", "collections:OrderedDict", summary="other")
        register("model.tiny", "collections:OrderedDict", summary="a second tiny model")


class MisspeltPlugin:
    @hookimpl
    def register_model(self, register):  # missing the trailing "s"
        register("model.never", "collections:OrderedDict", summary="never")


class WrongKindPlugin:
    @hookimpl
    def register_models(self, register):
        register("dataset.sneaky", "collections:OrderedDict", summary="wrong hook")


def host(**selection) -> PluginHost:
    return PluginHost(PluginSelection(**selection))


def test_good_plugin_registers_its_components() -> None:
    h = host()
    record = h.add_plugin(GoodPlugin(), "good", distribution="good-dist", version="1.2")
    assert record.status == "loaded"
    assert record.hooks == ["register_models", "register_opcodes"]
    assert record.components == {"model": ["model.tiny"], "opcode": ["opcode.NUDGE"]}
    assert h.registry.get("model.tiny").provider == "good-dist"


def test_partly_registered_plugin_is_rolled_back() -> None:
    h = host()
    h.add_plugin(GoodPlugin(), "good")
    record = h.add_plugin(HalfwayPlugin(), "halfway")
    assert record.status == "failed"
    assert "RuntimeError: boom after registering" in record.error
    assert "model.half" not in h.registry
    assert "model.tiny" in h.registry


def test_duplicate_id_fails_the_second_plugin_naming_both() -> None:
    h = host()
    h.add_plugin(GoodPlugin(), "good", distribution="good-dist", version="1.0")
    record = h.add_plugin(DuplicatePlugin(), "dup", distribution="dup-dist", version="2.0")
    assert record.status == "failed"
    assert "good-dist 1.0" in record.error and "dup-dist 2.0" in record.error
    assert "model.other" not in h.registry  # rolled back
    assert h.registry.get("model.tiny").provider == "good-dist"


def test_misspelt_hook_is_reported_with_a_suggestion() -> None:
    h = host()
    record = h.add_plugin(MisspeltPlugin(), "typo")
    assert record.status == "failed"
    assert "unknown hook 'register_model'" in record.error
    assert "did you mean 'register_models'" in record.error


def test_id_from_the_wrong_hook_is_rejected() -> None:
    record = host().add_plugin(WrongKindPlugin(), "wrong")
    assert record.status == "failed"
    assert "only model.* IDs belong there" in record.error


def test_import_failure_is_recorded_not_raised() -> None:
    def explode():
        raise ImportError("no module named 'missing_dependency'")

    h = host()
    record = h.load("explodes", explode, distribution="explodes-dist")
    assert record.status == "failed"
    assert "failed to import: ImportError" in record.error


def test_system_exit_at_import_is_contained() -> None:
    def exits():
        raise SystemExit(3)

    assert host().load("exits", exits).status == "failed"


def test_disable_and_load_only_selection() -> None:
    h = host(disabled=frozenset({"good"}))
    assert h.add_plugin(GoodPlugin(), "good").status == "disabled"
    assert "model.tiny" not in h.registry
    h2 = host(load_only=frozenset({"other-dist"}))
    assert h2.add_plugin(GoodPlugin(), "good", distribution="good-dist").status == "disabled"
    assert h2.add_plugin(GoodPlugin(), "good2", distribution="other-dist").status == "loaded"


def test_selection_from_environment() -> None:
    selection = PluginSelection.from_env(
        {"MOSAIC_LOAD_PLUGINS": "a, b", "MOSAIC_DISABLE_PLUGINS": "c", "MOSAIC_STRICT_PLUGINS": "1"}
    )
    assert selection.load_only == {"a", "b"}
    assert selection.disabled == {"c"}
    assert selection.strict and not selection.trace
    assert selection.allows("mosaic-core", "mosaic-core")  # the core itself always loads
    assert not selection.allows("d", "d")


def test_strict_mode_raises_with_every_failure() -> None:
    h = host(strict=True)
    h.add_plugin(MisspeltPlugin(), "typo")
    h.add_plugin(WrongKindPlugin(), "wrong")
    with pytest.raises(PluginLoadFailures) as info:
        h.raise_if_strict()
    message = str(info.value)
    assert "typo" in message and "wrong" in message and "MOSAIC_DISABLE_PLUGINS=typo" in message


def test_entry_points_load_in_deterministic_order(monkeypatch: pytest.MonkeyPatch) -> None:
    modules = {}
    for name in ("zeta_plugin", "alpha_plugin"):
        module = types.ModuleType(name)
        modules[name] = module
        monkeypatch.setitem(__import__("sys").modules, name, module)
    eps = [
        metadata.EntryPoint("zeta", "zeta_plugin", "mosaic"),
        metadata.EntryPoint("alpha", "alpha_plugin", "mosaic"),
        metadata.EntryPoint("alpha", "alpha_plugin", "mosaic"),  # seen twice on sys.path
    ]
    h = host()
    h.load_entry_points(eps)
    assert [r.name for r in h.records] == ["alpha", "zeta"]


def test_trace_writes_hook_calls_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    host(trace=True).add_plugin(GoodPlugin(), "good")
    err = capsys.readouterr().err
    assert "good.register_models(register)" in err and "-> model.tiny" in err


def test_failing_register_commands_is_reported_not_raised() -> None:
    class BadCommands:
        @hookimpl
        def register_commands(self, cli):
            raise ValueError("bad command")

    h = host()
    h.add_plugin(BadCommands(), "badcmd")
    failures = []
    h.call_commands(object(), lambda record, message: failures.append((record.name, message)))
    assert failures == [("badcmd", failures[0][1])]
    assert "ValueError: bad command" in failures[0][1]
    strict = host(strict=True)
    strict.add_plugin(BadCommands(), "badcmd")
    with pytest.raises(PluginError):
        strict.call_commands(object(), lambda record, message: None)


def _entry_point(monkeypatch: pytest.MonkeyPatch, name: str, distribution: str, plugin: object) -> metadata.EntryPoint:
    """An entry point ``name`` of ``distribution`` whose module is ``plugin``."""
    module = types.ModuleType(f"{name.replace('-', '_')}_module")
    for attribute in dir(plugin):
        if attribute.startswith("register_"):
            setattr(module, attribute, getattr(plugin, attribute))
    monkeypatch.setitem(__import__("sys").modules, module.__name__, module)

    class Dist:
        metadata = {"Name": distribution}
        version = "1.0"

    ep = metadata.EntryPoint(name, module.__name__, "mosaic")
    return types.SimpleNamespace(name=ep.name, value=ep.value, load=ep.load, dist=Dist())  # type: ignore[return-value]


def test_builtin_wins_over_an_earlier_named_third_party_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    class BuiltinData:
        @hookimpl
        def register_datasets(self, register):
            register("dataset.mqar", "collections:OrderedDict", summary="the built-in")
            register("dataset.text", "collections:OrderedDict", summary="another built-in")

    class Squatter:
        @hookimpl
        def register_datasets(self, register):
            register("dataset.mqar", "collections:OrderedDict", summary="a third party's copy")

    eps = [
        _entry_point(monkeypatch, "aaa-squatter", "aaa-squatter-dist", Squatter()),
        _entry_point(monkeypatch, "mosaic-data", "mosaic-data", BuiltinData()),
    ]
    h = host()
    h.load_entry_points(eps)
    by_name = {r.name: r for r in h.records}
    assert by_name["mosaic-data"].status == "loaded"
    assert h.registry.get("dataset.mqar").provider == "mosaic-data"
    assert "dataset.text" in h.registry
    squatter = by_name["aaa-squatter"]
    assert squatter.status == "failed"
    assert "mosaic-data" in squatter.error and "aaa-squatter-dist" in squatter.error


@pytest.mark.parametrize("variable", ["load_only", "disabled"])
def test_unknown_plugin_name_in_selection_is_an_error_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    from mosaic.core.plugins import PluginSelectionError

    eps = [_entry_point(monkeypatch, "mosaic-layers", "mosaic-layers", GoodPlugin())]
    h = host(**{variable: frozenset({"mosaic-layrs"})})
    with pytest.raises(PluginSelectionError) as info:
        h.load_entry_points(eps)
    assert "'mosaic-layrs'" in str(info.value) and "did you mean 'mosaic-layers'" in str(info.value)
    assert h.records == []  # nothing loaded under a selection that was mistyped


def test_register_commands_failure_after_adding_is_recorded_as_failed() -> None:
    class HalfCommands:
        @hookimpl
        def register_commands(self, cli):
            cli.append("half-added")
            raise RuntimeError("late failure")

    h = host()
    h.add_plugin(HalfCommands(), "halfcmd", distribution="halfcmd-dist")
    reported = []
    h.call_commands([], lambda record, message: reported.append(record.name))
    assert reported == ["halfcmd"]
    assert [r.name for r in h.failures] == ["halfcmd"]
    assert "late failure" in h.failures[0].error


def test_record_json_names_the_distribution_and_entry_point() -> None:
    h = host()
    record = h.load("ep-name", GoodPlugin, distribution="some-dist", version="2.0", module="some_module")
    data = record.to_json()
    assert data["name"] == "ep-name" and data["distribution"] == "some-dist" and data["entry_point"] == "some_module"
