"""The MOSAIC block: local mixer, multiscale state bank, a block memory, registers, opcode VM and
commitment head, fused into one residual update by named gates. Every recurrence runs as a chunked
scan; see :mod:`mosaic.layers.reference` for the step-by-step twin it is tested against.

The memory sits behind the contract's ``BlockMemory`` protocol: ``memory.hashed`` by default, or
any ``memory.*`` component the block config names (``memory: {type: memory.<name>, ...}``), so a
plugin adds a memory without editing this module."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.contract import keys
from mosaic.core.contract.protocols import BlockMemory, missing_members
from mosaic.core.errors import ModelError
from mosaic.layers.config import DEFAULT_MEMORY, MosaicBlockConfig
from mosaic.layers.ffn import build_ffn, ffn_aux, model_registry
from mosaic.layers.isa import V0_OPCODES, Opcode
from mosaic.layers.memory import HashedMemory
from mosaic.layers.scan import decay_scan, exclusive, gated_scan, safe_log
from mosaic.layers.state import BlockState
from mosaic.layers.vm import Controls, OpcodeHead, TeacherForcing, forced_float, straight_through_one_hot

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry


class LocalMixer(nn.Module):
    """Depthwise causal conv followed by a gated SiLU MLP, or by the registry layer ``config.ffn``
    (e.g. ``layer.moe``) when one is configured."""

    def __init__(self, config: MosaicBlockConfig, registry: Registry | None = None) -> None:
        super().__init__()
        d, hidden = config.d_model, config.mlp_mult * config.d_model
        self.kernel = config.conv_kernel
        self.conv = nn.Conv1d(d, d, config.conv_kernel, groups=d)
        self.ffn = (build_ffn(config.ffn, d, model_registry(registry), path="$.block.ffn")
                    if config.ffn is not None else None)
        if self.ffn is None:
            self.up = nn.Linear(d, 2 * hidden, bias=False)
            self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, u: torch.Tensor, tail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.cat([tail, u], dim=1)  # (B, k - 1 + T, D)
        length = u.shape[1]
        # the depthwise conv as k shifted multiply-adds: much cheaper than conv1d's backward on CPU
        weight = self.conv.weight[:, 0, :]  # (D, k)
        mixed = cast(torch.Tensor, self.conv.bias) + sum(window[:, i : i + length] * weight[:, i] for i in range(self.kernel))
        new_tail = window[:, window.shape[1] - (self.kernel - 1):]
        if self.ffn is not None:
            return self.ffn(mixed), new_tail
        gate, value = self.up(mixed).chunk(2, dim=-1)
        return self.down(F.silu(gate) * value), new_tail


class StateBank(nn.Module):
    """K leaky integrators ``s_k <- l_k s_k + (1 - l_k) g W_in u`` sharing one low-rank input
    projection (D -> state_dim), read out by one projection (K * state_dim -> D).

    ``g`` is the token's gain, the VM's fusion channel (1 unless GATE_UP (2) or GATE_DOWN (0.5)
    runs): how strongly the token enters the state. The recurrence stays linear in its input, so the
    chunked scan and the step-by-step twin agree for any gain."""

    def __init__(self, config: MosaicBlockConfig) -> None:
        super().__init__()
        self.config = config
        k, width = config.state_k, config.state_dim
        self.inp = nn.Linear(config.d_model, width, bias=False)
        self.out = nn.Linear(k * width, config.d_model, bias=False)
        # decays log-spaced in timescale 1 / (1 - l) over [state_decay_min, state_decay_max]
        timescales = torch.logspace(
            math.log10(1 / (1 - config.state_decay_min)), math.log10(1 / (1 - config.state_decay_max)), k
        )
        decays = (1 - 1 / timescales)[:, None].expand(k, width)
        self.decay_logit = nn.Parameter(torch.logit(decays).clone())

    def decays(self) -> torch.Tensor:
        return torch.sigmoid(self.decay_logit)  # (K, width)

    def regulariser(self) -> torch.Tensor:
        """Mean squared excursion of the decays outside [state_decay_reg_min, state_decay_reg_max]."""
        decays, c = self.decays(), self.config
        return (F.relu(c.state_decay_reg_min - decays) ** 2 + F.relu(decays - c.state_decay_reg_max) ** 2).mean()

    def drive(self, u: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """What each token adds to the state: ``(1 - l) g W_in u``; ``u (B, T, D)``, ``gain (B, T)``."""
        keep_in = -torch.expm1(F.logsigmoid(self.decay_logit).flatten())  # 1 - l, exact for l near 1
        return self.inp(u).repeat(1, 1, self.config.state_k) * keep_in * gain[..., None]  # (B, T, K * width)

    def forward(self, u: torch.Tensor, h0: torch.Tensor, chunk: int, gain: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``gain (B, T)``: the VM's fusion channel (see the class)."""
        log_decay = F.logsigmoid(self.decay_logit).flatten()  # (K * width,)
        drive = self.drive(u, gain)
        h = decay_scan(drive, log_decay, h0, chunk)
        return self.out(h), h[:, -1]


