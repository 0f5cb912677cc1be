"""The trainer's :class:`~mosaic.core.contract.protocols.TrainingProbe`: held-out trial losses.

A lifecycle controller asks ``trial_loss(edit, relax_steps)`` to score a structural edit on
evidence: the probe snapshots the model and the optimizer (and the RNG), applies ``edit`` to the live
model, relaxes it for ``relax_steps`` optimizer steps on training batches, measures the loss on a
fixed probe batch, and restores everything. The relaxation batches are a pure function of (seed,
trainer step), so an edited trial and the unedited one at the same step see the same batches; the
probe batch is drawn once from a stream disjoint in seed from the relaxation's and is never trained
on by a trial. The scheduler is not stepped (a trial sees the current learning rate), and lifecycle
hooks do not run inside a trial.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mosaic.runtime.training.batching import move_to, sample_indices

if TYPE_CHECKING:
    from mosaic.runtime.training.trainer import Trainer

#: seed offsets of the probe batch and of the relaxation batches (apart from the training stream)
PROBE_SEED_OFFSET = 1_000_003
RELAX_SEED_OFFSET = 2_000_003


class TrainerProbe:
    """Lent by the trainer to the model's lifecycle controller (single process, main rank)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self._probe_batch: dict[str, Any] | None = None

    @property
    def total_steps(self) -> int:
        return int(self.trainer.config.steps)

    @property
    def run_dir(self) -> Path | None:
        """The run directory (``KnowsRunDir``), None for a run that writes none."""
        return None if self.trainer.run is None else self.trainer.run.path

    def _batch(self, seed: int, start: int) -> dict[str, Any]:
        trainer = self.trainer
        indices = sample_indices(len(trainer.dataset), seed=seed, start=start, count=trainer.micro_batch)
        return move_to(trainer.collate(trainer.fetch(indices)), trainer.device)

    def probe_batch(self) -> dict[str, Any]:
        if self._probe_batch is None:
            self._probe_batch = self._batch(self.trainer.config.seed + PROBE_SEED_OFFSET, 0)
        return self._probe_batch

    def trial_loss(self, edit: Callable[[], None] | None, relax_steps: int) -> float:
        trainer = self.trainer
        model, optimizer = trainer.model, trainer.optimizer
        saved_model = copy.deepcopy(model.state_dict())
        saved_optimizer = copy.deepcopy(optimizer.state_dict())
        saved_rng = torch.get_rng_state()
        was_training = model.training
        try:
            if edit is not None:
                edit()
            model.train()
            relax_seed = trainer.config.seed + RELAX_SEED_OFFSET
            for index in range(relax_steps):
                batch = self._batch(relax_seed, (trainer.step * relax_steps + index) * trainer.micro_batch)
                with trainer.autocast():
                    loss, _ = trainer.objective(trainer.forward_model(batch), batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            model.eval()
            probe = self.probe_batch()
            with torch.no_grad(), trainer.autocast():
                loss, _ = trainer.objective(trainer.forward_model(probe), probe)
            return float(loss)
        finally:
            optimizer.zero_grad(set_to_none=True)
            model.load_state_dict(saved_model)
            optimizer.load_state_dict(saved_optimizer)
            torch.set_rng_state(saved_rng)
            model.train(was_training)
