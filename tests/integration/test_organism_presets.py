"""Issue 16: the event and VM presets train with the opcode VM in control (a memory read or write,
a gain, a clear happens only where the opcode head chooses it)."""

from __future__ import annotations

import pytest

from mosaic.core.plugins import get_registry
from mosaic.runtime.training.manifest import load_manifest

VM_PRESETS = ("mosaic_vm", "mosaic_event_native", "mosaic_idle", "mosaic_commitment", "mosaic_gates")


@pytest.mark.parametrize("name", VM_PRESETS)
def test_event_and_vm_presets_run_with_the_vm_in_control(name: str) -> None:
    for experiment in load_manifest(name, get_registry()).experiments:
        block = experiment.model.config.block
        assert block.opcodes_enabled and block.opcodes_control_enabled, name
