"""Hashed set-associative memory with exact causal reads, computed chunk-parallel.

Layout: per sample a table ``(B, H hashes, NB buckets * A slots + 1, key_dim + mem_dim + 1)``; the
cell content is ``[key, value, occupancy]`` and the extra last row is a scratch cell that is never
read. Routing: sign bits of a projection pick a bucket per hash (LSB first), separately for reads
and writes; the slot inside the write bucket comes from a slot router on the write key.

Deviation from the original (documented on purpose): the original picked the slot sequentially
(matching key, else empty, else least recently used), which forces a loop over tokens. Here the slot
is a parallel function of the token, and a write is a gated EMA of the cell,
``cell <- (1 - w) cell + w [key, value, 1]``: a diagonal linear recurrence per cell. A
token's view of its read bucket is then (the chunk-start table, decayed by the writes to the same
cell earlier in the chunk) + (masked, decayed contributions of those writes), so a token reads
everything written before it in the same sequence, including earlier in its own chunk.

CLEAR_MEM erases by content, not by position: a clearing token scales by ``1 - clear`` the slot of
its read bucket that a read at that token would weight most (the best key match), before the token
reads or writes. Which slot that is depends on the memory's contents, so the fast path finds the
slots by fixed-point iteration over cheap passes and carries each clear in the chunk-parallel read as
a decay of its cell (see :meth:`HashedMemory.read_with_clears`). A token clears only where its clear
channel exceeds :data:`CLEAR_THRESHOLD` in some row of the batch (under soft control every channel is
a little open everywhere, and clearing at every token would serialise the read); a token that does
not clear passes no straight-through gradient to that channel (the opcode head learns CLEAR_MEM from
its supervision and from the tokens that do clear).

Routing decisions are hard in the forward pass and learn through a straight-through estimator: the
read (write) content of hash h is multiplied by ``exp(c - c.detach())`` where ``c`` is the log
probability of the chosen bits (and slot), which is 1 forward and passes d c backward.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.contract import keys
from mosaic.core.errors import ModelError
from mosaic.layers import memory_readback
from mosaic.layers.config import MosaicBlockConfig
from mosaic.layers.memory_chunks import ChunkLayout, chunk_layout, chunked
from mosaic.layers.memory_clears import clear_chain, clearing_positions
from mosaic.layers.memory_readback import MemoryCells
from mosaic.layers.memory_routing import ring_slots, route
from mosaic.layers.scan import LOG_FLOOR, exclusive, gated_scan, safe_log
from mosaic.layers.state import MemoryState
from mosaic.layers.vm import Controls, TeacherForcing, forced_float

OCCUPANCY_FLOOR = 1e-6
#: A full clear decays its cell by this (exp(-LOG_FLOOR)), not 0, so that it has a logarithm.
CLEAR_FLOOR = math.exp(-LOG_FLOOR)


@attrs.define
class MemoryPlan:
    """Everything about a token's memory access that does not depend on the memory's contents."""

    query: torch.Tensor  # (B, T, dk)
    read_bucket: torch.Tensor  # (B, T, H) int64
    read_ste: torch.Tensor  # (B, T, H) 1 forward, router gradient backward
    write_cell: torch.Tensor  # (B, T, H) int64: write_bucket * A + slot
    log_keep: torch.Tensor  # (B, T) log(1 - w) for the written cell
    clear: torch.Tensor  # (B, T) strength of the clear of the best-matching slot of the read bucket
    content: torch.Tensor  # (B, T, H, dim) w * [key, value, 1] * straight-through factors
    summary_log_keep: torch.Tensor  # (B, T) log(1 - w) of the all-bucket summary
    summary_content: torch.Tensor  # (B, T, dim) w * [key, value, 1]
    counts: torch.Tensor  # (B, H, NB) int64 ring-buffer write counts after the last token
    aux: dict[str, torch.Tensor]

    def between(self, start: int, end: int) -> MemoryPlan:
        """The plan of tokens ``[start, end)`` (``counts`` and ``aux`` stay whole-sequence)."""
        return MemoryPlan(**{
            name: value if name in ("counts", "aux") else value[:, start:end]
            for name, value in attrs.asdict(self, recurse=False).items()
        })


class HashedMemory(nn.Module):
    """``memory.hashed``, the block's default memory (contract ``BlockMemory`` and
    ``ReadableBlockMemory``), configured by the block's ``mem_*`` fields."""

    def __init__(self, config: MosaicBlockConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.query = nn.Linear(c.d_model, c.mem_key_dim, bias=False)
        self.write_key = nn.Linear(c.d_model, c.mem_key_dim, bias=False)
        if c.mem_route_by_key:
            # one locality-sensitive projection routes queries and write keys alike
            self.read_router = self.write_router = nn.Linear(c.mem_key_dim, c.mem_hashes * c.mem_bits, bias=False)
        else:
            self.read_router = nn.Linear(c.d_model, c.mem_hashes * c.mem_bits, bias=False)
            self.write_router = nn.Linear(c.d_model, c.mem_hashes * c.mem_bits, bias=False)
        self.write_value = nn.Linear(c.d_model, c.mem_dim, bias=False)
        self.slot_router = nn.Linear(c.mem_key_dim, c.mem_assoc, bias=False) if c.mem_slot_policy == "router" else None
        self.write_gate = nn.Linear(c.d_model, 1)
        self.write_utility = nn.Linear(c.d_model, 1)
        self.out = nn.Linear(c.mem_dim, c.d_model, bias=False)

    @property
    def cells(self) -> int:
        return self.config.mem_buckets * self.config.mem_assoc

    def empty_table(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        c = self.config
        return torch.zeros(batch, c.mem_hashes, self.cells + 1, c.mem_cell_dim, device=device, dtype=dtype)

    def table_view(self, table: torch.Tensor) -> torch.Tensor:
        """A state's table as ``(B, H, buckets, assoc, key_dim + mem_dim + 1)`` (scratch row dropped);
        the last channel is each slot's occupancy."""
        c = self.config
        return table[:, :, : self.cells].view(table.shape[0], c.mem_hashes, c.mem_buckets, c.mem_assoc, -1)

    def empty_counts(self, batch: int, device: torch.device) -> torch.Tensor:
        c = self.config
        return torch.zeros(batch, c.mem_hashes, c.mem_buckets, dtype=torch.int64, device=device)

    def init_state(self, batch_size: int, device: torch.device | None, dtype: torch.dtype) -> MemoryState:
        c = self.config
        return MemoryState(
            table=self.empty_table(batch_size, device, dtype),  # type: ignore[arg-type]
            summary=torch.zeros(batch_size, 1, c.mem_cell_dim, device=device, dtype=dtype),
            counts=self.empty_counts(batch_size, device),  # type: ignore[arg-type]
            utility=torch.zeros(batch_size, c.mem_hashes, self.cells, device=device, dtype=dtype),
        )

    def forward(self, u: torch.Tensor, controls: Controls, teacher: TeacherForcing, state: MemoryState,
                chunk: int, *, scan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], MemoryState]:
        """The fast path: ``u (B, T, D)`` -> (read projected to ``(B, T, D)``, aux, state after the last
        token). ``scan``: read (and advance) the all-bucket summary through the SCAN channel."""
        if state.summary is None or state.counts is None:
            raise ModelError("memory.hashed: its state needs a summary and ring counts (see init_state)")
        plan = self.plan(u, controls, teacher, state.counts, chunk)
        read, table = self.read_with_clears(plan, state.table, chunk)  # (B, T, mem_dim)
        summary = state.summary
        if scan:
            summary_read, summary = self.summary_read(plan, state.summary, chunk)
            read = read + controls.scan[..., None] * summary_read
        utility = state.utility
        if utility is not None:  # what the write_utility head said of each write, kept per cell
            utility = memory_readback.written_utility(plan.write_cell, plan.log_keep,
                                                      plan.aux[keys.WRITE_UTILITY_LOGITS.name], utility)
        return (self.out(controls.read[..., None] * read), plan.aux,
                MemoryState(table, summary, plan.counts, utility))

    # --- read-back (mosaic.layers.memory_readback), apart from the fast path ---------------------

    def read_cells(self, state: MemoryState, layer: int) -> MemoryCells:
        if state.counts is None:
            raise ModelError("memory.hashed: its state needs ring counts to read cells back")
        return memory_readback.memory_cells(self, state.table, state.counts, state.utility, layer)

    def replay_values(self, values: torch.Tensor) -> torch.Tensor:
        """Stored values ``(N, mem_dim)`` as the block adds them to the residual stream ``(N, D)``."""
        return self.out(values)

    def forget_cells(self, state: MemoryState, cells: MemoryCells, select: torch.Tensor) -> int:
        return memory_readback.forget_cells(self, state.table, state.utility, select)

    def refresh_cells(self, state: MemoryState, cells: MemoryCells, select: torch.Tensor) -> int:
        if state.counts is None:
            raise ModelError("memory.hashed: its state needs ring counts to refresh cells")
        return memory_readback.refresh_cells(self, state.table, state.counts, state.utility, select)

    # --- the fast path, step by step --------------------------------------------------------------

    def plan(self, u: torch.Tensor, controls: Controls, teacher: TeacherForcing, counts: torch.Tensor,
             chunk: int) -> MemoryPlan:
        c = self.config
        bsz, length, _ = u.shape
        query, key = self.query(u), self.write_key(u)  # (B, T, dk)
        read_bits = self.read_router(query if c.mem_route_by_key else u).view(bsz, length, c.mem_hashes, c.mem_bits)
        write_bits = self.write_router(key if c.mem_route_by_key else u).view(bsz, length, c.mem_hashes, c.mem_bits)
        read_bucket, read_ste = route(read_bits, teacher.read_bucket)
        write_bucket, write_ste = route(write_bits, teacher.write_bucket)
        gate_logits = self.write_gate(u)[..., 0]  # (B, T)
        gate = torch.sigmoid(gate_logits)
        if c.mem_hard_writes:
            gate = (gate > c.mem_write_threshold).to(u.dtype) + (gate - gate.detach())  # exactly 0 or 1
        gate = forced_float(gate, teacher.write_gate)
        strength = (c.mem_write_step * gate * controls.write).clamp(0.0, 1.0)  # (B, T)
        clear = controls.clear.clamp(0.0, 1.0)
        if c.mem_slot_policy == "ring":
            slot, counts = ring_slots(write_bucket, strength.detach() > c.mem_ring_advance_at, counts, c.mem_assoc, chunk)
            slot_ste = torch.ones_like(write_ste)
        elif self.slot_router is not None:  # a slot router on the write key, learned through a straight-through factor
            slot_logits = F.log_softmax(self.slot_router(key), dim=-1)  # (B, T, A)
            slot = slot_logits.argmax(-1)
            slot_log_conf = slot_logits.gather(-1, slot[..., None])[..., 0]
            slot_ste = torch.exp(slot_log_conf - slot_log_conf.detach())[..., None].expand_as(write_ste)
            slot = slot[..., None].expand_as(write_bucket)
        else:  # the config validator admits only the two policies above
            raise ModelError(f"unknown mem_slot_policy {c.mem_slot_policy!r}")
        ones = torch.ones_like(key[..., :1])
        cell_content = torch.cat([key, self.write_value(u), ones], dim=-1) * strength[..., None]  # (B, T, dim)
        content = cell_content[:, :, None] * (write_ste * slot_ste)[..., None]  # (B, T, H, dim)
        aux = {
            keys.WRITE_GATE_LOGITS.name: gate_logits,
            keys.WRITE_UTILITY_LOGITS.name: self.write_utility(u)[..., 0],
            keys.READ_BIT_LOGITS.name: read_bits,
            keys.WRITE_BIT_LOGITS.name: write_bits,
        }
        return MemoryPlan(
            query=query,
            read_bucket=read_bucket,
            read_ste=read_ste,
            write_cell=write_bucket * c.mem_assoc + slot,
            log_keep=safe_log(1 - strength),
            clear=clear,
            content=content,
            summary_log_keep=safe_log(1 - strength),
            summary_content=cell_content,
            counts=counts,
            aux=aux,
        )

    # --- clearing -----------------------------------------------------------------------------

    def clear_matched(self, query: torch.Tensor, read_bucket: torch.Tensor, clear: torch.Tensor,
                      table: torch.Tensor) -> torch.Tensor:
        """One token's clear: in each hash's read bucket, the slot with the highest read score
        (key similarity + log occupancy, as in :meth:`attend`) is scaled by ``1 - clear``.

        query (B, dk); read_bucket (B, H) int64; clear (B,); table (B, H, cells + 1, dim) -> table."""
        c = self.config
        bsz, hashes, rows_total, dim = table.shape
        rows = read_bucket[..., None] * c.mem_assoc + torch.arange(c.mem_assoc, device=table.device)  # (B, H, A)
        views = table.gather(2, rows[..., None].expand(-1, -1, -1, dim))  # (B, H, A, dim)
        scores = torch.einsum("bhad,bd->bha", views[..., : c.mem_key_dim], query) / math.sqrt(c.mem_key_dim)
        scores = scores + torch.log(views[..., -1].clamp_min(OCCUPANCY_FLOOR))
        cell = rows.gather(-1, scores.argmax(-1, keepdim=True))  # (B, H, 1)
        keep = torch.ones(bsz, hashes, rows_total, device=table.device, dtype=table.dtype)
        keep = keep.scatter(2, cell, (1 - clear).to(table.dtype)[:, None, None].expand(-1, hashes, 1))
        return table * keep[..., None]

    def read_with_clears(self, plan: MemoryPlan, table: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`read`, with each clearing token's :meth:`clear_matched` applied before it reads.

        A clear decays one cell by ``1 - clear`` just before the token reads: the chunked read carries
        it like a write of nothing. The cells (which depend on the contents) come by fixed-point
        iteration: each pass (no gradient, keys and occupancy only) picks every clearing token's
        best-matching slot given the previous pass's picks. A pick depends only on the picks of
        earlier clears of the same bucket (a clear scales a slot of its own read bucket, and a read
        sees only its bucket), so after n passes every pick with fewer than n such clears before it
        is right: the longest chain of them (:func:`clear_chain`) bounds the passes, and a pass that
        changes nothing has found the sequential answer sooner. The picks before a pass's first
        change are final, so the next pass starts at that change's chunk, from the table the pass had
        there. Then one pass with gradients."""
        clearing = clearing_positions(plan.clear)
        if not clearing:
            return self.read(plan, table, chunk)
        at = torch.zeros_like(plan.clear, dtype=torch.bool)
        at[:, clearing] = True
        one_minus = 1 - plan.clear  # floored at CLEAR_FLOOR, with d/dx 1/max(x, floor): the exact clear gradient
        floored = one_minus + (one_minus.clamp_min(CLEAR_FLOOR) - one_minus).detach()
        clear_log = torch.where(at, torch.log(floored), torch.zeros_like(floored))  # (B, T)
        cells = plan.read_bucket * self.config.mem_assoc  # (B, T, H) slot 0 of each read bucket: a first guess
        active = at[..., None].expand_as(cells)  # zero clears too: their picks carry the gradient
        dk = self.config.mem_key_dim  # the picks need keys and occupancy only, not values
        narrow_plan = attrs.evolve(plan, content=torch.cat([plan.content[..., :dk], plan.content[..., -1:]], dim=-1))
        narrow_table = torch.cat([table[..., :dk], table[..., -1:]], dim=-1)
        layout = chunk_layout(plan, chunk, self.config, self.cells)  # with gradients: every pass and the read share it
        with torch.no_grad():
            passes = clear_chain(plan.read_bucket[:, clearing], clear_log[:, clearing] != 0, self.config.mem_buckets)
        size = layout.shape[2]
        first, start = 0, narrow_table  # a pass reads from chunk `first` on, from its starting table
        for _ in range(passes):
            begin, tables = first * size, list[torch.Tensor]()
            with torch.no_grad():
                _, _, picked = self.read_chunks(narrow_plan.between(begin, plan.clear.shape[1]), start, chunk,
                                                (clear_log[:, begin:], cells[:, begin:]), picks_only=True,
                                                layout=layout.from_chunk(first), chunk_tables=tables)
            picked = plan.read_bucket[:, begin:] * self.config.mem_assoc + picked
            changed = (picked != cells[:, begin:]) & active[:, begin:]
            if not bool(changed.any()):
                break
            cells = torch.cat([cells[:, :begin], torch.where(active[:, begin:], picked, cells[:, begin:])], dim=1)
            # picks before the first change are final (each depends only on earlier picks): the
            # next pass starts at that change's chunk, from the table this pass had there
            changed_chunk = (begin + int(changed.any(-1).any(0).nonzero()[0, 0])) // size
            start, first = tables[changed_chunk - first], changed_chunk
        return self.read_chunks(plan, table, chunk, (clear_log, cells), layout=layout)[:2]

    # --- reading ------------------------------------------------------------------------------

    def attend(self, query: torch.Tensor, views: torch.Tensor, read_ste: torch.Tensor) -> torch.Tensor:
        """Softmax over a bucket's slots by key similarity, masked by occupancy, summed over hashes,
        from explicit per-token views of the bucket (the plain form the reference twin uses; the fast
        path computes the same read in :meth:`read` without materialising the views).

        query (B, T, dk); views (B, T, H, A, dim) -> (B, T, mem_dim)."""
        dk = self.config.mem_key_dim
        keys, values, occupancy = views[..., :dk], views[..., dk:-1], views[..., -1]
        scores = torch.einsum("bthjd,btd->bthj", keys, query) / math.sqrt(dk)
        scores = scores + torch.log(occupancy.clamp_min(OCCUPANCY_FLOOR))
        weights = F.softmax(scores, dim=-1)
        read = torch.einsum("bthj,bthjd->bthd", weights, values) * read_ste[..., None]
        return read.sum(dim=2)

    def summary_read(self, plan: MemoryPlan, summary: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The all-bucket summary (a gated EMA of every write) as of before each token.

        summary (B, 1, dim) -> (read (B, T, mem_dim), summary after the last token)."""
        inclusive = gated_scan(plan.summary_log_keep[..., None], plan.summary_content[:, :, None], summary, chunk)
        before = exclusive(inclusive, summary)[:, :, 0]
        dk = self.config.mem_key_dim
        return before[..., dk:-1], inclusive[:, -1]

    def read(self, plan: MemoryPlan, table: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's read of its bucket as it was before the token's own write, and the table after
        the last token (no clears: see :meth:`read_chunks`)."""
        read, table, _ = self.read_chunks(plan, table, chunk)
        return read, table

    def read_chunks(self, plan: MemoryPlan, table: torch.Tensor, chunk: int,
                    clears: tuple[torch.Tensor, torch.Tensor] | None = None, *, picks_only: bool = False,
                    layout: ChunkLayout | None = None, chunk_tables: list[torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each token's read of its bucket as it was before the token's own write, and the table
        after the last token. table (B, H, cells + 1, dim) -> (read (B, T, mem_dim), table).

        Per chunk, a bucket's slot j as seen by token t is ``decay[t, j] * start[t, j]`` (the
        chunk-start table row) plus ``sum_s coef[t, s] [slot_s = j] content_s`` over earlier writers
        s of the same bucket. Scores, occupancy and the weighted value read are computed from those
        two parts separately, so the intra-chunk part costs (C x C) products, never (C, A, dim). The
        chunk-start part scores each chunk's whole starting table with one product when the table has
        no more rows than the chunk's (C x A) bucket views would, and gathers those views otherwise.

        ``clears``: ``(log decay (B, T), cell (B, T, H))`` of a clear before each token reads (0: none);
        the third result is the slot each token's clear would pick given those (``clear_matched``'s
        rule), ``(B, T, H)``; with ``picks_only`` only that (content and table may be keys + occupancy).
        ``layout``: :func:`~mosaic.layers.memory_chunks.chunk_layout` of ``plan`` (made here when None);
        ``chunk_tables``: a list that gets the table as each chunk starts."""
        c = self.config
        bsz, length, hashes = plan.read_bucket.shape
        assoc, dim, dk, trash = c.mem_assoc, plan.content.shape[-1], c.mem_key_dim, self.cells
        lay = chunk_layout(plan, chunk, self.config, self.cells) if layout is None else layout
        shape, (_, n_chunks, size) = lay.shape, lay.shape
        read_bucket, cell, query, later, zero = lay.read_bucket, lay.cell, lay.query, lay.later, lay.zero
        slot_one_hot, same_cell, hits, slots = lay.slot_one_hot, lay.same_cell, lay.hits, lay.slots
        content = chunked(plan.content, shape)  # (B, H, nC, C, dim)
        between, start_log = lay.between, lay.start_log
        own_clear = None
        if clears is not None:  # a clear at u is a decay of its cell: of writes s < u and of the start
            clear_log, clear_cell = chunked(clears[0], shape)[:, None], chunked(clears[1], shape)  # (B, 1, nC, C), (B, H, nC, C)
            between = between + torch.where((clear_cell[..., :, None] == cell[..., None, :]) & later,
                                            clear_log[..., :, None], zero)
            clear_hits = (read_bucket[..., :, None] == clear_cell[..., None, :] // assoc) & later
            clear_one_hot = F.one_hot(clear_cell % assoc, assoc).to(content.dtype)  # (B, H, nC, C, A)
            start_log = start_log + torch.where(clear_hits, clear_log[..., None, :], zero) @ clear_one_hot
            own_clear = torch.exp(clear_log[..., None] * clear_one_hot)  # t's own clear, before t reads
        seen_by = F.pad(between.cumsum(dim=-2)[..., :-1, :], (0, 0, 1, 0))  # [t, s] sum over s < u < t
        coef = torch.where(hits, torch.exp(seen_by), zero)  # (B, H, nC, C, C)
        start_decay = torch.exp(start_log)
        values, occupancy = content[..., dk:-1], content[..., -1:]
        intra_scores = (coef * lay.query_keys) @ slot_one_hot  # (B, H, nC, C, A)
        intra_occupancy = (coef * occupancy.transpose(-1, -2)) @ slot_one_hot
        # chunk-end value of each written cell, carried by the last writer of that cell in the chunk
        total_keep = lay.total_keep
        tail = torch.exp(between.sum(dim=-2))  # decay of s's write until the chunk end
        written = same_cell.to(content.dtype) @ (tail[..., None] * content)  # (B, H, nC, C, dim)
        whole_tables = self.cells <= size * assoc
        flat_cell, flat_target, flat_slots = lay.flat_cell, lay.flat_target, lay.flat_slots
        table = table.contiguous()
        table_shape = table.shape
        clearing: set[int] = set()
        if clears is not None:  # each chunk's clears as one decay of the table (B, H, cells + 1, 1)
            clearing = set(clear_log.ne(0).any(-1).flatten(0, 1).any(0).nonzero().view(-1).tolist())
            log_decay = torch.zeros(n_chunks, bsz, hashes, trash + 1, device=cell.device, dtype=table.dtype)
            clear_decay = torch.exp(log_decay.scatter_add(3, clear_cell.permute(2, 0, 1, 3), clear_log.expand(
                -1, hashes, -1, -1).permute(2, 0, 1, 3)))[..., None].unbind(0)  # nC x (B, H, cells + 1, 1)
        starts = []
        for n in range(n_chunks):  # a loop over chunks, not tokens: carries the table
            if chunk_tables is not None:
                chunk_tables.append(table)  # as the chunk starts
            if whole_tables:
                starts.append(table[:, :, :trash])  # the real cells, not the scratch row
            else:
                starts.append(table.view(-1, dim).index_select(0, flat_slots[n]).view(bsz, hashes, size, assoc, dim))
            if n in clearing:
                table = table * clear_decay[n]
            old = table.view(-1, dim).index_select(0, flat_cell[n]).view(bsz, hashes, size, dim)
            new = torch.addcmul(written[:, :, n], total_keep[:, :, n, :, None], old)
            table = table.view(-1, dim).index_copy(0, flat_target[n], new.reshape(-1, dim)).view(table_shape)
        table = F.pad(table[:, :, :-1], (0, 0, 0, 1))  # the scratch row holds junk: keep the state clean
        start_keys, start_values, start_occupancy = torch.stack(starts, dim=2).split([dk, dim - dk - 1, 1], dim=-1)
        if whole_tables:
            # start_* hold each chunk's whole starting table (B, H, nC, cells, ...): score every
            # cell with one product and pick each token's bucket, cheaper than gathering its rows
            start_scores = (query @ start_keys.transpose(-1, -2)).gather(-1, slots)  # (B, H, nC, C, A)
            start_occupancy = start_occupancy.transpose(-1, -2).expand(-1, -1, -1, size, -1).gather(-1, slots)
        else:  # start_* hold each token's bucket (B, H, nC, C, A, ...)
            start_scores = (start_keys * query[..., None, :]).sum(-1)
            start_occupancy = start_occupancy[..., 0]
        scores = start_decay * start_scores + intra_scores  # (B, H, nC, C, A)
        occupancy = start_decay * start_occupancy + intra_occupancy
        picked = torch.zeros_like(read_bucket)
        if own_clear is not None:
            picked = (scores / math.sqrt(dk) + torch.log(occupancy.clamp_min(OCCUPANCY_FLOOR))).argmax(-1)
            if picks_only:
                picked = picked.permute(0, 2, 3, 1).reshape(bsz, n_chunks * size, hashes)[:, :length]
                return content.new_zeros(0), table, picked
            scores, occupancy, start_decay = scores * own_clear, occupancy * own_clear, start_decay * own_clear
        scores = scores / math.sqrt(dk) + torch.log(occupancy.clamp_min(OCCUPANCY_FLOOR))
        weights = F.softmax(scores, dim=-1)  # (B, H, nC, C, A)
        if whole_tables:
            spread = torch.zeros(*slots.shape[:-1], start_values.shape[-2], device=cell.device, dtype=weights.dtype)
            start_read = spread.scatter(-1, slots, weights * start_decay) @ start_values  # (B, H, nC, C, dv)
        else:
            start_read = ((weights * start_decay)[..., None] * start_values).sum(-2)  # (B, H, nC, C, dv)
        value_weights = weights if own_clear is None else weights * own_clear
        slot = cell[..., None, :].expand(-1, -1, -1, size, -1) % assoc
        by_writer = value_weights.gather(-1, slot)  # [t, s] weight of slot_s
        read = (start_read + (coef * by_writer) @ values) * lay.read_ste[..., None]
        read = read.sum(dim=1).reshape(bsz, n_chunks * size, c.mem_dim)  # sum over hashes
        picked = picked.permute(0, 2, 3, 1).reshape(bsz, n_chunks * size, hashes)[:, :length]
        return read[:, :length], table, picked


def build_hashed_memory(config: MosaicBlockConfig) -> HashedMemory:
    """``memory.hashed`` factory: configured by the block's ``mem_*`` fields."""
    return HashedMemory(config)

