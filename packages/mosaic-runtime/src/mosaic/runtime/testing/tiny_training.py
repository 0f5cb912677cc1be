"""Tiny model and dataset components for the training-engine tests, registered through an isolated
plugin host exactly as a third-party plugin would register them."""

from __future__ import annotations

import time
from typing import Any, cast

import attrs
import torch

from mosaic.core.contract import keys
from mosaic.core.errors import ConfigProblem
from mosaic.core.model_output import ModelOutput
from mosaic.core.plugins import hookimpl
from mosaic.core.registry import Registry
from mosaic.runtime import plugin as runtime_plugin
from mosaic.runtime.testing.registry import isolated_registry


@attrs.frozen
class TinyLMConfig:
    vocab_size: int = 16
    d_model: int = 16
    n_layers: int = 2
    opcode_vocab: int = 10
    commitment_head: bool = True
    nan_at_call: int = -1
    blowup_at_call: int = -1  # from this forward call on, logits are scaled up: a finite, exploding loss
    unused_head: bool = False  # a head no loss term reads: it never gets a gradient (as DDP sees it)
    dropout: float = 0.0
    delay_s: float = 0.0


class TinyLM(torch.nn.Module):
    """Embedding, per-layer causal running mean + MLP, per-layer opcode/commitment/gate heads."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = torch.nn.Embedding(config.vocab_size, config.d_model)
        self.layers = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(2 * config.d_model, config.d_model), torch.nn.GELU())
            for _ in range(config.n_layers)
        )
        self.opcode = torch.nn.ModuleList(torch.nn.Linear(config.d_model, config.opcode_vocab)
                                          for _ in range(config.n_layers))
        self.commit = torch.nn.ModuleList(torch.nn.Linear(config.d_model, 3) for _ in range(config.n_layers))
        self.gate = torch.nn.ModuleList(torch.nn.Linear(config.d_model, 1) for _ in range(config.n_layers))
        self.dropout = torch.nn.Dropout(config.dropout)
        self.head = torch.nn.Linear(config.d_model, config.vocab_size)
        self.unused = torch.nn.Linear(config.d_model, 1) if config.unused_head else None
        self.calls = 0

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        self.calls += 1
        if self.config.delay_s:
            time.sleep(self.config.delay_s)  # makes a run slow enough to be killed mid-way
        x = self.embed(batch[keys.INPUT_IDS.name])  # (B, T, D)
        steps = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        opcodes, commits, gates = [], [], []
        for index, layer in enumerate(self.layers):
            context = x.cumsum(1) / steps
            x = x + self.dropout(layer(torch.cat([x, context], -1)))
            opcodes.append(self.opcode[index](x))
            commits.append(self.commit[index](x))
            gates.append(self.gate[index](x).squeeze(-1))
        logits = self.head(x)
        if self.config.nan_at_call >= 0 and self.calls >= self.config.nan_at_call:
            logits = logits * float("nan")
        if self.config.blowup_at_call >= 0 and self.calls >= self.config.blowup_at_call:
            logits = logits * 1e4
        aux = {
            keys.OPCODE_LOGITS.name: torch.stack(opcodes),  # (L, B, T, V_op)
            keys.WRITE_GATE_LOGITS.name: torch.stack(gates),  # (L, B, T)
            # a parameter-only regulariser, as the real state-decay term is: (L,)
            keys.STATE_DECAY_REG_LOSS.name: torch.stack([cast(torch.Tensor, gate.bias).pow(2).sum() for gate in self.gate]),
        }
        if self.config.commitment_head:
            aux[keys.COMMITMENT_LOGITS.name] = torch.stack(commits)  # (L, B, T, 3)
        if self.unused is not None:
            aux["tiny_unused_logits"] = self.unused(x)[..., 0]  # (B, T): no objective term reads it
        return ModelOutput(logits=logits, aux=aux)


@attrs.frozen
class TinySequenceConfig:
    """Counting sequences: token t+1 = token t + 1 (mod vocab); commitment from the token's value."""

    size: int = 64
    seq_len: int = 12
    vocab_size: int = 16
    seed: int = 0
    teacher: bool = True


