"""collate, per-item seeds, and the plugin's registrations (torch-free listing)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mosaic.core.errors import DataError
from mosaic.core.plugins import get_registry
from mosaic.data import collate
from mosaic.data.common import item_seed
from mosaic.data.config import EventTraceConfig, MemoryCurriculumConfig
from mosaic.data.event_traces import EventTraceDataset
from mosaic.data.memory_curriculum import MemoryCurriculumDataset

IDS = {
    "dataset.mosaic_memory_curriculum", "dataset.mosaic_event_traces", "dataset.mqar", "dataset.text",
    "curriculum.teacher_forcing_decay", "curriculum.difficulty_ramp",
}


def test_collate_stacks_tensors_and_lists_metadata():
    dataset = EventTraceDataset(EventTraceConfig(return_spans=True, reg_slots=2))
    batch = collate([dataset[0], dataset[1], dataset[2]])
    assert batch["input_ids"].shape == (3, dataset.block_size)
    assert batch["mosaic_teacher_read_bucket"].shape == (3, dataset.block_size, 2)
    assert batch["mosaic_teacher_forcing"].shape == (3,)
    assert isinstance(batch["eval_spans"], list) and len(batch["eval_spans"]) == 3
    assert batch["eval_spans"][1] == dataset[1]["eval_spans"]


def test_collate_refuses_inconsistent_items():
    item = MemoryCurriculumDataset(MemoryCurriculumConfig())[0]
    with pytest.raises(DataError, match="different keys"):
        collate([item, {k: v for k, v in item.items() if k != "mosaic_drop_local"}])
    with pytest.raises(DataError, match="input_ids"):
        collate([item, dict(item, input_ids=torch.zeros(3, dtype=torch.int64))])
    with pytest.raises(DataError):
        collate([])


def test_works_with_a_dataloader():
    dataset = MemoryCurriculumDataset(MemoryCurriculumConfig(block_size=96, num_samples=10))
    batches = list(torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate))
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 2]
    assert torch.equal(batches[1]["input_ids"][0], dataset[4]["input_ids"])


def test_item_seeds_are_distinct_across_seed_split_and_index():
    seeds = {item_seed(seed, split, idx) for seed in range(4) for split in ("train", "eval") for idx in range(500)}
    assert len(seeds) == 4 * 2 * 500
    with pytest.raises(DataError):
        item_seed(0, "train", -1)


def test_registered_components():
    registry = get_registry()
    components = {c.id: c for c in registry if c.id in IDS}
    assert set(components) == IDS
    for component in components.values():
        assert component.provider == "mosaic-data"
        assert isinstance(component.factory, str) and isinstance(component.config, str)
        assert component.load_config_class() is not None and callable(component.load_factory())


def test_listing_plugins_and_configs_does_not_import_torch():
    code = (
        "import sys\n"
        "import mosaic.data, mosaic.data.plugin, mosaic.data.config, mosaic.data.curricula\n"
        "from mosaic.core.plugins import get_registry\n"
        "ids = get_registry().ids()\n"
        "assert 'dataset.mqar' in ids, ids\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_package_exports():
    import mosaic.data

    assert mosaic.data.collate is collate
    assert set(mosaic.data.__all__) <= set(dir(mosaic.data))
    with pytest.raises(AttributeError):
        mosaic.data.no_such_name  # noqa: B018


def test_all_lists_every_export():
    import mosaic.data

    assert sorted(mosaic.data.__all__) == sorted(mosaic.data._EXPORTS)
