"""MosaicLM's single-token step as a direct recurrence, with no chunk machinery.

Each block runs its recurrences for one token: the conv tail, the state bank, one read of the routed
memory bucket and one write of the routed cell, the registers, the opcode head and (with aux) the
commitment head. What the chunked forward computes with scans over a sequence is here one update of
the state, so a token costs the same at any context length.

To keep the number of operator calls small (at d_model 128 their dispatch, not their arithmetic, is
the cost), the weights are rearranged once per weight version (:class:`BlockStep`):

- every projection of the token's context (memory query, write key and value, write gate and utility,
  routers when they read the input, register gate, slot, value and query, opcode head) is one matrix,
  with a constant-1 row so that ``[key, value, 1]``, the content of a memory cell, is one slice of it;
- the state bank's input projection and the fusion gates, both read from the normed input, are one;
- the state bank, memory and register read-outs are one matrix over their gated concatenation, added
  to the local mixer's output in one ``addmm``;
- with hard opcode control, every product of control channels the block needs is one row of a table
  per opcode, looked up once;
- with hard opcode control, the chosen opcodes are read on the host once per step, and the parts
  that no sample's opcode opens are skipped: the memory read (path gain ``fusion * read`` 0), the
  memory and register writes (write channel 0), the SCAN read; a memory write is skipped as well
  where every hard write gate is closed. What a skipped part would add is exactly 0, so the step's
  values do not change.

The state is updated in place: the memory table, the ring counts, the registers and the bank, so a
step allocates no state. It agrees with the chunked forward (``MosaicLM.forward`` on one token) to
float rounding; ``tests/mosaic-layers/test_layers_recurrent_step.py`` checks that over sizes, batch
sizes and opcode settings. Only ``memory.hashed`` blocks have a recurrent step; the model runs the
chunked path for others (see ``MosaicLM.step``)."""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F

from mosaic.core.contract import keys
from mosaic.layers.block import MosaicBlock
from mosaic.layers.ffn import ffn_aux
from mosaic.layers.isa import CHANNELS
from mosaic.layers.memory import OCCUPANCY_FLOOR, HashedMemory
from mosaic.layers.memory_clears import CLEAR_THRESHOLD
from mosaic.layers.state import BlockState
from mosaic.layers.vm import FREE_CHANNELS

_CH = {name: index for index, name in enumerate(CHANNELS)}
#: Columns of the per-opcode table of derived control values (hard control).
DERIVED = ("gate_state", "gate_memory", "gate_registers", "out", "write", "clear", "scan", "commit",
           "respond", "idle")


def has_recurrent_step(block: MosaicBlock) -> bool:
    """Whether ``block`` has a direct single-token recurrence (its memory is ``memory.hashed``)."""
    return isinstance(block.memory, HashedMemory)


def derived_controls(channels: torch.Tensor) -> torch.Tensor:
    """``channels (..., len(CHANNELS))`` -> the :data:`DERIVED` values ``(..., len(DERIVED))``."""
    ch = {name: channels[..., index] for name, index in _CH.items()}
    fusion = ch["fusion"]
    return torch.stack([
        fusion, fusion * ch["read"], fusion, ch["update"] * ch["output_scale"], ch["write"],
        ch["clear"].clamp(0.0, 1.0), ch["scan"], ch["commit"], ch["respond"], (1.0 - ch["update"]).clamp(0.0, 1.0),
    ], dim=-1)


