"""Every ID the toolkit's own packages register is known to core, derived from the real registry."""

from __future__ import annotations

from mosaic.core.plugins import PluginHost, PluginSelection
from mosaic.core.registry import KNOWN_PROVIDERS

#: The toolkit's own distributions (a third party's components are not core's to know).
TOOLKIT = ("mosaic-core", "mosaic-layers", "mosaic-data", "chronomoe", "mosaic-runtime", "mosaic-cli")


def builtin_providers() -> dict[str, str]:
    host = PluginHost(PluginSelection(strict=True))
    host.load_entry_points()
    assert host.failures == []
    return {component.id: component.provider for component in host.registry if component.provider in TOOLKIT}


def test_known_providers_is_exactly_what_the_toolkit_registers() -> None:
    registered = builtin_providers()
    unknown = sorted(set(registered) - set(KNOWN_PROVIDERS))
    stale = sorted(set(KNOWN_PROVIDERS) - set(registered))
    assert unknown == [], f"registered but missing from mosaic.core.registry.KNOWN_PROVIDERS: {unknown}"
    assert stale == [], f"in KNOWN_PROVIDERS but registered by no toolkit package: {stale}"


def test_known_providers_name_the_distribution_that_registers_each_id() -> None:
    registered = builtin_providers()
    wrong = {cid: (KNOWN_PROVIDERS.get(cid), provider) for cid, provider in registered.items()
             if KNOWN_PROVIDERS.get(cid) != provider}
    assert wrong == {}