class Registers(nn.Module):
    """R register slots: a gated write into a (straight-through) selected slot, an attention read
    of the registers as they were before the token."""

    def __init__(self, config: MosaicBlockConfig) -> None:
        super().__init__()
        d, r, width = config.d_model, config.reg_slots, config.reg_dim
        self.gate = nn.Linear(d, 1)
        self.select = nn.Linear(d, r)
        self.value = nn.Linear(d, width, bias=False)
        self.query = nn.Linear(d, width, bias=False)
        self.out = nn.Linear(width, d, bias=False)

    def plan(self, u: torch.Tensor, controls: Controls, teacher: TeacherForcing) -> dict[str, torch.Tensor]:
        gate_logits, sel_logits = self.gate(u)[..., 0], self.select(u)  # (B, T), (B, T, R)
        gate = forced_float(torch.sigmoid(gate_logits), teacher.reg_write_gate)
        strength = (gate * controls.write).clamp(0.0, 1.0)
        coeff = strength[..., None] * straight_through_one_hot(sel_logits, teacher.reg_sel)  # (B, T, R)
        return {
            "log_keep": safe_log(1 - coeff),
            "content": coeff[..., None] * self.value(u)[:, :, None],  # (B, T, R, width)
            "query": self.query(u),
            "gate_logits": gate_logits,
            "sel_logits": sel_logits,
        }

    def read(self, query: torch.Tensor, registers: torch.Tensor) -> torch.Tensor:
        """query (B, T, width), registers (B, T, R, width) -> (B, T, D)."""
        scores = (registers * query[:, :, None]).sum(-1) / math.sqrt(query.shape[-1])  # (B, T, R)
        return self.out((F.softmax(scores, dim=-1)[..., None] * registers).sum(-2))

    def forward(self, plan: dict[str, torch.Tensor], h0: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        inclusive = gated_scan(plan["log_keep"], plan["content"], h0, chunk)
        return self.read(plan["query"], exclusive(inclusive, h0)), inclusive[:, -1]


def build_block_memory(config: MosaicBlockConfig, registry: Registry | None = None) -> BlockMemory:
    """The block's memory: ``memory.hashed`` (the block's ``mem_*`` fields) unless ``config.memory``
    names another ``memory.*`` component, built through the registry with ``d_model`` set."""
    if config.memory is None:
        return HashedMemory(config)  # the default needs no registry, so checkpoints load anywhere
    kind = config.memory["type"]
    registry = model_registry(registry)
    if kind == DEFAULT_MEMORY:
        memory = registry.build(kind, config, path="$.block.memory")
    else:
        options = {key: value for key, value in config.memory.items() if key != "type"}
        memory = registry.build(kind, {**options, "d_model": config.d_model}, path="$.block.memory")
    if not isinstance(memory, BlockMemory) or not isinstance(memory, nn.Module):
        raise ModelError(f"{kind} is not a block memory: it must be a torch.nn.Module with "
                         f"{', '.join(missing_members(memory, BlockMemory)) or 'init_state, forward'}")
    return memory


class FusionGates(nn.Linear):
    """One sigmoid gate per path the block fuses into its update, by name.

    A linear map ``D -> len(PATHS)`` (one row per path, in :data:`PATHS` order, so checkpoints keep
    their ``fusion.weight``/``fusion.bias``), read back as named ``(B, T, 1)`` gates."""

    PATHS = ("state", "memory", "registers")

    def __init__(self, d_model: int) -> None:
        super().__init__(d_model, len(self.PATHS))

    def gates(self, u: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
        """``u (B, T, D)``, ``scale (B, T)`` (the VM's fusion channel) -> ``{path: (B, T, 1)}``."""
        values = torch.sigmoid(self(u)) * scale[..., None]  # (B, T, len(PATHS))
        return {path: values[..., i : i + 1] for i, path in enumerate(self.PATHS)}


class MosaicBlock(nn.Module):
    """``x (B, T, D) -> x + update * output_scale * (local + g_s state + g_m memory + g_r registers)``."""

    memory: BlockMemory  # a torch module (checked by build_block_memory)

    def __init__(self, config: MosaicBlockConfig, opcodes: Sequence[Opcode] = V0_OPCODES, *,
                 registry: Registry | None = None) -> None:
        super().__init__()
        c = config
        self.config = c
        self.norm = nn.RMSNorm(c.d_model)
        self.mixer = LocalMixer(c, registry)
        self.bank = StateBank(c)
        self.memory = build_block_memory(c, registry)
        self.registers = Registers(c) if c.reg_slots else None
        self.fusion = FusionGates(c.d_model)
        self.opcode_head = (
            OpcodeHead(c.d_model, opcodes, control=c.opcodes_control_enabled, soft=c.opcodes_control_soft,
                       temp=c.opcodes_control_temp)
            if c.opcodes_enabled else None
        )
        if c.commitment_head_enabled:
            self.commitment = nn.Linear(c.d_model, 3)  # [close, neutral, open]
            # COMMIT's push on the head's input. Not zero at init: a zero vector whose only gradient
            # comes through the commit channel would stay dead until COMMIT is chosen, and is
            # exactly zero forever when control is off.
            self.commit_drive = nn.Parameter(torch.randn(c.d_model) / math.sqrt(c.d_model))

    def init_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> BlockState:
        c = self.config
        memory = self.memory.init_state(batch, device, dtype)
        return BlockState(
            conv_tail=torch.zeros(batch, c.conv_kernel - 1, c.d_model, device=device, dtype=dtype),
            bank=torch.zeros(batch, c.state_k * c.state_dim, device=device, dtype=dtype),
            memory=memory.table,
            summary=memory.summary,
            mem_counts=memory.counts,
            registers=torch.zeros(batch, c.reg_slots, c.reg_dim, device=device, dtype=dtype) if c.reg_slots else None,
        )

    @property
    def reads_summary(self) -> bool:
        """Only opcodes that control the block can open the SCAN channel (free-running blocks keep it
        at 0), so the all-bucket summary is kept, and its state advanced, only then."""
        return self.opcode_head is not None and self.opcode_head.control

    def controls(self, u: torch.Tensor, teacher: TeacherForcing) -> tuple[Controls, dict[str, torch.Tensor]]:
        if self.opcode_head is None:
            return Controls.free(u[..., 0]), {}
        logits, controls, runtime_signals = self.opcode_head(u, teacher.opcode)
        return controls, {keys.OPCODE_LOGITS.name: logits, **runtime_signals}

    def fuse(self, x: torch.Tensor, u: torch.Tensor, controls: Controls, local: torch.Tensor, bank: torch.Tensor,
             memory: torch.Tensor, registers: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The residual output and the commitment head (shared with the reference twin)."""
        gates = self.fusion.gates(u, controls.fusion)  # {path: (B, T, 1)}
        delta = local + gates["state"] * bank + gates["memory"] * memory
        if registers is not None:
            delta = delta + gates["registers"] * registers
        aux = {}
        if self.config.commitment_head_enabled:
            drive = u + delta + controls.commit[..., None] * self.commit_drive
            aux[keys.COMMITMENT_LOGITS.name] = self.commitment(drive)
        return x + (controls.update * controls.output_scale)[..., None] * delta, aux

    def forward(self, x: torch.Tensor, teacher: TeacherForcing | None = None,
                state: BlockState | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor], BlockState]:
        teacher = teacher if teacher is not None else TeacherForcing()
        state = state if state is not None else self.init_state(x.shape[0], x.device, x.dtype)
        chunk = self.config.chunk_size
        u = self.norm(x)
        local, conv_tail = self.mixer(u, state.conv_tail)
        context = u + local  # the token with its local context: what the VM, memory and registers see
        controls, aux = self.controls(context, teacher)
        if teacher.drop_local is not None:
            local = local * (1 - teacher.drop_local.to(local.dtype))[..., None]
        # GATE_UP / GATE_DOWN: the fusion channel scales what enters the state as well as what the
        # state, memory and register paths add to the residual at the token
        bank, bank_h = self.bank(u, state.bank, chunk, controls.fusion)
        memory, memory_aux, memory_state = self.memory(context, controls, teacher, state.memory_state, chunk,
                                                       scan=self.reads_summary)  # (B, T, D)
        registers = register_state = None
        if self.registers is not None:
            reg_plan = self.registers.plan(context, controls, teacher)
            registers, register_state = self.registers(reg_plan, state.registers, chunk)
            aux[keys.REG_WRITE_GATE_LOGITS.name] = reg_plan["gate_logits"]
            aux[keys.REG_SEL_LOGITS.name] = reg_plan["sel_logits"]
        y, head_aux = self.fuse(x, u, controls, local, bank, memory, registers)
        aux.update(memory_aux)
        aux.update(head_aux)
        aux[keys.STATE_DECAY_REG_LOSS.name] = self.bank.regulariser()
        if self.mixer.ffn is not None:
            aux.update(ffn_aux(self.mixer.ffn))
        return y, aux, BlockState(conv_tail, bank_h, memory_state.table, memory_state.summary, memory_state.counts,
                                  register_state)


def build_mosaic_block(config: MosaicBlockConfig, *, registry: Registry | None = None) -> MosaicBlock:
    """``layer.mosaic_block`` factory: a block over the v0 opcodes and the installed plugin opcodes."""
    from mosaic.layers.isa import opcode_table

    registry = model_registry(registry)
    return MosaicBlock(config, opcode_table(registry) if config.opcodes_enabled else V0_OPCODES, registry=registry)
