"""The training loop: one linear pass from a validated experiment to a run directory.

Seeded and resumable: data order is a pure function of (seed, samples consumed), and a checkpoint
carries every state the next step depends on, so ``--resume`` continues exactly. A non-finite or
exploding loss stops the run before the optimizer step (divergence.py), leaving the last good
checkpoint untouched; Ctrl-C and SIGTERM stop it after the current step with a checkpoint
(interrupts.py). Under ``torchrun`` every rank trains and rank 0 alone writes (distributed.py).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import structlog
import torch

from mosaic.core.contract.protocols import DescribesSources, TrainingHooks
from mosaic.core.errors import (
    CheckpointError,
    ConfigError,
    ConfigProblem,
    ObjectiveError,
    TrainingError,
)
from mosaic.core.model_output import ModelOutput
from mosaic.runtime.training.batching import collate_for, count_tokens, fetch, move_to, sample_indices
from mosaic.runtime.training.checkpoint import (
    list_checkpoints,
    load_newest_loadable,
    model_config_data,
    restore_rng_state,
    rng_state,
    save_checkpoint,
    set_aside_newer,
)
from mosaic.runtime.training.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    check_lockstep,
    init_distributed,
    wrap_ddp,
)
from mosaic.runtime.training.divergence import DivergedError, DivergenceGuard
from mosaic.runtime.training.evaluation import evaluate, opcode_names, state_floats
from mosaic.runtime.training.interrupts import StopRequest
from mosaic.runtime.training.loggers import MetricSinks
from mosaic.runtime.training.manifest import Experiment
from mosaic.runtime.training.optim import build_optimizer, build_scheduler
from mosaic.runtime.training.probe import TrainerProbe
from mosaic.runtime.training.progress import Progress, log
from mosaic.runtime.training.run_dir import RunDir, writing
from mosaic.runtime.training.sizing import build_model

#: lifecycle decisions of the model's training hooks, one JSON record per line, in the run directory
DECISIONS_FILE = "decisions.jsonl"

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError([ConfigProblem("trainer.device", f"unknown device {name!r}")]) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError([ConfigProblem("trainer.device", "cuda requested but no GPU is available")])
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def apply_curricula(curricula: list[Any], dataset: Any, step: int, total_steps: int) -> dict[str, float]:
    """The curriculum protocol (mosaic.data.curricula): ``update(step, total_steps, dataset)`` sets
    the dataset before the batch of ``step`` is drawn and returns the values it set."""
    values: dict[str, float] = {}
    for curriculum in curricula:
        values.update({f"curriculum_{k}": float(v) for k, v in (curriculum.update(step, total_steps, dataset) or {}).items()})
    return values


class Trainer:
    """Builds an experiment's components through the registry and trains them."""

    def __init__(self, experiment: Experiment, registry: Registry, run: RunDir | None, *,
                 fingerprint: str, device: str | None = None, show_progress: bool = True,
                 progress_mode: str = "auto") -> None:
        self.experiment = experiment
        self.config = experiment.trainer
        self.run = run
        self.fingerprint = fingerprint
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.device = pick_device(device or self.config.device)
        self.dist: DistContext = init_distributed(self.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.dist.enabled:  # every log event of this process names its rank
            structlog.contextvars.bind_contextvars(rank=self.dist.rank)
        per_rank, remainder = divmod(self.config.batch_size, self.dist.world_size * self.config.grad_accum)
        if remainder or per_rank == 0:
            raise ConfigError([ConfigProblem(
                "trainer.batch_size",
                f"{self.config.batch_size} is not divisible by world size {self.dist.world_size} x grad_accum "
                f"{self.config.grad_accum}")])
        self.micro_batch = per_rank
        seed_everything(self.config.seed, self.config.deterministic)
        self.model = build_model(experiment, registry).to(self.device)  # the same on every rank
        self.dataset = experiment.dataset.build(registry)
        self.eval_dataset = experiment.eval_dataset.build(registry) if experiment.eval_dataset else None
        self.curricula = [spec.build(registry) for spec in experiment.curricula]
        self.objective = experiment.objective.build(registry)
        self.sinks = MetricSinks.build(self.config.loggers, registry)
        if self.dist.rank:  # dropout and other sampling differ per rank; data order is sharded below
            seed_everything(self.config.seed + self.dist.rank, self.config.deterministic)
        if isinstance(self.objective, DescribesSources):
            self.objective.describe_sources(model=experiment.model.id, dataset=experiment.dataset.id)
        self.collate = collate_for(self.dataset)
        self.optimizer = build_optimizer(self.model, self.config)
        self.scheduler = build_scheduler(self.optimizer, self.config)
        # held-out trial losses for a lifecycle controller, only where one process trains (a trial
        # must not desynchronise DDP ranks)
        self.probe = TrainerProbe(self) if self.dist.world_size == 1 else None
        self.forward_model: Callable[[dict[str, Any]], ModelOutput] = self.model
        self.ddp: torch.nn.parallel.DistributedDataParallel | None = None
        if self.dist.enabled:
            # Deliberate (docs/distributed.md): heads trained only by auxiliary terms a preset may
            # weight 0 (memory.write_utility) and experts no token was routed to in a step get no
            # gradient; DDP, told so, leaves them out of the reduction instead of waiting for them.
            self.ddp, self.forward_model = wrap_ddp(self.model, self.device,
                                                    find_unused_parameters=self.config.find_unused_parameters)
        if self.config.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.opcode_table = opcode_names(self.model)
        self.step = 0
        self.samples_seen = 0
        self.first_record: dict[str, Any] | None = None  # the run's first logged metrics (kept on resume)
        self.progress = Progress(self.config.steps, mode=progress_mode, enabled=show_progress and self.dist.is_main)
        self.guard = DivergenceGuard(self.config.divergence_factor, self.config.divergence_window)
        self.stop = StopRequest()  # run.py swaps in one wired to SIGINT/SIGTERM
        self.lockstep: bool | None = None  # under DDP: whether every rank ended with the same weights
        if self.config.effective_warmup < self.config.warmup_steps:
            self.progress.note(f"warmup_steps {self.config.warmup_steps} clipped to the {self.config.steps}-step "
                               "budget")

    # --- state --------------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "samples_seen": self.samples_seen,
            "config_fingerprint": self.fingerprint,
            "opcode_table": self.opcode_table,
            "experiment": self.experiment.name,
            # plain data, so that the checkpoint describes its model without the preset
            "model_config": model_config_data(self.experiment.model),
            "lifecycle": self.lifecycle_state(),
        }

    def lifecycle_state(self) -> dict | None:
        return self.model.lifecycle_state_dict() if isinstance(self.model, TrainingHooks) else None

    def save(self) -> None:
        if self.run is not None and self.dist.is_main:
            with writing(self.run.checkpoints):
                save_checkpoint(self.run.checkpoints, self.step, self.checkpoint_payload(),
                                keep=self.config.keep_checkpoints)
            self.run.log_event("checkpoint", step=self.step)
        barrier(self.dist)

    def open_sinks(self, resume_step: int | None) -> None:
        if self.run is not None and self.dist.is_main:
            self.sinks.open(self.run.path, resume_step=resume_step)
            for warning in self.sinks.warnings:
                self.progress.note(warning)

    def resume(self) -> int:
        """Load the run's newest loadable checkpoint (older ones stand in for a corrupt newest);
        returns its step."""
        if self.run is None:
            raise CheckpointError("cannot resume without a run directory")
        path, payload = load_newest_loadable(self.run.checkpoints, config_fingerprint=self.fingerprint,
                                             opcode_table=self.opcode_table)
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            if isinstance(self.model, TrainingHooks):
                self.model.load_lifecycle_state_dict(payload.get("lifecycle"))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} does not match this model: {exc}") from None
        restore_rng_state(payload["rng"])  # rank 0's: other ranks re-derive their own offset stream
        if self.dist.rank:
            seed_everything(self.config.seed + self.dist.rank + 7919 * int(payload["step"]), self.config.deterministic)
        self.step = int(payload["step"])
        self.samples_seen = int(payload["samples_seen"])
        if self.dist.is_main:
            if path != list_checkpoints(self.run.checkpoints)[-1][1]:
                with writing(self.run.checkpoints):
                    aside = set_aside_newer(self.run.checkpoints, self.step)
                self.progress.note(f"the newest checkpoint is unreadable; resuming from {path.name} (set aside: "
                                   f"{', '.join(p.name for p in aside)})")
            self.open_sinks(resume_step=self.step)  # trims metrics (and csv, tensorboard) past the step
            self.run.truncate_jsonl_after(self.run.path / DECISIONS_FILE, self.step, key="train_step")
            self.run.log_event("resume", step=self.step, checkpoint=str(path))
            train = [r for r in self.run.read_metrics() if r.get("split") == "train"]
            self.first_record = train[0] if train else None
        return self.step

    # --- one step -----------------------------------------------------------------------------

    def fetch(self, indices: list[int]) -> list[Any]:
        """Training items ``indices`` (the probe draws its trial batches through this)."""
        return fetch(self.dataset, indices)

    def micro_batches(self) -> Iterator[dict[str, Any]]:
        indices = sample_indices(len(self.dataset), seed=self.config.seed, start=self.samples_seen,
                                 count=self.config.batch_size)
        self.samples_seen += self.config.batch_size
        local = indices[self.dist.rank::self.dist.world_size]
        for start in range(0, len(local), self.micro_batch):
            items = fetch(self.dataset, local[start:start + self.micro_batch])
            yield move_to(self.collate(items), self.device)

    def train_step(self) -> tuple[dict[str, float], int]:
        schedule = apply_curricula(self.curricula, self.dataset, self.step, self.config.steps)
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        finite = torch.ones((), device=self.device)
        accum = self.config.grad_accum
        for index, batch in enumerate(self.micro_batches()):
            tokens += count_tokens(batch)
            last = index == accum - 1
            # gradients are all-reduced once per optimizer step, on the last micro-batch
            sync = contextlib.nullcontext() if (last or self.ddp is None) else self.ddp.no_sync()
            with sync:
                with self.autocast():
                    output = self.forward_model(batch)
                    loss, metrics = self.objective(output, batch)
                finite = finite * torch.isfinite(loss.detach()).float()
                loss_sum = loss_sum + loss.detach().float() / accum
                (loss / accum).backward()
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + value.float() / accum
        if self.config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        else:
            norm = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in self.model.parameters() if p.grad is not None))
        finite = finite * torch.isfinite(norm.detach()).float()
        finite = all_reduce_mean(finite, self.dist)
        reduced = {name: float(all_reduce_mean(value, self.dist)) for name, value in sums.items()}
        loss_value = float(all_reduce_mean(loss_sum, self.dist))  # the same on every rank: all stop together
        try:
            self.guard.check(self.step + 1, loss_value if float(finite) == 1.0 else math.nan)
        except DivergedError:
            self.optimizer.zero_grad(set_to_none=True)
            raise
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        reduced.update(self.run_training_hooks())
        reduced["grad_norm"] = float(norm)
        reduced.update(schedule)
        return reduced, tokens * self.dist.world_size

    def run_training_hooks(self) -> dict[str, float]:
        """The model's optional training hooks (``mosaic.core.contract.protocols.TrainingHooks``): a
        lifecycle controller stepped after each optimizer step; its decisions go to ``decisions.jsonl``."""
        if not isinstance(self.model, TrainingHooks):
            return {}
        decisions = self.model.after_optimizer_step(self.step, self.optimizer, self.probe)
        if not decisions:
            return {}
        if self.run is not None and self.dist.is_main:
            for decision in decisions:  # stamped with the trainer's step: resume trims by it
                self.run.append_jsonl(self.run.path / DECISIONS_FILE, {**decision, "train_step": self.step})
        return {"lifecycle_decisions": float(len(decisions))}

    # --- the loop -----------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any] | None:
        if self.eval_dataset is None or self.experiment.eval is None or not self.dist.is_main:
            return None
        config = self.experiment.eval
        return evaluate(self.model, self.objective, self.eval_dataset, samples=config.samples,
                        batch_size=config.batch_size, device=self.device,
                        autocast=self.autocast if self.config.precision == "bf16" else None)

    def fit(self) -> dict[str, Any]:
        config = self.config
        started = time.perf_counter()
        window: dict[str, float] = {}
        window_steps = 0
        window_tokens = 0
        window_start = time.perf_counter()
        first = self.first_record
        last: dict[str, float] = {}
        last_eval: dict[str, Any] | None = None
        total_tokens = 0
        status = "completed"
        try:
            while self.step < config.steps:
                metrics, tokens = self.train_step()
                total_tokens += tokens
                window_tokens += tokens
                window_steps += 1
                for name, value in metrics.items():
                    window[name] = window.get(name, 0.0) + value
                if self.step == 1 or self.step % config.log_every == 0 or self.step == config.steps:
                    elapsed = time.perf_counter() - window_start
                    record: dict[str, Any] = {name: value / window_steps for name, value in window.items()}
                    record.update(step=self.step, split="train", lr=self.scheduler.get_last_lr()[0],
                                  tokens_per_s=window_tokens / max(elapsed, 1e-9),
                                  elapsed_s=time.perf_counter() - started)
                    if first is None:
                        first = dict(record)
                    last = record
                    self.write_metrics(record)
                    self.progress.step(self.step, record)
                    window, window_steps, window_tokens, window_start = {}, 0, 0, time.perf_counter()
                else:
                    self.progress.step(self.step)
                if config.eval_every and self.step % config.eval_every == 0 and self.step < config.steps:
                    last_eval = self.evaluate()
                    if last_eval is not None:
                        self.write_metrics({"step": self.step, "split": "eval",
                                            "elapsed_s": time.perf_counter() - started, **last_eval})
                        if config.stop_at_accuracy and last_eval.get("token_accuracy", 0.0) >= config.stop_at_accuracy:
                            status = "target_reached"
                if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                    self.save()
                if status == "target_reached":
                    break
                if config.max_seconds and time.perf_counter() - started > config.max_seconds:
                    status = "time_limit"
                    break
                if self.stop_requested():
                    status = "interrupted"
                    break
        except (TrainingError, ObjectiveError) as exc:
            self.progress.close()
            self.write_summary(status="diverged" if isinstance(exc, DivergedError) else "failed", error=str(exc),
                               first=first, last=last, evaluation=None, seconds=time.perf_counter() - started,
                               tokens=total_tokens)
            raise
        self.progress.close()
        if not config.checkpoint_every or self.step % config.checkpoint_every:
            self.save()
        self.lockstep = check_lockstep(self.model, self.dist)
        if status == "interrupted":  # stop promptly: the checkpoint is what the user asked to keep
            return self.write_summary(status=status, error=f"stopped by {self.stop.signal_name or 'a signal'}",
                                      first=first, last=last, evaluation=None,
                                      seconds=time.perf_counter() - started, tokens=total_tokens)
        final_eval = None if status == "target_reached" else self.evaluate()  # the stopping one is the last
        if final_eval is not None:
            last_eval = final_eval
            self.write_metrics({"step": self.step, "split": "eval",
                                "elapsed_s": time.perf_counter() - started, **final_eval})
        return self.write_summary(status=status, error=None, first=first, last=last, evaluation=last_eval,
                                  seconds=time.perf_counter() - started, tokens=total_tokens)

    def stop_requested(self) -> bool:
        """Whether any rank was sent Ctrl-C or SIGTERM (agreed across ranks, so all stop together)."""
        flag = torch.tensor(1.0 if self.stop.requested else 0.0, device=self.device)
        return float(all_reduce_mean(flag, self.dist)) > 0

    def write_metrics(self, record: dict[str, Any]) -> None:
        if self.run is not None and self.dist.is_main:
            self.sinks.log(record)

    def write_summary(self, *, status: str, error: str | None, first: dict[str, float] | None,
                      last: dict[str, float], evaluation: dict[str, Any] | None, seconds: float,
                      tokens: int) -> dict[str, Any]:
        ratios = {}
        for name, value in (first or {}).items():
            final = last.get(name)
            if isinstance(value, float) and isinstance(final, float) and value and math.isfinite(value):
                ratios[name] = final / value
        summary = {
            "status": status,
            "error": error,
            "experiment": self.experiment.name,
            "model": self.experiment.model.id,
            "dataset": self.experiment.dataset.id,
            "steps": self.step,
            "wall_seconds": seconds,
            "tokens_per_s": tokens / max(seconds, 1e-9),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "state_floats": state_floats(self.model, self.dataset),
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "signal": self.stop.signal_name,
            "first": first,
            "final": last,
            "final_over_first": ratios,
            "eval": evaluation,
            "opcode_table": self.opcode_table,
            "run_dir": str(self.run.path) if self.run is not None else None,
        }
        if self.dist.enabled:
            summary["ranks_in_lockstep"] = self.lockstep
        if self.run is not None and self.dist.is_main:
            self.run.write_summary(summary)
            self.sinks.close()
            self.run.log_event("summary", status=status, steps=self.step)
            log.info("run_finished", status=status, steps=self.step, run_dir=summary["run_dir"])
        return summary
