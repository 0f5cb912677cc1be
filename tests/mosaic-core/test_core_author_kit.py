"""The plugin author kit: fixtures and the contract check."""

from __future__ import annotations

import attrs

from mosaic.core.plugins import hookimpl
from mosaic.core.testing import check_plugin


@attrs.frozen
class KnobConfig:
    level: int = 1


class WellFormed:
    @hookimpl
    def register_curricula(self, register):
        register("curriculum.knob", "collections:OrderedDict", config=KnobConfig, summary="knob")


class BadFactory:
    @hookimpl
    def register_curricula(self, register):
        register("curriculum.ghost", "mosaic_no_such_module:thing", summary="ghost")


def test_contract_check_accepts_a_well_formed_plugin() -> None:
    assert check_plugin(WellFormed()) == []


def test_contract_check_finds_unimportable_factories_and_empty_plugins() -> None:
    problems = check_plugin(BadFactory())
    assert len(problems) == 1 and "curriculum.ghost: factory" in problems[0]
    assert check_plugin(object()) == ["implements no MOSAIC hook"]


def test_fixtures_give_an_isolated_host(use_plugin, mosaic_registry) -> None:
    assert len(mosaic_registry) == 0  # nothing from the installed entry points
    use_plugin(WellFormed(), "well-formed")
    assert mosaic_registry.ids() == ["curriculum.knob"]
