"""Streaming state of MOSAIC blocks and models: typed, copyable, savable (``torch.save``-able and
round-trips through a flat ``state_dict``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch

from mosaic.core.errors import CheckpointError


@attrs.define
class MemoryState:
    """A block memory's per-sample state, laid out by the memory's kind (``memory.*``).

    For ``memory.hashed``: ``table (B, H, NB * A + 1, key_dim + mem_dim + 1)`` (cells + a scratch
    row), ``summary (B, 1, key_dim + mem_dim + 1)`` the all-bucket summary read by SCAN, ``counts
    (B, H, NB)`` int64 writes per bucket mod assoc, ``utility (B, H, NB * A)`` what the block's
    ``write_utility`` head said of each cell's writes (a gated EMA like the cell's). Other memories use ``table`` and leave the
    optional parts None."""

    table: torch.Tensor
    summary: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    utility: torch.Tensor | None = None  # (B, H, NB * A) the write-time utility of each cell (memory.hashed)


#: BlockState fields that a memory may leave empty (besides ``registers``).
OPTIONAL_FIELDS = ("registers", "summary", "mem_counts", "mem_utility")


@attrs.define
class BlockState:
    """What one block carries from token to token. ``memory``, ``summary`` and ``mem_counts`` are
    the parts of the block memory's :class:`MemoryState` (kept flat so saved states keep their
    names)."""

    conv_tail: torch.Tensor  # (B, conv_kernel - 1, D) last inputs of the causal conv
    bank: torch.Tensor  # (B, state_k * state_dim) leaky integrators
    memory: torch.Tensor  # the memory's table: (B, H, NB * A + 1, key_dim + mem_dim + 1) for memory.hashed
    summary: torch.Tensor | None  # (B, 1, key_dim + mem_dim + 1) all-bucket summary read by SCAN (advanced only when opcodes control the block)
    mem_counts: torch.Tensor | None  # (B, H, NB) int64 writes per bucket mod assoc (ring-buffer slots)
    registers: torch.Tensor | None  # (B, R, reg_dim), None without registers
    mem_utility: torch.Tensor | None = None  # (B, H, NB * A) write-time utility per cell (consolidation)

    @property
    def memory_state(self) -> MemoryState:
        return MemoryState(self.memory, self.summary, self.mem_counts, self.mem_utility)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in attrs.fields(BlockState) if getattr(self, f.name) is not None}

    def contiguous_(self) -> BlockState:
        """Make the tensors a recurrent step updates in place contiguous, and writable in the current
        grad mode (a tensor made under ``torch.inference_mode`` is copied outside it); returns self."""
        inference = torch.is_inference_mode_enabled()
        for name in ("memory", "mem_counts", "mem_utility", "summary", "registers", "bank"):
            tensor = getattr(self, name)
            if tensor is None:
                continue
            if not inference and tensor.is_inference():
                setattr(self, name, tensor.clone(memory_format=torch.contiguous_format))
            elif not tensor.is_contiguous():
                setattr(self, name, tensor.contiguous())
        return self

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> BlockState:
        fields: dict[str, Any] = {f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                                  for f in attrs.fields(BlockState)}
        return BlockState(**fields)


@attrs.define
class MosaicState:
    """The state of a whole :class:`~mosaic.layers.model.MosaicLM`: one :class:`BlockState` per
    layer and the number of tokens consumed so far."""

    layers: list[BlockState]
    position: int = 0

    @property
    def batch_size(self) -> int:
        return int(self.layers[0].bank.shape[0])

    def copy(self) -> MosaicState:
        """An independent copy (tensors cloned, detached from any graph)."""
        return MosaicState([layer.map(lambda t: t.detach().clone()) for layer in self.layers], self.position)

    def detach(self) -> MosaicState:
        """The same state cut from the autograd graph (for truncated backpropagation)."""
        return MosaicState([layer.map(lambda t: t.detach()) for layer in self.layers], self.position)

    def to(self, device: torch.device | str) -> MosaicState:
        return MosaicState([layer.map(lambda t: t.to(device)) for layer in self.layers], self.position)

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {"position": torch.tensor(self.position, dtype=torch.int64)}
        for i, layer in enumerate(self.layers):
            for name, tensor in layer.tensors().items():
                out[f"layers.{i}.{name}"] = tensor.detach().clone()
        return out

    @classmethod
    def from_state_dict(cls, data: dict[str, torch.Tensor]) -> MosaicState:
        if "position" not in data:
            raise CheckpointError("MosaicState: state dict has no 'position' entry")
        by_layer: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in data.items():
            if key == "position":
                continue
            prefix, index, name = (key.split(".", 2) + ["", ""])[:3]
            if prefix != "layers" or not index.isdigit() or name not in attrs.fields_dict(BlockState):
                raise CheckpointError(f"MosaicState: unexpected state dict entry {key!r}")
            by_layer.setdefault(int(index), {})[name] = tensor.clone()
        if sorted(by_layer) != list(range(len(by_layer))) or not by_layer:
            raise CheckpointError(f"MosaicState: layers must be numbered 0..n-1, got {sorted(by_layer)}")
        layers = []
        for i in range(len(by_layer)):
            entries = by_layer[i]
            missing = [f.name for f in attrs.fields(BlockState) if f.name not in OPTIONAL_FIELDS and f.name not in entries]
            if missing:
                raise CheckpointError(f"MosaicState: layer {i} lacks {', '.join(missing)}")
            layers.append(BlockState(
                conv_tail=entries["conv_tail"], bank=entries["bank"], memory=entries["memory"],
                summary=entries.get("summary"), mem_counts=entries.get("mem_counts"),
                registers=entries.get("registers"), mem_utility=entries.get("mem_utility"),
            ))
        return cls(layers, int(data["position"]))