def rms_scale(x: torch.Tensor, eps: torch.Tensor, inv_d: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(mean(x^2) + eps)`` over the last axis ``(B, 1)``, with ``eps`` a 0-d tensor and
    ``inv_d`` the column ``(D, 1)`` of ``1 / D``: one ``addmm``, cheaper than ``F.rms_norm`` or a
    ``mean`` for one token on CPU, where the operator calls, not the arithmetic, are the cost."""
    return torch.addmm(eps, x * x, inv_d).rsqrt_()


class BlockStep:
    """One block's weights rearranged for :func:`block_step` (see the module docstring)."""

    def __init__(self, block: MosaicBlock) -> None:
        c = block.config
        memory = cast(HashedMemory, block.memory)
        self.block, self.config, self.memory = block, c, memory
        d, dk = c.d_model, c.mem_key_dim
        like = block.fusion.weight.detach()
        weight = block.mixer.conv.weight.detach()[:, 0, :]  # (D, k)
        self.conv_weight = weight.T.contiguous()  # (k, D) oldest input first
        conv_bias = cast(torch.Tensor, block.mixer.conv.bias).detach()
        self.norm_weight = like.new_ones(d) if block.norm.weight is None else block.norm.weight.detach()
        self.norm_eps = block.norm.eps if block.norm.eps is not None else torch.finfo(like.dtype).eps
        self.ffn = block.mixer.ffn
        self.conv_bias = conv_bias
        if self.ffn is None:  # the conv bias goes through the up projection as its bias
            up = block.mixer.up.weight.detach()
            self.up_t, self.up_bias = up.T.contiguous(), up @ conv_bias
            self.down_t = block.mixer.down.weight.detach().T.contiguous()
        self.zero = like.new_zeros(())
        rows: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []
        self.names: list[str] = []

        def add(name: str, w: torch.Tensor, b: torch.Tensor | None = None) -> None:
            rows.append(w.detach())
            biases.append(like.new_zeros(w.shape[0]) if b is None else b.detach())
            self.names.append(name)

        # query, key, value and the constant 1 are adjacent: [key, value, 1] is a written cell. The
        # rows are grouped so that one split gives every part the step uses (see ``groups``): the
        # sign bits and a hard write gate (one heaviside), the sigmoid heads (one sigmoid), ...
        add("query", memory.query.weight)
        add("key", memory.write_key.weight)
        add("value", memory.write_value.weight)
        add("one", like.new_zeros(1, d), like.new_ones(1))
        read_router, write_router = memory.read_router.weight.detach(), memory.write_router.weight.detach()
        if c.mem_route_by_key:  # the router reads the query / write key: compose the two projections
            read_router = read_router @ memory.query.weight.detach()
            write_router = write_router @ memory.write_key.weight.detach()
        add("read_bits", read_router)
        add("write_bits", write_router)
        # the write gate's logit minus logit(threshold): positive exactly where the gate opens
        self.gate_offset = math.log(c.mem_write_threshold / (1 - c.mem_write_threshold))
        gate_bias = memory.write_gate.bias.detach() - (self.gate_offset if c.mem_hard_writes else 0.0)
        add("write_gate", memory.write_gate.weight, gate_bias)  # last of the heaviside group (hard) or first sigmoid
        add("write_utility", memory.write_utility.weight, memory.write_utility.bias)
        self.slot_router_t = None if memory.slot_router is None else memory.slot_router.weight.detach().T.contiguous()
        registers = block.registers
        if registers is not None:
            add("reg_gate", registers.gate.weight, registers.gate.bias)
            add("reg_sel", registers.select.weight, registers.select.bias)
            add("reg_value", registers.value.weight)
            add("reg_query", registers.query.weight / math.sqrt(c.reg_dim))  # the read's scale, folded in
        head = block.opcode_head
        if head is not None:
            add("opcode", head.proj.weight, head.proj.bias)
        self.sizes = [row.shape[0] for row in rows]
        self.context_t, self.context_bias = torch.cat(rows).T.contiguous(), torch.cat(biases)
        self.cell = slice(self.sizes[0], sum(self.sizes[:4]))
        offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes) + 1)]
        #: each projection's columns of the fused context projection
        self.span = {name: slice(offsets[i], offsets[i + 1]) for i, name in enumerate(self.names)}
        # the groups of columns one split gives the step: query, cell, heaviside inputs, sigmoid
        # inputs, then (when present) register select, value and query and the opcode logits
        heaviside_end = self.span["write_gate"].stop if c.mem_hard_writes else self.span["write_bits"].stop
        sigmoid_end = self.span["reg_gate" if registers is not None else "write_utility"].stop
        ends = [self.span["query"].stop, self.span["one"].stop, heaviside_end, sigmoid_end]
        ends += [self.span[name].stop for name in ("reg_sel", "reg_value", "reg_query", "opcode") if name in self.span]
        self.groups = [b - a for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        self.heaviside_width = heaviside_end - self.span["read_bits"].start
        self.sigmoid_sizes = [1] * (sigmoid_end - heaviside_end)
        self.said = 0 if c.mem_hard_writes else 1  # the write utility's place among the sigmoids
        # the state bank's input projection once per integrator (K copies), so that the bank updates as
        # the flat (B, K * w) it is stored as
        bank_in = block.bank.inp.weight.detach().repeat(c.state_k, 1)
        self.input_t = torch.cat([bank_in, block.fusion.weight.detach()]).T.contiguous()
        self.input_bias = torch.cat([like.new_zeros(bank_in.shape[0]), cast(torch.Tensor, block.fusion.bias).detach()])
        paths = [block.bank.out.weight.detach(), memory.out.weight.detach()]
        if registers is not None:
            paths.append(registers.out.weight.detach())
        self.paths_t = torch.cat(paths, dim=1).T.contiguous()  # (K*w + mem_dim [+ reg_dim], D)
        widths = [c.state_k * c.state_dim, c.mem_dim] + ([c.reg_dim] if registers is not None else [])
        self.path_of = torch.cat([torch.full((w,), i, device=like.device) for i, w in enumerate(widths)])
        decays = block.bank.decays().detach()  # (K, w)
        keep_in = -torch.expm1(F.logsigmoid(block.bank.decay_logit.detach()))
        self.decay, self.keep_in = decays.reshape(-1), keep_in.expand_as(decays).reshape(-1)  # (K * w,)
        # routing: the heaviside group [read bits (H, bits), write bits (H, bits) (, hard write gate)]
        # times this matrix, plus the offsets of index(), are each (sample, hash)'s ring-count row, the
        # rows of its read bucket (assoc of them) and its write bucket's start row in the flat tables,
        # exact in floats (one addmm and one conversion per token)
        hashes, nbits, assoc = c.mem_hashes, c.mem_bits, c.mem_assoc
        powers = (2 ** torch.arange(nbits, device=like.device)).to(like.dtype)
        self.route = like.new_zeros(self.heaviside_width, hashes * (2 + assoc))
        self.route_sizes = [hashes, hashes * assoc, hashes]
        for h in range(hashes):
            read, write = slice(h * nbits, (h + 1) * nbits), slice((hashes + h) * nbits, (hashes + h + 1) * nbits)
            self.route[write, h] = powers
            for a in range(assoc):
                self.route[read, hashes + h * assoc + a] = powers * assoc
            self.route[write, hashes * (1 + assoc) + h] = powers * assoc
        self.slots = torch.arange(max(c.reg_slots, 1), device=like.device)
        self.assoc_index = torch.arange(c.mem_assoc, device=like.device)
        self.score_scale = 1 / math.sqrt(dk)
        self.control = head is not None and head.control
        self.soft = head is not None and head.soft
        self.temp = 1.0
        self.clearing: set[int] = set()
        if head is not None:
            self.channels = head.channels.to(like.dtype)
            self.derived = derived_controls(self.channels)  # (V_op, len(DERIVED))
            #: the opcodes whose clear channel crosses CLEAR_THRESHOLD (hard control tests the choice on the host)
            self.clearing = {int(i) for i in torch.nonzero(self.derived[:, 5] > CLEAR_THRESHOLD).view(-1)}
            self.temp = head.temp
        # the opcodes whose channels open the memory read (its path gain fusion * read), a write (of
        # memory and registers) and the SCAN read: a hard-controlled step skips the parts that no
        # sample's opcode opens (what they would add is exactly 0)
        self.reading, self.writing, self.scanning = (
            frozenset() if head is None else frozenset(torch.nonzero(self.derived[:, column] != 0).view(-1).tolist())
            for column in (1, 4, 6))
        # the write channel (and so every write strength) stays in [0, 1] without clamping
        write_channel = self.channels[:, _CH["write"]] if head is not None else like.new_ones(1)
        self.unit_write = c.mem_write_step == 1.0 and bool(((write_channel >= 0) & (write_channel <= 1)).all())
        free = torch.tensor([getattr(FREE_CHANNELS, name) for name in CHANNELS], dtype=like.dtype, device=like.device)
        self.free = derived_controls(free)
        self.gated_write = c.mem_write_step != 1.0 or self.control
        self.free_write = self.free[4:5].view(1, 1)  # the write channel of a block without control
        self.gates_state = self.control and c.fusion_gates_state
        self.ring = c.mem_slot_policy == "ring"
        # constants as tensors: an operator with a Python number costs twice one with a 0-d tensor
        self.floor = like.new_tensor(OCCUPANCY_FLOOR)
        self.assoc = torch.tensor(c.mem_assoc, device=like.device)
        self.advance_at = like.new_full((), c.mem_ring_advance_at)
        self.eps, self.inv_d = like.new_tensor(self.norm_eps), like.new_full((d, 1), 1 / d)
        self.cell_split = [dk, c.mem_dim, 1]
        self.input_split = [c.state_k * c.state_dim, self.input_t.shape[1] - c.state_k * c.state_dim]
        #: the derived controls a controlled step uses: gates (3), out, write, clear, scan, the rest
        self.derived_split = [3, 1, 1, 1, 1, len(DERIVED) - 7]
        self.regulariser = block.bank.regulariser().detach()
        self.commitment = None
        if c.commitment_head_enabled:
            self.commitment = (block.commitment.weight.detach(), block.commitment.bias.detach(),
                               block.commit_drive.detach())
        self.indices: dict[tuple[int, torch.device], tuple[torch.Tensor, ...]] = {}

    def index(self, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The routing offsets ``(B, H * (2 + A))`` (see ``route``), each (sample, hash)'s index
        ``(B, H)`` and a zero read ``(B, mem_dim)`` (the read of a step that skips it; never written)."""
        cached = self.indices.get((batch, device))
        if cached is None:
            c = self.config
            rows = c.mem_buckets * c.mem_assoc + 1
            pair = torch.arange(batch * c.mem_hashes, device=device).view(batch, c.mem_hashes)
            table_base = pair * rows  # (B, H)
            read = (table_base[:, :, None] + torch.arange(c.mem_assoc, device=device)).view(batch, -1)
            offsets = torch.cat([pair * c.mem_buckets, read, table_base], dim=1).to(self.route.dtype)
            cached = (offsets, pair, torch.zeros(batch, c.mem_dim, device=device, dtype=self.route.dtype))
            self.indices[(batch, device)] = cached
        return cached


def bucket_scores(step: BlockStep, keys_: torch.Tensor, occupancy: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Read scores ``(B, H * A, 1)`` of a bucket's slots, from their keys ``(B, H * A, key_dim)`` and
    occupancy ``(B, H * A, 1)``: key similarity plus log occupancy (as :meth:`HashedMemory.attend`)."""
    return torch.baddbmm(torch.clamp_min(occupancy, step.floor).log_(), keys_, query, alpha=step.score_scale)


def block_step(step: BlockStep, x: torch.Tensor, state: BlockState, opcodes: torch.Tensor | None,
               want_aux: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One token through one block: ``x (B, D)`` -> ``(B, D)``; ``state`` is updated in place.

    ``opcodes (B,)`` forces the opcode where it is >= 0 (as the forward's teacher opcode does)."""
    c = step.config
    bsz = x.shape[0]
    hashes, assoc = c.mem_hashes, c.mem_assoc
    u = torch.mul(x, step.norm_weight).mul_(rms_scale(x, step.eps, step.inv_d))
    # local mixer: the conv over the last k inputs, then the gated MLP (or the configured ffn)
    window = torch.cat([state.conv_tail, u.unsqueeze(1)], dim=1)  # (B, k, D)
    mixed = (window * step.conv_weight).sum(1)
    state.conv_tail = window.narrow(1, 1, window.shape[1] - 1)
    if step.ffn is None:
        gate, value = torch.addmm(step.up_bias, mixed, step.up_t).chunk(2, dim=-1)
        local = torch.mm(F.silu(gate).mul_(value), step.down_t)
    else:
        local = step.ffn((mixed + step.conv_bias)[:, None])[:, 0]
    projected = torch.addmm(step.context_bias, u + local, step.context_t)  # (B, rows)
    query, cell, signs, sigmoids, *rest = torch.split_with_sizes(projected, step.groups, 1)
    bank_input, gate_logits = torch.split_with_sizes(torch.addmm(step.input_bias, u, step.input_t), step.input_split, 1)
    # controls: a row of the derived table per sample (hard), mixed channels (soft) or constants (free)
    write = step.free_write
    # which parts can add something: a hard-controlled step asks the chosen opcodes (one host sync)
    reading = writing = scanning = True
    clearing = False
    if step.control:
        logits = rest[-1]
        if step.soft:
            probs = F.softmax(logits / step.temp, dim=-1)
            if opcodes is not None:
                probs = torch.where((opcodes >= 0)[:, None], F.one_hot(opcodes.clamp_min(0), logits.shape[-1])
                                    .to(probs.dtype), probs)
            derived = derived_controls(probs @ step.channels)
        else:
            choice = logits.argmax(-1)
            if opcodes is not None:
                choice = torch.where(opcodes >= 0, opcodes, choice)
            derived = step.derived.index_select(0, choice)  # (B, len(DERIVED))
            chosen = set(choice.tolist())
            # a sample's clear crosses the threshold exactly where its opcode is a clearing one
            clearing = not step.clearing.isdisjoint(chosen)
            reading, writing = not step.reading.isdisjoint(chosen), not step.writing.isdisjoint(chosen)
            scanning = not step.scanning.isdisjoint(chosen)
        path_gains, out_gain, write, clear, scan, _ = torch.split_with_sizes(derived, step.derived_split, 1)
        if step.soft:
            clearing = float(clear.max()) > CLEAR_THRESHOLD
    else:
        derived = step.free.expand(bsz, -1)
    # memory routing (sign bits, LSB first): each (sample, hash)'s ring-count row, read rows and write
    # bucket row; the write strength
    offsets, pair, no_read = step.index(bsz, x.device)
    signs = torch.heaviside(signs, step.zero)
    count_rows, read_rows, write_rows = torch.split_with_sizes(
        torch.addmm(offsets, signs, step.route).long(), step.route_sizes, 1)
    # [(soft write gate,) write utility (, register gate)], each (B, 1)
    heads = torch.split_with_sizes(torch.sigmoid(sigmoids), step.sigmoid_sizes, 1)
    # (B, 1): a hard gate is exactly 0 or 1
    strength = signs[:, -1:] if c.mem_hard_writes else heads[0]
    if step.gated_write:
        strength = strength * write if step.unit_write else (c.mem_write_step * strength * write).clamp(0.0, 1.0)
    # a write of strength 0 everywhere leaves every cell, count, utility and the summary as they are
    memory_writing = writing and (not c.mem_hard_writes or bool(strength.any()))
    table = state.memory.view(-1, state.memory.shape[-1])  # (B * H * rows, dim): a view, written in place
    read = no_read  # a read whose path gain (fusion * read) is 0 everywhere adds exactly 0
    if reading or clearing:  # read the routed bucket as it was before this token's write
        query = query.unsqueeze(2)
        views = torch.embedding(table, read_rows)  # (B, H * A, dim)
        slot_keys, slot_values, occupancy = torch.split_with_sizes(views, step.cell_split, 2)
        scores = bucket_scores(step, slot_keys, occupancy, query)
        if clearing:  # CLEAR_MEM: scale the best-matching slot by 1 - clear
            best = scores.view(bsz, hashes, assoc).argmax(-1, keepdim=True) == step.assoc_index  # (B, H, A)
            views = views * (1 - clear[:, :, None] * best).view(bsz, hashes * assoc, 1)
            table.index_put_((read_rows,), views)
            slot_keys, slot_values, occupancy = torch.split_with_sizes(views, step.cell_split, 2)
            scores = bucket_scores(step, slot_keys, occupancy, query)
        if reading:
            weights = scores.view(bsz, hashes, assoc).softmax(-1).view(bsz, 1, hashes * assoc)
            read = torch.bmm(weights, slot_values).view(bsz, c.mem_dim)
    if step.control and state.summary is not None:  # SCAN: the all-bucket summary as of before the token
        summary = state.summary[:, 0]
        if reading and scanning:
            read = torch.addcmul(read, scan, summary[:, c.mem_key_dim : -1])
        if memory_writing:
            summary.lerp_(cell, strength)
    if memory_writing:  # write the routed cell: cell <- cell + w ([key, value, 1] - cell)
        if step.ring:
            counts = cast(torch.Tensor, state.mem_counts)
            slot = torch.take(counts, count_rows)  # (B, H) writes to the bucket so far, mod assoc
            counts.put_(count_rows, torch.add(slot, torch.gt(strength, step.advance_at)).remainder_(step.assoc))
        else:  # (B, 1) every hash
            slot = torch.mm(cell[:, : c.mem_key_dim], cast(torch.Tensor, step.slot_router_t)).argmax(-1, keepdim=True)
        write_rows = write_rows + slot  # (B, H)
        cells = torch.embedding(table, write_rows)  # (B, H, dim)
        table.index_put_((write_rows,), cells.lerp_(cell.unsqueeze(1), strength.unsqueeze(2)))
        if state.mem_utility is not None:  # what the write_utility head said of the write, the same gated EMA
            utility = state.mem_utility  # (B, H, cells): the table without its scratch row
            utility_rows = write_rows - pair  # each (sample, hash) table has one scratch row more
            said = heads[step.said]
            utility.put_(utility_rows, torch.take(utility, utility_rows).lerp_(said, strength))
    # state bank
    if step.gates_state:  # GATE_UP / GATE_DOWN: the gain lasts in the state
        bank_input = bank_input * path_gains[:, 0:1]
    state.bank.mul_(step.decay).addcmul_(step.keep_in, bank_input)  # (B, K * w), bank_input repeated K times
    gates = torch.sigmoid(gate_logits)  # (B, 3) state, memory, registers
    if step.control:
        gates = gates.mul_(path_gains)
    paths = [state.bank, read]
    # registers: read as they were before the token, then the gated write of the selected slot
    if state.registers is not None:
        reg_select, reg_value, reg_query = rest[:3]
        registers = state.registers  # (B, R, W)
        attention = torch.bmm(registers, reg_query.unsqueeze(2)).softmax(1)  # (B, R, 1)
        paths.append(torch.bmm(attention.transpose(1, 2), registers).view(bsz, c.reg_dim))
        if writing:  # a write channel of 0 everywhere leaves the registers as they are
            reg_strength = heads[-1]  # (B, 1)
            if step.control:
                reg_strength = reg_strength * write if step.unit_write else (reg_strength * write).clamp(0.0, 1.0)
            selected = reg_select.argmax(-1, keepdim=True) == step.slots
            coeff = torch.where(selected, reg_strength, step.zero)  # (B, R)
            registers.lerp_(reg_value.unsqueeze(1), coeff.unsqueeze(2))
    scaled = torch.cat(paths, dim=1).mul_(gates.index_select(1, step.path_of))
    delta = torch.addmm(local, scaled, step.paths_t)
    y = x + delta if not step.control else torch.addcmul(x, out_gain, delta)
    if not want_aux:
        return y, {}
    part = {name: projected[:, columns] for name, columns in step.span.items()}
    return y, block_aux(step, part, u, delta, derived)


def block_aux(step: BlockStep, part: dict[str, torch.Tensor], u: torch.Tensor, delta: torch.Tensor,
              derived: torch.Tensor) -> dict[str, torch.Tensor]:
    """The forward's aux outputs for one token, each with its token axis of 1."""
    c = step.config
    bsz = u.shape[0]
    gate_logits = part["write_gate"][:, 0] + (step.gate_offset if c.mem_hard_writes else 0.0)
    aux = {
        keys.WRITE_GATE_LOGITS.name: gate_logits,
        keys.WRITE_UTILITY_LOGITS.name: part["write_utility"][:, 0],
        keys.READ_BIT_LOGITS.name: part["read_bits"].view(bsz, c.mem_hashes, c.mem_bits),
        keys.WRITE_BIT_LOGITS.name: part["write_bits"].view(bsz, c.mem_hashes, c.mem_bits),
    }
    if "reg_gate" in part:
        aux[keys.REG_WRITE_GATE_LOGITS.name] = part["reg_gate"][:, 0]
        aux[keys.REG_SEL_LOGITS.name] = part["reg_sel"]
    commit_channel = derived[:, 7:8]
    if "opcode" in part:
        logits = part["opcode"]
        aux[keys.OPCODE_LOGITS.name] = logits
        opinion = derived if step.control else derived_controls(F.softmax(logits / step.temp, dim=-1) @ step.channels)
        aux[keys.RESPONSE_ONSET.name] = opinion[:, 8]
        aux[keys.COMMIT_SIGNAL.name] = opinion[:, 7]
        aux[keys.IDLE_SIGNAL.name] = opinion[:, 9]
    if step.commitment is not None:
        weight, bias, drive = step.commitment
        head_input = u + delta
        if step.control:  # a free-running block's commit channel is 0
            head_input = torch.addcmul(head_input, commit_channel, drive)
        aux[keys.COMMITMENT_LOGITS.name] = F.linear(head_input, weight, bias)
    aux = {name: value[:, None] for name, value in aux.items()}  # the forward's token axis
    aux[keys.STATE_DECAY_REG_LOSS.name] = step.regulariser
    if step.ffn is not None:
        aux.update(ffn_aux(step.ffn))
    return aux