class TinySequences:
    def __init__(self, config: TinySequenceConfig) -> None:
        self.config = config
        self.difficulty = 0

    def __len__(self) -> int:
        return self.config.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + index)
        start = int(torch.randint(self.config.vocab_size, (1,), generator=generator))
        seq = (start + torch.arange(self.config.seq_len + 1)) % self.config.vocab_size
        item = {keys.INPUT_IDS.name: seq[:-1], keys.TARGET_IDS.name: seq[1:].clone()}
        if self.config.teacher:
            tokens = seq[:-1]
            item[keys.TEACHER_OPCODE.name] = torch.where(tokens % 2 == 0, 1, 2)
            delta = torch.where(tokens < 5, -1, torch.where(tokens < 10, 0, 1))
            delta[0] = keys.IGNORE_INDEX
            item[keys.TEACHER_COMMITMENT_DELTA.name] = delta
            item[keys.TEACHER_WRITE_GATE.name] = (tokens % 3 == 0).float()
        return item


@attrs.frozen
class TinyRampConfig:
    every: int = 5
    warmup_steps: int = 0
    cooldown_steps: int = 0

    def check_total_steps(self, total_steps: int) -> list[ConfigProblem]:
        """The curriculum protocol's optional config check (mosaic-data is not installed here)."""
        if total_steps > self.warmup_steps + self.cooldown_steps:
            return []
        return [ConfigProblem("cooldown_steps", f"warmup_steps ({self.warmup_steps}) + cooldown_steps "
                              f"({self.cooldown_steps}) leave no steps to ramp over in a run of "
                              f"trainer.steps={total_steps}")]


class TinyRamp:
    """A curriculum that records the steps it was applied at."""

    def __init__(self, config: TinyRampConfig) -> None:
        self.config = config

    def update(self, step: int, total_steps: int, dataset: TinySequences) -> dict[str, float]:
        dataset.difficulty = step // self.config.every
        return {"difficulty": float(dataset.difficulty)}


class TinyPlugin:
    @staticmethod
    @hookimpl
    def register_models(register: Any) -> None:
        register("model.tiny_lm", TinyLM, config=TinyLMConfig, summary="tiny test model")

    @staticmethod
    @hookimpl
    def register_datasets(register: Any) -> None:
        register("dataset.tiny_sequences", TinySequences, config=TinySequenceConfig, summary="counting")

    @staticmethod
    @hookimpl
    def register_curricula(register: Any) -> None:
        register("curriculum.tiny_ramp", TinyRamp, config=TinyRampConfig, summary="records steps")


def tiny_registry() -> Registry:
    """mosaic-runtime and the tiny model, dataset and curriculum, nothing else."""
    return isolated_registry([(runtime_plugin, "mosaic-runtime"), (TinyPlugin, "tiny-test")])


TINY_PRESET = """\
version: 2
name: tiny
notes: a tiny preset for tests
vars:
  d_model: 16
  steps: 30
  tag: d${d_model}
targets:
  - type: experiment
    name: train
    backend: torch
    model:
      type: model.tiny_lm
      d_model: ${d_model}
      n_layers: 2
    objective:
      type: objective.mosaic_event_prediction
      aux_opcode_weight: 0.5
      aux_commitment_weight: 0.5
      aux_gate_weight: 0.1
      aux_state_decay_weight: 0.01
    dataset:
      type: dataset.tiny_sequences
      size: 64
    curriculum:
      type: curriculum.tiny_ramp
    trainer:
      steps: ${steps}
      batch_size: 8
      lr: 0.01
      warmup_steps: 3
      log_every: 5
      checkpoint_every: 10
      threads: 1
    eval:
      samples: 32
      batch_size: 16
      dataset:
        seed: 99
"""
