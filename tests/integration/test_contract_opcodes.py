"""The v0 opcode table exists once (mosaic.core.contract.opcodes); every package derives from it."""

from __future__ import annotations

from mosaic.core.contract import V0_OPCODE_IDS, V0_OPCODE_NAMES
from mosaic.core.plugins import PluginHost, PluginSelection
from mosaic.core.registry import KNOWN_PROVIDERS


def test_ten_v0_opcodes_with_ids_by_index() -> None:
    assert len(V0_OPCODE_NAMES) == 10
    assert [V0_OPCODE_IDS[name] for name in V0_OPCODE_NAMES] == list(range(10))


def test_layers_isa_is_the_contract_table() -> None:
    from mosaic.layers import isa

    assert tuple(op.name for op in isa.V0_OPCODES) == V0_OPCODE_NAMES
    assert dict(isa.V0_OPCODE_IDS) == dict(V0_OPCODE_IDS)
    assert tuple(op.name for op in isa.opcode_table(include_plugins=False)) == V0_OPCODE_NAMES


def test_data_teacher_ids_are_the_contract_ids() -> None:
    from mosaic.data import common

    ids = {name: getattr(common, f"OP_{name}") for name in V0_OPCODE_NAMES}
    assert ids == dict(V0_OPCODE_IDS)


def test_runtime_evaluation_reports_contract_names() -> None:
    from mosaic.runtime.training import evaluation

    assert tuple(evaluation.opcode_names(object())) == V0_OPCODE_NAMES
    assert evaluation.READ_MEM == V0_OPCODE_IDS["READ_MEM"]


def test_registry_and_known_providers_list_the_contract_names() -> None:
    host = PluginHost(PluginSelection(strict=True))
    host.load_entry_points()
    v0 = [cid for cid in host.registry.ids("opcode") if cid.partition(".")[2] in V0_OPCODE_IDS]
    assert sorted(v0) == sorted(f"opcode.{name}" for name in V0_OPCODE_NAMES)
    assert [cid for cid in KNOWN_PROVIDERS if cid.startswith("opcode.")] == [f"opcode.{n}" for n in V0_OPCODE_NAMES]


def test_a_model_checkpoint_table_starts_with_the_contract_names() -> None:
    from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig
    from mosaic.layers.model import MosaicLM

    block = MosaicBlockConfig(d_model=16, mem_buckets=4, mem_assoc=2, mem_hashes=1, state_k=2, state_dim=4,
                              reg_slots=0, opcodes_enabled=True)
    model = MosaicLM(MosaicLMConfig(vocab_size=12, n_layers=1, block=block, plugin_opcodes=False))
    assert tuple(model.opcode_names) == V0_OPCODE_NAMES
