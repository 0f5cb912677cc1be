"""Reading a hashed memory back (consolidation, inspection), apart from the fast path.

Nothing here runs during training or generation except :func:`written_utility`, which keeps each
cell's write-time utility in the state: :class:`~mosaic.layers.memory.HashedMemory`'s ``read_cells``,
``replay_values``, ``forget_cells`` and ``refresh_cells`` (the contract's ``ReadableBlockMemory``)
delegate here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import torch

from mosaic.core.errors import ModelError

if TYPE_CHECKING:
    from mosaic.layers.memory import HashedMemory


@attrs.frozen
class MemoryCells:
    """The real cells of one layer's memory table, as views of a :class:`~mosaic.layers.state.MosaicState`.

    Every tensor is laid out ``(B, H, buckets, assoc, ...)``; ``keys``/``values``/``occupancy``/``utility``
    share storage with the state (writing them writes the state). A cell holds the gated EMA of the
    writes routed to it, ``[w key, w value, w]`` summed with decay, so ``occupancy`` is its total write
    strength and ``keys``/``values`` are exactly what the read path scores and returns (the read
    weights a slot by ``exp(q.key / sqrt(dk)) * occupancy`` and sums ``weight * value``).

    ``age`` is how many writes to the same bucket came after the cell's last write, known exactly
    for the ``ring`` slot policy (``(writes mod assoc - 1 - slot) mod assoc``; 0 is the newest) and
    reported as 0 for the ``router`` policy, which keeps no write order. ``utility`` is what the
    block's ``write_utility`` head said when the cell was written (``sigmoid`` of its logit, kept as
    the same gated EMA as the cell, so a cell written once with full strength holds exactly that
    value; 0 for an empty cell). It is None for a state recorded before the state kept it.
    """

    layer: int
    keys: torch.Tensor  # (B, H, NB, A, key_dim)
    values: torch.Tensor  # (B, H, NB, A, mem_dim)
    occupancy: torch.Tensor  # (B, H, NB, A)
    bucket: torch.Tensor  # (B, H, NB, A) int64
    slot: torch.Tensor  # (B, H, NB, A) int64
    age: torch.Tensor  # (B, H, NB, A) int64
    utility: torch.Tensor | None  # (B, H, NB, A) write-time utility in [0, 1]


def memory_cells(memory: HashedMemory, table: torch.Tensor, counts: torch.Tensor, utility: torch.Tensor | None,
                 layer: int) -> MemoryCells:
    """One layer's cells from its state table ``(B, H, cells + 1, dim)``, ring counts ``(B, H, NB)``
    and utility ``(B, H, cells)``."""
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
                       occupancy=occupancy, bucket=bucket, slot=slot, age=age,
                       utility=None if utility is None else utility.view(shape))


def written_utility(write_cell: torch.Tensor, log_keep: torch.Tensor, utility_logits: torch.Tensor,
                    utility: torch.Tensor) -> torch.Tensor:
    """Each cell's utility after the tokens' writes: the gated EMA ``u <- (1 - w) u + w sigmoid(logit)``
    of every write routed to the cell, in token order, computed in parallel (a sort by cell).

    write_cell (B, T, H) int64; log_keep (B, T) ``log(1 - w)``; utility_logits (B, T); utility (B, H, cells)."""
    bsz, length, hashes = write_cell.shape
    cells = utility.shape[-1]
    n = bsz * hashes
    cell = write_cell.detach().permute(0, 2, 1).reshape(n, length)
    keep = log_keep.detach()[:, None, :].expand(bsz, hashes, length).reshape(n, length).to(utility.dtype)
    said = torch.sigmoid(utility_logits.detach().float()).to(utility.dtype)
    added = (-torch.expm1(keep)) * said[:, None, :].expand(bsz, hashes, length).reshape(n, length)  # w * u
    position = torch.arange(length, device=cell.device)
    order = torch.argsort(cell * length + position, dim=-1)  # by cell, then token order
    cell, keep, added = cell.gather(1, order), keep.gather(1, order), added.gather(1, order)
    last = torch.ones_like(cell, dtype=torch.bool)
    last[:, :-1] = cell[:, 1:] != cell[:, :-1]
    end = torch.where(last, position.expand(n, length), torch.full_like(cell, length))
    end = end.flip(-1).cummin(-1).values.flip(-1)  # the last index of each token's cell segment
    suffix = torch.nn.functional.pad(keep.flip(-1).cumsum(-1).flip(-1), (0, 1))  # sum of keep from i on
    later = suffix[:, :-1] - keep - suffix.gather(1, end + 1)  # decay by later writes to the same cell
    flat = utility.reshape(n, cells)
    kept = torch.zeros_like(flat).scatter_add(1, cell, keep)
    fresh = torch.zeros_like(flat).scatter_add(1, cell, added * torch.exp(later))
    return (flat * torch.exp(kept) + fresh).view(bsz, hashes, cells)


def forget_cells(memory: HashedMemory, table: torch.Tensor, utility: torch.Tensor | None, select: torch.Tensor) -> int:
    """Clear (in place) the ``select``-ed cells ``(B, H, NB, A)`` of ``table``: key, value, occupancy
    and utility become 0, as if never written (ring counts are kept, so the write order of the other
    slots is unchanged). Returns how many cells were cleared."""
    memory.table_view(table)[select] = 0.0
    if utility is not None:
        utility.view(select.shape)[select] = 0.0
    return int(select.sum())


def refresh_cells(memory: HashedMemory, table: torch.Tensor, counts: torch.Tensor, utility: torch.Tensor | None,
                  select: torch.Tensor) -> int:
    """Re-write (in place) the ``select``-ed cells ``(B, H, NB, A)`` as their bucket's newest writes, so
    that the ring overwrites every other cell of the bucket before them.

    Within each bucket the cells are permuted (contents and utility move together, nothing is lost):
    the unselected cells take the oldest ring positions, the selected ones the newest, each group in
    its previous write order. The read scores a bucket's slots by content, not position, so reads are
    unchanged; only what the next writes overwrite changes. Returns how many cells were selected."""
    c = memory.config
    if c.mem_slot_policy != "ring":
        raise ModelError(f"refresh_cells: the {c.mem_slot_policy!r} slot policy keeps no write order to refresh "
                         "(only mem_slot_policy 'ring' does)")
    view = memory.table_view(table)  # (B, H, NB, A, dim)
    assoc = c.mem_assoc
    age = (counts[..., None] - 1 - torch.arange(assoc, device=table.device)) % assoc  # (B, H, NB, A)
    ring_position = assoc - 1 - age  # 0 oldest (overwritten next) .. A-1 newest
    order = torch.argsort(select.long() * assoc + ring_position, dim=-1)  # source slot of each ring position
    target = (counts[..., None] + torch.arange(assoc, device=table.device)) % assoc  # slot of each ring position
    moved = view.gather(3, order[..., None].expand_as(view))
    view.scatter_(3, target[..., None].expand_as(view), moved)
    if utility is not None:
        cells = utility.view(select.shape)
        cells.scatter_(3, target, cells.gather(3, order))
    return int(select.sum())
