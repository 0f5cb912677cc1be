"""The differentiable VM: the opcode head, the control channels it drives, and teacher forcing.

An opcode acts only through the channel values it declares (``mosaic.layers.isa``); the block reads
the mixed channels, never opcode ids, so plugin opcodes need no block code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.contract import keys
from mosaic.core.contract.keys import KeySpec
from mosaic.core.errors import ModelError
from mosaic.layers.isa import CHANNEL_DEFAULTS, CHANNELS, Opcode, channel_matrix

#: Channel values of a block whose opcodes do not control it: every path open, nothing cleared.
FREE_CHANNELS = attrs.evolve(CHANNEL_DEFAULTS, read=1.0, write=1.0)

IGNORE = keys.IGNORE_INDEX


@attrs.define
class Controls:
    """Per-token control channels, each ``(B, T)``."""

    read: torch.Tensor
    write: torch.Tensor
    clear: torch.Tensor
    update: torch.Tensor
    fusion: torch.Tensor
    scan: torch.Tensor
    commit: torch.Tensor
    respond: torch.Tensor
    output_scale: torch.Tensor

    @classmethod
    def from_channels(cls, channels: torch.Tensor) -> Controls:
        """From a ``(B, T, len(CHANNELS))`` tensor."""
        return cls(**{name: channels[..., i] for i, name in enumerate(CHANNELS)})

    @classmethod
    def free(cls, like: torch.Tensor) -> Controls:
        """Fixed free-running channels shaped like ``like (B, T)``."""
        return cls(**{name: torch.full_like(like, getattr(FREE_CHANNELS, name)) for name in CHANNELS})

    def at(self, t: int) -> Controls:
        return Controls(**{name: getattr(self, name)[:, t : t + 1] for name in CHANNELS})


@attrs.define
class TeacherForcing:
    """Teacher decisions that replace the block's own where set (negative = not forced).

    ``drop_local`` is not a forcing signal: where it is 1 the local mixer is dropped (the data asks
    the model to answer from memory)."""

    opcode: torch.Tensor | None = None  # (B, T) int64
    read_bucket: torch.Tensor | None = None  # (B, T, H) int64
    write_bucket: torch.Tensor | None = None  # (B, T, H) int64
    write_gate: torch.Tensor | None = None  # (B, T) float
    reg_write_gate: torch.Tensor | None = None  # (B, T) float
    reg_sel: torch.Tensor | None = None  # (B, T) int64
    drop_local: torch.Tensor | None = None  # (B, T) float

    def at(self, t0: int, t1: int) -> TeacherForcing:
        return TeacherForcing(
            **{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[:, t0:t1]
               for f in attrs.fields(TeacherForcing)}
        )

    @classmethod
    def from_batch(cls, batch: Mapping[str, torch.Tensor], *, hashes: int, buckets: int,
                   reg_slots: int, n_opcodes: int) -> TeacherForcing:
        """Read the teacher keys of ``batch``; ``mosaic_teacher_forcing (B,)`` is the per-sample
        probability that a token uses a (non-ignored) teacher decision instead of its own."""
        ids = batch[keys.INPUT_IDS.name]
        bsz, length = ids.shape
        drop = batch.get(keys.DROP_LOCAL.name)
        if drop is not None:
            _check_shape(keys.DROP_LOCAL.name, drop, (bsz, length))
            drop = drop.to(torch.float32)
        forcing = batch.get(keys.TEACHER_FORCING.name)
        if forcing is None:
            return cls(drop_local=drop)
        _check_shape(keys.TEACHER_FORCING.name, forcing, (bsz,))
        use = torch.rand(bsz, length, device=ids.device) < forcing.to(torch.float32)[:, None]

        def pick(spec: KeySpec, shape: tuple[int, ...], limit: int | None) -> torch.Tensor | None:
            value = batch.get(spec.name)
            if value is None:
                return None
            _check_shape(spec.name, value, shape)
            if limit is not None:
                value = value.long()
                valid = (value == IGNORE) | ((value >= 0) & (value < limit))
                if not bool(valid.all()):
                    raise ModelError(f"{spec.name}: values must lie in [0, {limit}) or be {IGNORE} (ignore), "
                                     f"got {value.min()}..{value.max()}")
            ignored = IGNORE if limit is not None else keys.FLOAT_TEACHER_PAD
            mask = use if value.dim() == 2 else use[..., None]
            return torch.where(mask, value, torch.full_like(value, ignored))

        return cls(
            opcode=pick(keys.TEACHER_OPCODE, (bsz, length), n_opcodes),
            read_bucket=pick(keys.TEACHER_READ_BUCKET, (bsz, length, hashes), buckets),
            write_bucket=pick(keys.TEACHER_WRITE_BUCKET, (bsz, length, hashes), buckets),
            write_gate=pick(keys.TEACHER_WRITE_GATE, (bsz, length), None),
            reg_write_gate=pick(keys.TEACHER_REG_WRITE_GATE, (bsz, length), None) if reg_slots else None,
            reg_sel=pick(keys.TEACHER_REG_SEL, (bsz, length), reg_slots) if reg_slots else None,
            drop_local=drop,
        )


def _check_shape(key: str, value: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(value.shape) != shape:
        raise ModelError(f"batch[{key!r}]: expected shape {shape}, got {tuple(value.shape)}")


def forced_float(own: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
    """``own`` where the teacher value is negative (ignored), else the teacher value."""
    if teacher is None:
        return own
    return torch.where(teacher >= 0, teacher.to(own.dtype), own)


def straight_through_one_hot(logits: torch.Tensor, teacher: torch.Tensor | None, *, temp: float = 1.0) -> torch.Tensor:
    """A one-hot of the argmax (or of the teacher's choice) in the forward pass with the softmax's
    gradient in the backward pass."""
    soft = F.softmax(logits / temp, dim=-1)
    choice = logits.argmax(dim=-1)
    if teacher is not None:
        choice = torch.where(teacher >= 0, teacher, choice)
    hard = F.one_hot(choice, logits.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())  # parenthesised: exactly the one-hot in the forward pass


#: The VM decisions a runtime acts on, as aux outputs ``(B, T)``: the response onset (RESPOND), the
#: commitment signal that lets the ledger follow the commitment head (COMMIT), and silence (IDLE:
#: one minus the update channel).
def signals(controls: Controls) -> dict[str, torch.Tensor]:
    """The runtime-facing signals of executed controls, each ``(B, T)`` in [0, 1]."""
    return {
        keys.RESPONSE_ONSET.name: controls.respond,
        keys.COMMIT_SIGNAL.name: controls.commit,
        keys.IDLE_SIGNAL.name: (1.0 - controls.update).clamp(0.0, 1.0),
    }


class OpcodeHead(nn.Module):
    """Opcode logits ``(B, T, V)``, the control channels they drive, and the signals a runtime reads.

    With control on, the signals are those of the executed controls (teacher or ablation forcing
    included), so a runtime acts on what the VM did. With control off, the block runs free and the
    signals are the opcode head's soft opinion."""

    # buffers, typed here: to mypy, nn.Module.__getattr__ returns Tensor | Module
    channels: torch.Tensor

    def __init__(self, d_model: int, opcodes: Sequence[Opcode], *, control: bool, soft: bool, temp: float) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, len(opcodes))
        self.control, self.soft, self.temp = control, soft, temp
        self.register_buffer("channels", torch.tensor(channel_matrix(tuple(opcodes))), persistent=False)

    def forward(self, u: torch.Tensor, teacher: torch.Tensor | None
                ) -> tuple[torch.Tensor, Controls, dict[str, torch.Tensor]]:
        logits = self.proj(u)  # (B, T, V)
        matrix = self.channels.to(u.dtype)
        if not self.control:
            opinion = Controls.from_channels(F.softmax(logits / self.temp, dim=-1) @ matrix)
            return logits, Controls.free(u[..., 0]), signals(opinion)
        if self.soft:
            probs = F.softmax(logits / self.temp, dim=-1)
            if teacher is not None:
                probs = torch.where(
                    (teacher >= 0)[..., None], F.one_hot(teacher.clamp_min(0), logits.shape[-1]).to(u.dtype), probs
                )
        else:
            probs = straight_through_one_hot(logits, teacher, temp=self.temp)
        controls = Controls.from_channels(probs @ matrix)  # (B, T, channels)
        return logits, controls, signals(controls)
