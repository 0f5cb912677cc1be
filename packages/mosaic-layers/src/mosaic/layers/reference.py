"""The step-by-step reference twin of :class:`~mosaic.layers.block.MosaicBlock`.

It shares the block's parameters and per-token decisions (projections, routing, gates) but runs
every recurrence as a plain loop over tokens with explicit tables: the memory is read at the routed
bucket *before* the token writes, then the token's write updates its cell in place. Used only by
tests and benchmarks to check the chunked fast path.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F

from mosaic.core.contract import keys
from mosaic.core.errors import ModelError
from mosaic.layers.block import MosaicBlock
from mosaic.layers.memory import HashedMemory, clearing_positions
from mosaic.layers.model import MosaicLM, stack_layer_aux
from mosaic.layers.state import BlockState, MosaicState
from mosaic.layers.vm import TeacherForcing


def reference_block_forward(
    block: MosaicBlock, x: torch.Tensor, teacher: TeacherForcing | None = None, state: BlockState | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor], BlockState]:
    if not isinstance(block.memory, HashedMemory):
        raise ModelError(f"the reference twin covers memory.hashed, not {type(block.memory).__name__}")
    c = block.config
    teacher = teacher if teacher is not None else TeacherForcing()
    state = state if state is not None else block.init_state(x.shape[0], x.device, x.dtype)
    if state.summary is None or state.mem_counts is None:
        raise ModelError("memory.hashed: the block state lacks its summary or ring counts")
    bsz, length, _ = x.shape
    tail, bank, summary, counts = state.conv_tail, state.bank, state.summary[:, 0], state.mem_counts
    table, registers = state.memory.clone(), state.registers
    decays = block.bank.decays().flatten()  # (K * width,)
    conv_weight = block.mixer.conv.weight[:, 0, :].T  # (k, D)
    batch_index = torch.arange(bsz)[:, None]
    hash_index = torch.arange(c.mem_hashes)[None, :]
    slots = torch.arange(c.mem_assoc)
    outputs, per_token = [], []
    for t in range(length):
        x_t, teach = x[:, t : t + 1], teacher.at(t, t + 1)
        u = block.norm(x_t)  # (B, 1, D)
        # local mixer over an explicit window of the last k inputs
        window = torch.cat([tail, u], dim=1)
        mixed = (window * conv_weight).sum(dim=1, keepdim=True) + cast(torch.Tensor, block.mixer.conv.bias)
        gate, value = block.mixer.up(mixed).chunk(2, dim=-1)
        local = block.mixer.down(F.silu(gate) * value)
        tail = window[:, 1:]
        context = u + local
        controls, aux = block.controls(context, teach)
        if teach.drop_local is not None:
            local = local * (1 - teach.drop_local.to(local.dtype))[..., None]
        # state bank: one leaky-integrator step, the token's drive scaled by its gain (fusion channel)
        drive = block.bank.inp(u[:, 0]).repeat(1, c.state_k) * controls.fusion[:, 0, None]
        bank = decays * bank + (1 - decays) * drive
        bank_out = block.bank.out(bank)[:, None]
        # memory: clear the best-matching slot, read the routed bucket, then write the routed cell
        plan = block.memory.plan(context, controls, teach, counts, 1)  # one token: slot = counts[bucket]
        counts = plan.counts
        if clearing_positions(plan.clear):  # the fast path's rule: only a token that clears somewhere
            table = block.memory.clear_matched(plan.query[:, 0], plan.read_bucket[:, 0], plan.clear[:, 0], table)
        rows = plan.read_bucket[:, 0, :, None] * c.mem_assoc + slots  # (B, H, A)
        views = table[batch_index[..., None], hash_index[..., None], rows]  # (B, H, A, dim)
        read = block.memory.attend(plan.query, views[:, None], plan.read_ste)
        summary_read = summary[:, None, c.mem_key_dim : -1]
        cell = plan.write_cell[:, 0]  # (B, H)
        keep = torch.exp(plan.log_keep[:, 0])[:, None, None]
        table[batch_index, hash_index, cell] = keep * table[batch_index, hash_index, cell] + plan.content[:, 0]
        if block.reads_summary:
            summary = torch.exp(plan.summary_log_keep[:, 0])[:, None] * summary + plan.summary_content[:, 0]
            read = read + controls.scan[..., None] * summary_read
        memory = block.memory.out(controls.read[..., None] * read)
        # registers: read, then write
        register_read = None
        if block.registers is not None and registers is not None:
            reg_plan = block.registers.plan(context, controls, teach)
            register_read = block.registers.read(reg_plan["query"], registers[:, None])
            registers = torch.exp(reg_plan["log_keep"][:, 0])[..., None] * registers + reg_plan["content"][:, 0]
            aux[keys.REG_WRITE_GATE_LOGITS.name] = reg_plan["gate_logits"]
            aux[keys.REG_SEL_LOGITS.name] = reg_plan["sel_logits"]
        y, head_aux = block.fuse(x_t, u, controls, local, bank_out, memory, register_read)
        aux.update(plan.aux)
        aux.update(head_aux)
        outputs.append(y)
        per_token.append(aux)
    aux = {name: torch.cat([step[name] for step in per_token], dim=1) for name in per_token[0]}
    aux[keys.STATE_DECAY_REG_LOSS.name] = block.bank.regulariser()
    return torch.cat(outputs, dim=1), aux, BlockState(tail, bank, table, summary[:, None], counts, registers)


def reference_model_forward(model: MosaicLM, batch: dict[str, torch.Tensor], state: MosaicState | None = None,
                            teacher: TeacherForcing | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                                           MosaicState]:
    """Full-vocabulary logits, per-layer aux and the final state, token by token."""
    ids = batch[keys.INPUT_IDS.name]
    teacher = teacher if teacher is not None else model.teacher(batch)
    state = state if state is not None else model.init_state(ids.shape[0])
    x = model.embed(ids)
    per_layer, layer_states = [], []
    for block, block_state in zip(model.block_list, state.layers, strict=True):
        x, aux, new_state = reference_block_forward(block, x, teacher, block_state)
        per_layer.append(aux)
        layer_states.append(new_state)
    return model.head(model.norm(x)), stack_layer_aux(per_layer), MosaicState(layer_states, state.position + ids.shape[1])
