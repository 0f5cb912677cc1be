"""A tiny streaming event model for the agent-runtime tests, registered through an isolated plugin
host the way a third-party plugin would register it (mosaic-runtime's tests never import
mosaic-layers).

``TinyStreamLM`` follows the contract's Protocols the runtimes check (``StreamingModel``: ``init_state``,
``step``, ``prefill``, ``forward``; ``StreamingState``: ``copy``/``to``/``state_dict``/``from_state_dict``;
``MemoryReadBack``: ``memory_cells``/``replay_memory``/``forget_memory_cells``/``refresh_memory_cells``). It can be
scripted: ``script`` biases the logits so that, after each event delimiter, the model emits the script
bytes and then a delimiter; ``commit_bias`` biases the commitment head towards one delta.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core import plugin as core_plugin
from mosaic.core.contract import keys
from mosaic.core.events.codec import EVENT_DELIMITER, EventEncoder
from mosaic.core.events.envelope import EventEnvelope
from mosaic.core.model_output import ModelOutput
from mosaic.core.plugins import hookimpl
from mosaic.core.registry import Registry
from mosaic.runtime import plugin as runtime_plugin
from mosaic.runtime.testing.registry import isolated_registry
from mosaic.runtime.training.run import run_preset

REPLY = EventEnvelope("Reply", {"text": "ok"}, "agent", id="r1", ts=1.0)


@attrs.frozen
class TinyStreamConfig:
    d_model: int = 16
    cells: int = 8
    script: str = ""  # canonical JSON of the event to emit after every delimiter ("" = unscripted)
    script_strength: float = 60.0
    commit_bias: int | None = None  # -1 / 0 / +1: the commitment head favours this delta
    commitment_head: bool = True


@attrs.define
class TinyLayerState:
    hidden: torch.Tensor  # (B, D)
    memory: torch.Tensor  # (B, 1, cells + 1, D + 1)


@attrs.define
class TinyState:
    layers: list[TinyLayerState]
    since_delimiter: torch.Tensor  # (B,) tokens since the last delimiter
    position: int = 0

    def copy(self) -> TinyState:
        return TinyState([TinyLayerState(layer.hidden.detach().clone(), layer.memory.detach().clone())
                          for layer in self.layers], self.since_delimiter.clone(), self.position)

    def to(self, device: Any) -> TinyState:
        return TinyState([TinyLayerState(layer.hidden.to(device), layer.memory.to(device)) for layer in self.layers],
                         self.since_delimiter.to(device), self.position)

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {"position": torch.tensor(self.position), "since_delimiter": self.since_delimiter.clone()}
        for index, layer in enumerate(self.layers):
            out[f"layers.{index}.hidden"] = layer.hidden.detach().clone()
            out[f"layers.{index}.memory"] = layer.memory.detach().clone()
        return out

    @classmethod
    def from_state_dict(cls, data: dict[str, torch.Tensor]) -> TinyState:
        count = len([key for key in data if key.endswith(".hidden")])
        layers = [TinyLayerState(data[f"layers.{i}.hidden"].clone(), data[f"layers.{i}.memory"].clone())
                  for i in range(count)]
        return cls(layers, data["since_delimiter"].clone(), int(data["position"]))


@attrs.frozen
class TinyCells:
    """The memory cells of TinyStreamLM's one layer, duck-typing mosaic-layers' ``MemoryCells``."""

    layer: int
    values: torch.Tensor  # (B, 1, cells, D) views of the state's table
    occupancy: torch.Tensor  # (B, 1, cells)
    age: torch.Tensor  # (B, 1, cells) int64, always 0: the tiny memory keeps no write order

    @property
    def utility(self) -> torch.Tensor:
        """The tiny model has no write_utility head: a cell's utility is its write strength."""
        return self.occupancy


