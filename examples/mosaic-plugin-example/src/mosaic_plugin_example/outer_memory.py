"""``memory.outer_product``: a linear associative memory for a MOSAIC block, added by a plugin.

The block talks to its memory only through the ``BlockMemory`` protocol of
``mosaic.core.contract.protocols``; this module implements it without touching mosaic-layers.
Select it in a preset with ``block: {memory: {type: memory.outer_product, key_dim: 16}}``.

Per sample the state is one matrix ``S (key_dim, value_dim)``. A token writes ``w_t k_t v_t^T``
(``w_t`` the write gate times the VM's ``write`` channel, ``k_t`` unit-norm) and reads
``q_t^T S`` as it was *before* its own write, so, for ``t`` in one call::

    read_t = q_t^T S_0 + sum_{s < t} w_s (q_t . k_s) v_s
    S_T    = S_0 + sum_s w_s k_s v_s^T

computed here with one masked ``(T, T)`` product (:func:`outer_product_read`); the plain loop over
tokens :func:`outer_product_reference` is its twin. The SCAN summary and the bucket teachers of the
hashed memory do not apply; the write-gate teacher does, and the write-gate logits are reported as
the contract's ``mosaic_write_gate_logits`` so ``aux_gate_weight`` supervises them.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.contract import keys
from mosaic.layers.state import MemoryState
from mosaic.layers.vm import Controls, TeacherForcing, forced_float


@attrs.frozen
class OuterProductMemoryConfig:
    d_model: int = attrs.field(validator=attrs.validators.gt(0))  # set by the block
    key_dim: int = attrs.field(default=16, validator=attrs.validators.gt(0))
    value_dim: int = attrs.field(default=16, validator=attrs.validators.gt(0))


def outer_product_read(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, strength: torch.Tensor,
                       table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """query/key (B, T, dk), value (B, T, dv), strength (B, T), table (B, dk, dv)
    -> (read before each token's write (B, T, dv), table after the last token)."""
    length = query.shape[1]
    before = torch.ones(length, length, dtype=torch.bool, device=query.device).tril(-1)  # [t, s] = s < t
    scores = (query @ key.transpose(-1, -2)) * strength[:, None, :]  # (B, T, T) weight of s's write for t
    read = query @ table + torch.where(before, scores, torch.zeros_like(scores)) @ value
    return read, table + (key * strength[..., None]).transpose(-1, -2) @ value


def outer_product_reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, strength: torch.Tensor,
                            table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same, one token at a time: read the table, then write into it."""
    reads = []
    for t in range(query.shape[1]):
        reads.append((query[:, t, None] @ table)[:, 0])  # (B, dv)
        table = table + strength[:, t, None, None] * key[:, t, :, None] * value[:, t, None, :]
    return torch.stack(reads, dim=1), table


class OuterProductMemory(nn.Module):
    def __init__(self, config: OuterProductMemoryConfig) -> None:
        super().__init__()
        d = config.d_model
        self.config = config
        self.query = nn.Linear(d, config.key_dim, bias=False)
        self.key = nn.Linear(d, config.key_dim, bias=False)
        self.value = nn.Linear(d, config.value_dim, bias=False)
        self.write_gate = nn.Linear(d, 1)
        self.out = nn.Linear(config.value_dim, d, bias=False)

    def init_state(self, batch_size: int, device: torch.device | None, dtype: torch.dtype) -> MemoryState:
        return MemoryState(torch.zeros(batch_size, self.config.key_dim, self.config.value_dim, device=device, dtype=dtype))

    def forward(self, u: torch.Tensor, controls: Controls, teacher: TeacherForcing, state: MemoryState,
                chunk: int, *, scan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], MemoryState]:
        query = F.normalize(self.query(u), dim=-1)  # (B, T, dk)
        key = F.normalize(self.key(u), dim=-1)
        gate_logits = self.write_gate(u)[..., 0]  # (B, T)
        strength = forced_float(torch.sigmoid(gate_logits), teacher.write_gate) * controls.write
        read, table = outer_product_read(query, key, self.value(u), strength, state.table)
        aux = {keys.WRITE_GATE_LOGITS.name: gate_logits}
        return self.out(controls.read[..., None] * read), aux, MemoryState(table)


def build_outer_product_memory(config: OuterProductMemoryConfig) -> OuterProductMemory:
    return OuterProductMemory(config)
