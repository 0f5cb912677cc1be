"""Exporting a run's model as safetensors and reading it back (no pickle on either side)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mosaic.core.errors import CheckpointError
from mosaic.runtime import load_run
from mosaic.runtime.export import export_safetensors, read_safetensors_export, split_state
from mosaic.runtime.testing.tiny_agent import make_run


def test_export_round_trips_weights_and_config(tmp_path: Path) -> None:
    run, registry = make_run(tmp_path)
    path = export_safetensors(run, registry=registry)
    assert path == run / "model.safetensors" and path.read_bytes()[8:9] == b"{"  # a safetensors header
    state, config = read_safetensors_export(path)
    assert config["type"] == "model.agent_tiny_stream" and config["d_model"] == 16
    loaded = load_run(run, registry=registry)
    rebuilt = registry.build(config.pop("type"), config)
    rebuilt.load_state_dict(state)
    rebuilt.eval()
    ids = torch.randint(0, 256, (2, 7))
    torch.testing.assert_close(rebuilt({"input_ids": ids}).logits, loaded.model({"input_ids": ids}).logits,
                               rtol=0, atol=0)
    assert not list(tmp_path.rglob(".model.safetensors.*.tmp"))  # written atomically


def test_tied_weights_are_stored_once_and_restored_under_both_names() -> None:
    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

        def get_extra_state(self) -> dict:
            return {"opcode_table": ["NOP", "READ"]}

        def set_extra_state(self, state: dict) -> None:
            self.extra = state

    model = Tied()
    tensors, aliases, extra = split_state(model)
    assert sorted(tensors) == ["embed.weight"] and aliases == {"head.weight": "embed.weight"}
    assert extra == {"_extra_state": {"opcode_table": ["NOP", "READ"]}}


def test_reading_a_damaged_or_foreign_file_is_a_typed_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_safetensors_export(junk)
    import safetensors.torch

    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="is not a mosaic-export/1 file"):
        read_safetensors_export(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_safetensors_export(tmp_path / "missing.safetensors")
