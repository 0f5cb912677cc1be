"""Every built-in dataset's items validate against the contract's key specs: known keys, dtype,
rank, axis sizes, ignore values and masks. A new built-in dataset needs a small config here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from mosaic.core.contract import KEY_SPECS, KeySpec, keys
from mosaic.core.plugins import PluginHost, PluginSelection
from mosaic.runtime.training.batching import collate_for

DTYPES = {"int64": torch.int64, "float32": torch.float32, "bool": torch.bool}
BLOCK, BUCKETS, HASHES = 96, 8, 2

#: A small config per built-in dataset (``{tmp}`` becomes a text file): several teacher variants.
CONFIGS: dict[str, list[dict[str, Any]]] = {
    "dataset.mosaic_memory_curriculum": [
        {"block_size": BLOCK, "vocab_size": 64, "mem_buckets": BUCKETS, "mem_hashes": HASHES, "n_pairs": 2,
         "distractor_len": 2, "num_samples": 8},
        {"block_size": BLOCK, "vocab_size": 64, "mem_buckets": BUCKETS, "mem_hashes": HASHES, "n_pairs": 2,
         "distractor_len": 2, "num_samples": 8, "reg_slots": 2, "sleep_replay_per_pair": 1},
    ],
    "dataset.mosaic_control_curriculum": [
        {"block_size": BLOCK, "vocab_size": 64, "mem_buckets": BUCKETS, "mem_hashes": HASHES, "num_samples": 8},
        {"block_size": BLOCK, "vocab_size": 64, "mem_buckets": BUCKETS, "mem_hashes": HASHES, "num_samples": 8,
         "priority_events": 5, "noise_events": 5, "random_targets": True},
    ],
    "dataset.mosaic_event_traces": [
        {"block_size": 4096, "mem_buckets": BUCKETS, "mem_hashes": HASHES, "n_pairs": 1, "num_samples": 4},
        {"block_size": 3072, "mem_buckets": BUCKETS, "mem_hashes": HASHES, "n_pairs": 1, "num_samples": 4,
         "reg_slots": 2, "negotiation_pairs": 0},
    ],
    "dataset.mqar": [
        {"seq_len": 64, "num_kv_pairs": 4, "vocab_size": 128, "num_samples": 8},
        {"seq_len": 64, "num_kv_pairs": 4, "vocab_size": 128, "num_samples": 8, "teacher_signals": True,
         "mem_buckets": BUCKETS, "mem_hashes": HASHES},
    ],
    "dataset.text": [{"path": "{tmp}", "block_size": 32}],
    "dataset.tool_building": [
        {"num_samples": 8, "mem_hashes": HASHES},
        {"num_samples": 8, "mem_hashes": HASHES, "tasks": ["add", "tab"], "split": "eval"},
    ],
}


def builtin_datasets() -> tuple[Any, list[str]]:
    host = PluginHost(PluginSelection(strict=True))
    host.load_entry_points()
    registry = host.registry
    return registry, [cid for cid in registry.ids("dataset") if registry.get(cid).provider == "mosaic-data"]


def check_tensor(spec: KeySpec, value: torch.Tensor, sizes: dict[str, int], batched: bool) -> None:
    shape = spec.shape if batched else spec.shape[1:]  # an item has no batch axis
    assert value.dtype == DTYPES[spec.dtype], f"{spec.name}: dtype {value.dtype}, spec says {spec.dtype}"
    assert value.dim() == len(shape), f"{spec.name}: shape {tuple(value.shape)}, spec says {shape}"
    for axis, size in zip(shape, value.shape, strict=True):
        assert sizes.setdefault(axis, size) == size, f"{spec.name}: axis {axis} is {size}, elsewhere {sizes[axis]}"
    if spec.ignore is not None:
        # an integer label is a label (>= min_label) or the one ignore value, nothing in between
        assert bool(((value >= spec.min_label) | (value == spec.ignore)).all()), (
            f"{spec.name}: labels outside {{{spec.ignore}}} U [{spec.min_label}, ...)")
    if spec is keys.TEACHER_COMMITMENT_DELTA:
        assert bool(((value == spec.ignore) | (value <= 1)).all())


def check_batch(batch: Mapping[str, Any], batched: bool) -> None:
    sizes: dict[str, int] = {"H": HASHES} if keys.TEACHER_READ_BUCKET.name in batch else {}
    assert keys.INPUT_IDS.name in batch and keys.TARGET_IDS.name in batch
    for name, value in batch.items():
        if not isinstance(value, torch.Tensor):
            continue  # metadata (spans) is not a tensor key
        assert name in KEY_SPECS, f"{name} is not a key of mosaic.core.contract.keys"
        spec = KEY_SPECS[name]
        assert spec.producer == "mosaic-data" and spec.shape[0] == "B", f"{name} is not a batch key"
        check_tensor(spec, value, sizes, batched)
    for spec in keys.TEACHER_KEYS:
        if spec.masked and spec.name in batch:
            mask = batch[spec.mask.name]
            assert mask.shape == batch[spec.name].shape
            assert bool((batch[spec.name][~mask] == 0).all()), f"{spec.name}: masked-out positions must hold 0"
    supervised = batch[keys.TARGET_IDS.name] != keys.IGNORE_INDEX
    assert bool(supervised.any())


@pytest.fixture
def text_file(tmp_path: Path) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    return str(path)


def test_every_builtin_dataset_has_a_contract_config() -> None:
    _, ids = builtin_datasets()
    assert sorted(ids) == sorted(CONFIGS)


@pytest.mark.parametrize("dataset_id", sorted(CONFIGS))
def test_items_and_batches_satisfy_the_key_specs(dataset_id: str, text_file: str) -> None:
    registry, _ = builtin_datasets()
    for config in CONFIGS[dataset_id]:
        config = {k: text_file if v == "{tmp}" else v for k, v in config.items()}
        dataset = registry.build(dataset_id, config)
        items = [dataset[i] for i in range(min(4, len(dataset)))]
        for item in items:
            check_batch(item, batched=False)
        check_batch(collate_for(dataset)(items), batched=True)


def test_the_check_catches_an_old_ignore_value() -> None:
    registry, _ = builtin_datasets()
    item = registry.build("dataset.mosaic_memory_curriculum", CONFIGS["dataset.mosaic_memory_curriculum"][0])[0]
    opcode = item[keys.TEACHER_OPCODE.name]
    item[keys.TEACHER_OPCODE.name] = torch.where(opcode == keys.IGNORE_INDEX, -1, opcode)
    with pytest.raises(AssertionError, match="mosaic_teacher_opcode"):
        check_batch(item, batched=False)
