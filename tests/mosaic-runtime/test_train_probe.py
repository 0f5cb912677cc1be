"""The trainer's TrainingProbe: a trial relaxes and measures on a held-out batch, then leaves the
model, the optimizer and the RNG exactly as they were; trials at the same step see the same batches."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from mosaic.core.contract.protocols import TrainingProbe
from mosaic.runtime.testing.tiny_training import TINY_PRESET, tiny_registry
from mosaic.runtime.training.manifest import load_manifest
from mosaic.runtime.training.trainer import Trainer


def build_trainer(tmp_path: Path) -> Trainer:
    registry = tiny_registry()
    path = tmp_path / "tiny.yml"
    path.write_text(TINY_PRESET)
    manifest = load_manifest(str(path), registry)
    return Trainer(manifest.experiment(None), registry, None, fingerprint="test", show_progress=False)


def test_trial_loss_restores_everything_and_is_paired_by_step(tmp_path: Path) -> None:
    trainer = build_trainer(tmp_path)
    trainer.train_step()
    probe = trainer.probe
    assert isinstance(probe, TrainingProbe)
    assert probe.total_steps == trainer.config.steps
    model_before = copy.deepcopy(trainer.model.state_dict())
    optimizer_before = copy.deepcopy(trainer.optimizer.state_dict())
    rng_before = torch.get_rng_state()
    first, check = probe.trial_losses(None, relax_steps=3)
    second, check_again = probe.trial_losses(None, relax_steps=3)
    assert first == second  # the same relaxation batches and probe batch at the same step
    assert check is not None and check == check_again and check != first  # a disjoint check set
    unrelaxed = probe.trial_loss(None, relax_steps=0)
    assert unrelaxed != first  # the relaxation trained the copy

    def damage() -> None:
        with torch.no_grad():
            for parameter in trainer.model.parameters():
                parameter.mul_(10.0)

    assert probe.trial_loss(damage, relax_steps=0) > unrelaxed
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, model_before[name]), name
    state = trainer.optimizer.state_dict()["state"]
    for key, slots in optimizer_before["state"].items():
        for slot, value in slots.items():
            assert torch.equal(torch.as_tensor(state[key][slot]), torch.as_tensor(value))
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert trainer.model.training


def test_check_set_is_the_tail_of_the_split_after_the_evaluated_windows() -> None:
    from mosaic.runtime.training.probe import CHECK_WINDOWS, check_windows

    assert check_windows(1742, 256) == range(1742 - CHECK_WINDOWS, 1742)  # phase 8: disjoint from validation
    assert check_windows(CHECK_WINDOWS + 100, 100) == range(100, CHECK_WINDOWS + 100)  # short split: after them
    assert check_windows(CHECK_WINDOWS + 100, 1000) == range(CHECK_WINDOWS + 99, CHECK_WINDOWS + 100)  # its last
    assert check_windows(40, 0) == range(0, 40)