class TinyStreamLM(nn.Module):
    """One recurrent layer with a hashed-by-byte memory table, commitment/opcode/gate heads."""

    # buffers, typed here: to mypy, nn.Module.__getattr__ returns Tensor | Module
    script_ids: torch.Tensor

    def __init__(self, config: TinyStreamConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed = nn.Embedding(256, d)
        self.mix = nn.Linear(2 * d, d)
        self.gate = nn.Linear(d, 1)
        self.opcode = nn.Linear(d, 10)
        self.commit = nn.Linear(d, 3)
        self.head = nn.Linear(d, 256)
        script = list(config.script.encode("utf-8")) + [EVENT_DELIMITER]
        self.register_buffer("script_ids", torch.tensor(script, dtype=torch.int64), persistent=False)
        self.router = nn.Linear(d, 3)  # a memory read router's bit logits (one hash, 3 bits), for the routing metrics

    def init_state(self, batch_size: int, device: Any = None) -> TinyState:
        device = self.embed.weight.device if device is None else device
        d, cells = self.config.d_model, self.config.cells
        layer = TinyLayerState(torch.zeros(batch_size, d, device=device),
                               torch.zeros(batch_size, 1, cells + 1, d + 1, device=device))
        return TinyState([layer], torch.zeros(batch_size, dtype=torch.int64, device=device))

    def forward(self, batch: dict[str, torch.Tensor], state: TinyState | None = None) -> ModelOutput:
        ids = batch[keys.INPUT_IDS.name]  # (B, T)
        current = state if state is not None else self.init_state(ids.shape[0], ids.device)
        hidden, memory = current.layers[0].hidden, current.layers[0].memory
        since = current.since_delimiter
        hiddens, gates, sinces = [], [], []
        cells = self.config.cells
        for t in range(ids.shape[1]):
            token = ids[:, t]
            hidden = torch.tanh(self.mix(torch.cat([self.embed(token), hidden], -1)))  # (B, D)
            gate_logit = self.gate(hidden)[:, 0]  # (B,)
            strength = torch.sigmoid(gate_logit)[:, None, None, None]
            mask = F.one_hot(token % cells, cells + 1).to(hidden.dtype)[:, None, :, None]  # (B, 1, cells + 1, 1)
            row = torch.cat([hidden, torch.ones_like(hidden[:, :1])], -1)[:, None, None, :]  # (B, 1, 1, D + 1)
            memory = memory * (1 - strength * mask) + strength * mask * row
            since = torch.where(token == EVENT_DELIMITER, torch.zeros_like(since), since + 1)
            hiddens.append(hidden)
            gates.append(gate_logit)
            sinces.append(since)
        h = torch.stack(hiddens, 1)  # (B, T, D)
        logits = self.head(h)  # (B, T, 256)
        if self.config.script:
            position = torch.stack(sinces, 1).clamp(max=self.script_ids.shape[0] - 1)  # (B, T)
            logits = logits + self.config.script_strength * F.one_hot(self.script_ids[position], 256)
        aux = {keys.WRITE_GATE_LOGITS.name: torch.stack(gates, 1)[None],  # (1, B, T)
               keys.OPCODE_LOGITS.name: self.opcode(h)[None],  # (1, B, T, 10)
               keys.READ_BIT_LOGITS.name: self.router(h)[None, :, :, None]}  # (1, B, T, 1, 3)
        if self.config.commitment_head:
            commit = self.commit(h)
            if self.config.commit_bias is not None:
                commit = commit + 60.0 * F.one_hot(torch.tensor(self.config.commit_bias + 1), 3)
            aux[keys.COMMITMENT_LOGITS.name] = commit[None]  # (1, B, T, 3)
        new_state = TinyState([TinyLayerState(hidden, memory)], since, current.position + ids.shape[1])
        return ModelOutput(logits=logits, aux=aux, state=new_state if state is not None else None)

    def step(self, ids: torch.Tensor, state: TinyState, *, with_aux: bool = True) -> ModelOutput:
        out = self.forward({keys.INPUT_IDS.name: ids[:, None]}, state)
        out.logits = out.logits[:, 0]
        if not with_aux:
            out.aux = {}
        return out

    def prefill(self, ids: torch.Tensor, state: TinyState | None = None, chunk_tokens: int = 512) -> ModelOutput:
        state = self.init_state(ids.shape[0], ids.device) if state is None else state
        return self.forward({keys.INPUT_IDS.name: ids}, state)

    # the memory read-back API consolidation uses (see MosaicLM.memory_cells)

    def memory_cells(self, state: TinyState) -> list[TinyCells]:
        table = state.layers[0].memory[:, :, :-1]
        return [TinyCells(0, table[..., :-1], table[..., -1], torch.zeros_like(table[..., -1], dtype=torch.int64))]

    def replay_memory(self, state: TinyState, cells: TinyCells, select: torch.Tensor | None = None,
                      as_logits: bool = True) -> torch.Tensor:
        values = cells.values if select is None else cells.values[select]
        with torch.no_grad():
            return self.head(values.reshape(-1, values.shape[-1])) if as_logits else values

    def forget_memory_cells(self, state: TinyState, cells: TinyCells, select: torch.Tensor) -> int:
        state.layers[0].memory[:, :, :-1][select] = 0.0
        return int(select.sum())

    def refresh_memory_cells(self, state: TinyState, cells: TinyCells, select: torch.Tensor) -> int:
        """The tiny memory keeps no write order (cells are hashed by byte, never overwritten by age),
        so a refresh has nothing to move; it reports the cells it was asked to refresh."""
        return int(select.sum())


@attrs.frozen
class TinyEventBytesConfig:
    size: int = 32
    seq_len: int = 48
    seed: int = 0


class TinyEventBytes:
    """Windows of a stream of small canonical events (next-byte targets only)."""

    def __init__(self, config: TinyEventBytesConfig) -> None:
        self.config = config
        events = [EventEnvelope("Note", {"n": i % 7}, "user", id=f"e{i}", ts=float(i)) for i in range(64)]
        self.stream = EventEncoder().encode_stream(events)

    def __len__(self) -> int:
        return self.config.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        length = self.config.seq_len
        start = (index * 37 + self.config.seed) % (self.stream.shape[0] - length - 1)
        window = self.stream[start : start + length + 1]
        return {keys.INPUT_IDS.name: window[:-1].clone(), keys.TARGET_IDS.name: window[1:].clone()}


class AgentTinyPlugin:
    @staticmethod
    @hookimpl
    def register_models(register: Any) -> None:
        register("model.agent_tiny_stream", TinyStreamLM, config=TinyStreamConfig, summary="tiny streaming model")

    @staticmethod
    @hookimpl
    def register_datasets(register: Any) -> None:
        register("dataset.agent_tiny_events", TinyEventBytes, config=TinyEventBytesConfig, summary="event bytes")


def agent_registry() -> Registry:
    """mosaic-core, mosaic-runtime and the tiny streaming model and dataset, nothing else."""
    return isolated_registry([(core_plugin, "mosaic-core"), (runtime_plugin, "mosaic-runtime"),
                              (AgentTinyPlugin, "agent-tiny")])


PRESET = """\
version: 2
name: agent_tiny
targets:
  - type: experiment
    name: agent
    backend: torch
    model:
      type: model.agent_tiny_stream
      script: '{script}'
      commit_bias: {commit_bias}
    objective:
      type: objective.mosaic_event_prediction
    dataset:
      type: dataset.agent_tiny_events
    trainer:
      steps: 2
      batch_size: 4
      lr: 0.001
      warmup_steps: 1
      log_every: 1
      checkpoint_every: 2
      threads: 1
"""


def make_run(tmp_path: Path, *, script: str = "", commit_bias: int | None = None) -> tuple[Path, Any]:
    """Train the tiny model for two steps; (run directory, registry)."""
    registry = agent_registry()
    preset = tmp_path / "agent_tiny.yml"
    bias = "null" if commit_bias is None else str(commit_bias)
    preset.write_text(PRESET.format(script=script.replace("'", "''"), commit_bias=bias), encoding="utf-8")
    summary = run_preset(str(preset), registry=registry, out=tmp_path / "runs", show_progress=False)
    return Path(summary["run_dir"]), registry
