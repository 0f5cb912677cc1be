"""Rehearsal sequences from a run's own training dataset.

Online learning pulls every adapter update back towards the base model on sequences of the training
distribution (``OnlineConfig.anchor_weight``). A run directory says what that distribution is: its
``config.yaml`` names the dataset the model was trained on. Without sequences given explicitly
(``mosaic events --online-rehearse FILE``), the runtime rebuilds that dataset and takes its first
items, so the measured default (``bench_idle``: rehearsal of training traces) is what a live run gets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from mosaic.core.contract import keys
from mosaic.core.errors import ConfigError, ConfigProblem
from mosaic.runtime.training.manifest import parse_manifest
from mosaic.runtime.training.run_dir import RunDir

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry


def labelled_prefix(item: dict[str, Any]) -> torch.Tensor:
    """An item's input tokens up to its last labelled target (padding after it dropped); the whole
    input where the dataset gives no targets."""
    ids = item[keys.INPUT_IDS.name]
    targets = item.get(keys.TARGET_IDS.name)
    if targets is None:
        return ids
    labelled = torch.nonzero(targets != keys.IGNORE_INDEX)
    if labelled.numel() == 0:
        return ids[:0]
    # target i is token i + 1: the sequence runs to the token after the last labelled position
    return ids[: min(int(labelled.max()) + 2, ids.shape[0])]


def training_sequences(run: RunDir, registry: Registry, *, experiment: str | None, count: int,
                       max_bytes: int) -> tuple[str, list[torch.Tensor]]:
    """The training dataset's id and its first ``count`` items (as :func:`labelled_prefix`), each cut
    to its last ``max_bytes`` tokens."""
    manifest = parse_manifest(run.config_text(), registry, source=str(run.config_path))
    chosen = manifest.experiment(run.experiment_for(experiment))
    dataset = chosen.dataset.build(registry)
    where = f"{run.config_path}: {chosen.name}.dataset ({chosen.dataset.id})"
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise ConfigError([ConfigProblem("online.rehearsal", f"{where} cannot be indexed; give rehearsal "
                                         "sequences with --online-rehearse FILE")])
    sequences = [labelled_prefix(dataset[index])[-max_bytes:] for index in range(min(count, len(dataset)))]
    return chosen.dataset.id, [ids.to(torch.int64) for ids in sequences if ids.shape[0] >= 2]
