"""Reading a hashed memory back (consolidation, inspection), apart from the fast path.

Nothing here runs during training or generation: :class:`~mosaic.layers.memory.HashedMemory`'s
``read_cells``, ``replay_values`` and ``forget_cells`` (the contract's ``ReadableBlockMemory``) delegate here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import torch

if TYPE_CHECKING:
    from mosaic.layers.memory import HashedMemory


@attrs.frozen
class MemoryCells:
    """The real cells of one layer's memory table, as views of a :class:`~mosaic.layers.state.MosaicState`.

    Every tensor is laid out ``(B, H, buckets, assoc, ...)``; ``keys``/``values``/``occupancy`` share
    storage with the state (writing them writes the state). A cell holds the gated EMA of the writes
    routed to it, ``[w key, w value, w]`` summed with decay, so ``occupancy`` is its total write
    strength and ``keys``/``values`` are exactly what the read path scores and returns (the read
    weights a slot by ``exp(q.key / sqrt(dk)) * occupancy`` and sums ``weight * value``).

    ``age`` is how many writes to the same bucket came after the cell's last write, known exactly
    for the ``ring`` slot policy (``(writes mod assoc - 1 - slot) mod assoc``; 0 is the newest) and
    reported as 0 for the ``router`` policy, which keeps no write order. ``utility`` is defined from
    what the state already holds, ``occupancy * (assoc - age) / assoc``: a strong, recently written
    cell is worth keeping; an empty cell is worth 0. (The block's ``write_utility`` head scores
    tokens at write time and is not stored in the state, so it cannot be read back.)
    """

    layer: int
    keys: torch.Tensor  # (B, H, NB, A, key_dim)
    values: torch.Tensor  # (B, H, NB, A, mem_dim)
    occupancy: torch.Tensor  # (B, H, NB, A)
    bucket: torch.Tensor  # (B, H, NB, A) int64
    slot: torch.Tensor  # (B, H, NB, A) int64
    age: torch.Tensor  # (B, H, NB, A) int64

    @property
    def utility(self) -> torch.Tensor:
        assoc = self.occupancy.shape[-1]
        return self.occupancy * (assoc - self.age).to(self.occupancy.dtype) / assoc


def memory_cells(memory: HashedMemory, table: torch.Tensor, counts: torch.Tensor, layer: int) -> MemoryCells:
    """One layer's cells from its state table ``(B, H, cells + 1, dim)`` and ring counts ``(B, H, NB)``."""
    c = memory.config
    view = memory.table_view(table)  # (B, H, NB, A, dim)
    occupancy = view[..., -1]
    shape = occupancy.shape
    bucket = torch.arange(c.mem_buckets, device=table.device)[:, None].expand(shape)
    slot = torch.arange(c.mem_assoc, device=table.device).expand(shape)
    if c.mem_slot_policy == "ring":
        age = (counts[..., None] - 1 - slot) % c.mem_assoc
    else:
        age = torch.zeros_like(slot)
    return MemoryCells(layer=layer, keys=view[..., : c.mem_key_dim], values=view[..., c.mem_key_dim : -1],
                       occupancy=occupancy, bucket=bucket, slot=slot, age=age)


def forget_cells(memory: HashedMemory, table: torch.Tensor, select: torch.Tensor) -> int:
    """Clear (in place) the ``select``-ed cells ``(B, H, NB, A)`` of ``table``: key, value and
    occupancy become 0, as if never written (ring counts are kept, so the write order of the other
    slots is unchanged). Returns how many cells were cleared."""
    memory.table_view(table)[select] = 0.0
    return int(select.sum())
