"""The trainer's :class:`~mosaic.core.contract.protocols.TrainingProbe`: held-out trial losses.

A lifecycle controller asks ``trial_losses(edit, relax_steps)`` to score a structural edit on
evidence: the probe snapshots the model and the optimizer (and the RNG), applies ``edit`` to the live
model, relaxes it for ``relax_steps`` optimizer steps on training batches, measures the loss on two
disjoint held-out sets, and restores everything:

- the *probe* set (``PROBE_WINDOWS`` training windows drawn once from a stream disjoint in seed from
  the relaxation's, never trained on by a trial): what the controller decides on (its prediction);
- the *check* set (the last ``CHECK_WINDOWS`` windows of the evaluation split, disjoint from the
  probe set and from the first windows that the run's own evaluation reads): the realised effect the
  prediction is checked against. None where the experiment has no evaluation split.

The relaxation batches are a pure function of (seed, trainer step), so an edited trial and the
unedited one at the same step see the same batches. The scheduler is not stepped (a trial sees the
current learning rate), and lifecycle hooks do not run inside a trial.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mosaic.runtime.training.batching import collate_for, fetch, move_to, sample_indices

if TYPE_CHECKING:
    from mosaic.runtime.training.trainer import Trainer

#: seed offsets of the probe batch and of the relaxation batches (apart from the training stream)
PROBE_SEED_OFFSET = 1_000_003
RELAX_SEED_OFFSET = 2_000_003
#: held-out windows of the probe set (the prediction) and of the check set (the realised effect)
PROBE_WINDOWS = 64
CHECK_WINDOWS = 64


def check_windows(length: int, evaluated: int) -> range:
    """The check set's windows of an evaluation split of ``length`` windows: its last
    ``CHECK_WINDOWS``, after the first ``evaluated`` (what the run's own evaluation reads) where the
    split is too short for both, and at least its last window."""
    return range(max(0, min(evaluated, length - 1), length - CHECK_WINDOWS), length)


class TrainerProbe:
    """Lent by the trainer to the model's lifecycle controller (single process, main rank)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self._probe_batches: list[dict[str, Any]] | None = None
        self._check_batches: list[dict[str, Any]] | None = None

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

    def _chunks(self, dataset: Any, indices: list[int]) -> list[dict[str, Any]]:
        trainer, size = self.trainer, self.trainer.micro_batch
        return [
            move_to(collate_for(dataset)(fetch(dataset, indices[start:start + size])), trainer.device)
            for start in range(0, len(indices), size)
        ]

    def probe_batches(self) -> list[dict[str, Any]]:
        if self._probe_batches is None:
            trainer = self.trainer
            indices = sample_indices(len(trainer.dataset), seed=trainer.config.seed + PROBE_SEED_OFFSET,
                                     start=0, count=PROBE_WINDOWS)
            self._probe_batches = self._chunks(trainer.dataset, indices)
        return self._probe_batches

    def check_batches(self) -> list[dict[str, Any]] | None:
        """The tail of the evaluation split (None without one)."""
        dataset = self.trainer.eval_dataset
        if dataset is None:
            return None
        if self._check_batches is None:
            evaluated = 0 if self.trainer.experiment.eval is None else self.trainer.experiment.eval.samples
            self._check_batches = self._chunks(dataset, list(check_windows(len(dataset), evaluated)))
        return self._check_batches

    def _mean_loss(self, batches: list[dict[str, Any]]) -> float:
        trainer, total = self.trainer, 0.0
        with torch.no_grad(), trainer.autocast():
            for batch in batches:
                loss, _ = trainer.objective(trainer.forward_model(batch), batch)
                total += float(loss)
        return total / len(batches)

    def trial_loss(self, edit: Callable[[], None] | None, relax_steps: int) -> float:
        """The probe-set loss of :meth:`trial_losses`."""
        return self.trial_losses(edit, relax_steps)[0]

    def trial_losses(self, edit: Callable[[], None] | None, relax_steps: int) -> tuple[float, float | None]:
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
            check = self.check_batches()
            return self._mean_loss(self.probe_batches()), None if check is None else self._mean_loss(check)
        finally:
            optimizer.zero_grad(set_to_none=True)
            model.load_state_dict(saved_model)
            optimizer.load_state_dict(saved_optimizer)
            torch.set_rng_state(saved_rng)
            model.train(was_training)
