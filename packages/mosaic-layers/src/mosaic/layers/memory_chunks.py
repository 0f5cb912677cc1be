"""The chunk-parallel read of ``memory.hashed`` (:meth:`~mosaic.layers.memory.HashedMemory.read_chunks`):
a plan's tokens in chunks, and the part of the read that depends only on the routing, the write
strengths and the keys, which the passes that find the clears' slots share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
import torch.nn.functional as F

from mosaic.layers.config import MosaicBlockConfig

if TYPE_CHECKING:
    from mosaic.layers.memory import MemoryPlan


def chunked(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """``x (B, T, H, ...)`` -> ``(B, H, nC, C, ...)`` (``(B, T)`` -> ``(B, nC, C)``), padded with zeros
    to ``nC * C`` tokens; ``shape`` is ``(B, nC, C)``."""
    pad = shape[1] * shape[2] - x.shape[1]
    x = F.pad(x, [0, 0] * (x.dim() - 2) + [0, pad]) if pad else x
    x = x.view(*shape, *x.shape[2:])
    return x.transpose(1, 3).transpose(2, 3) if x.dim() >= 4 else x


class ChunkLayout(NamedTuple):
    """:func:`chunk_layout`: one plan's routing in chunks, each ``(B, H, nC, C, ...)``. A named
    tuple, not a frozen attrs class: ``torch.compile`` cannot trace the ``object.__setattr__`` of a
    frozen attrs ``__init__``, and this is built inside every forward."""

    shape: tuple[int, int, int]  # (B, nC, C)
    read_bucket: torch.Tensor
    cell: torch.Tensor  # the written cell
    query: torch.Tensor  # (B, 1, nC, C, dk)
    read_ste: torch.Tensor
    later: torch.Tensor  # (C, C) [u, s] = u > s
    zero: torch.Tensor
    slot_one_hot: torch.Tensor  # (.., C, A)
    same_cell: torch.Tensor  # (.., C, C)
    hits: torch.Tensor  # (.., C, C) t reads the bucket s wrote
    slots: torch.Tensor  # (.., C, A) the table rows of t's read bucket
    between: torch.Tensor  # (.., C, C) log decay of s's write by the write at u
    start_log: torch.Tensor  # (.., C, A) log decay of t's bucket's chunk-start slots before t
    total_keep: torch.Tensor  # (.., C) decay of the written cell over the chunk
    query_keys: torch.Tensor  # (.., C, C) t's query times s's key
    flat_cell: torch.Tensor  # (nC, B * H * C) rows of the flat table
    flat_target: torch.Tensor
    flat_slots: torch.Tensor  # (nC, B * H * C * A)

    def from_chunk(self, first: int) -> ChunkLayout:
        """The layout of chunks ``first`` on (of the plan's tokens from ``first * C`` on)."""
        if first == 0:
            return self
        bsz, n_chunks, size = self.shape
        fields: list[Any] = [
            (bsz, n_chunks - first, size) if name == "shape"
            else value if name in ("later", "zero")  # (C, C) and 0-d: the same in every chunk
            else value[first:] if name.startswith("flat_")  # chunk first
            else value[:, :, first:]  # (B, H, nC, ...)
            for name, value in zip(self._fields, cast(tuple[Any, ...], self), strict=True)
        ]
        return ChunkLayout(*fields)


def chunk_layout(plan: MemoryPlan, chunk: int, config: MosaicBlockConfig, cells: int) -> ChunkLayout:
    """What :meth:`~mosaic.layers.memory.HashedMemory.read_chunks` computes from ``plan`` apart from
    its content's values and occupancy and from the clears: routing masks, the decays of writes by
    later writes and the key products. The passes of ``read_with_clears`` share one (made with
    gradients). ``cells``: the table's real rows per hash (its scratch row is the next)."""
    c = config
    bsz, length, hashes = plan.read_bucket.shape
    assoc, dk, trash = c.mem_assoc, c.mem_key_dim, cells
    size = max(1, min(chunk, length))
    shape = (bsz, (length + size - 1) // size, size)
    read_bucket, cell = chunked(plan.read_bucket, shape), chunked(plan.write_cell, shape)  # (B, H, nC, C)
    log_keep = chunked(plan.log_keep, shape)[:, None]  # (B, 1, nC, C)
    query = chunked(plan.query[:, :, None], shape)  # (B, 1, nC, C, dk)
    keys = chunked(plan.content[..., :dk], shape)  # (B, H, nC, C, dk)
    index = torch.arange(size, device=cell.device)
    later = index[:, None] > index[None, :]  # [u, s] = u > s
    zero = torch.zeros((), device=cell.device, dtype=plan.content.dtype)
    slot_one_hot = F.one_hot(cell % assoc, assoc).to(plan.content.dtype)  # (B, H, nC, C, A)
    same_cell = cell[..., :, None] == cell[..., None, :]  # (B, H, nC, C, C) symmetric
    hits = (read_bucket[..., :, None] == (cell // assoc)[..., None, :]) & later  # t reads what s wrote
    last = ~(same_cell & later).any(dim=-2)
    target = torch.where(last, cell, torch.full_like(cell, trash))
    slots = read_bucket[..., None] * assoc + torch.arange(assoc, device=cell.device)  # (B, H, nC, C, A)
    # the rows each chunk reads and writes in the flat (B * H * (cells + 1), dim) table, chunk
    # first: whole rows are copied by index_select / index_copy, much cheaper than gather and
    # scatter along dim 2 with an index expanded over the cell's width (and so are their backwards)
    base = (torch.arange(bsz * hashes, device=cell.device) * (trash + 1)).view(bsz, hashes, 1, 1)
    flat = [
        (rows + base).permute(2, 0, 1, 3).reshape(shape[1], -1) for rows in (cell, target, slots.flatten(-2))
    ]
    return ChunkLayout(
        shape=shape,
        read_bucket=read_bucket,
        cell=cell,
        query=query,
        read_ste=chunked(plan.read_ste, shape),
        later=later,
        zero=zero,
        slot_one_hot=slot_one_hot,
        same_cell=same_cell,
        hits=hits,
        slots=slots,
        # decay of s's write by later writes u (s < u) to the same cell: [u, s]
        between=torch.where(same_cell & later, log_keep[..., :, None], zero),
        # decay of the chunk-start slot j of t's read bucket by this chunk's writes before t
        start_log=torch.where(hits, log_keep[..., None, :], zero) @ slot_one_hot,  # (.., C, A)
        total_keep=torch.exp(torch.where(same_cell, log_keep[..., :, None], zero).sum(dim=-2)),  # (.., C)
        query_keys=query @ keys.transpose(-1, -2),
        flat_cell=flat[0],
        flat_target=flat[1],
        flat_slots=flat[2],
    )
