"""Numerically stable chunked scans of diagonal linear recurrences, and their step-by-step twins.

Both fast scans solve ``h_t = a_t * h_{t-1} + b_t`` without a Python loop over time: inside a chunk
every token's state is a masked sum over earlier tokens whose weights ``prod a`` are formed as
``exp`` of *direct* sums of ``log a`` over exactly the tokens in between (never ``exp(-cumsum)``,
which is what overflowed the original for decays below 0.5), and the chunk-to-chunk carry uses the
same construction one level up. Every exponent is <= 0, so no weight exceeds 1 for any decay in
(0, 1]; a decay of exactly 0 is floored at ``exp(-LOG_FLOOR)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: ``log a`` is floored here: a decay below exp(-46) ~ 1e-20 acts as 0 to fp32 precision.
LOG_FLOOR = 46.0
_FLOOR = math.exp(-LOG_FLOOR)


#: Below this decay ``safe_log`` passes no gradient: ``d log a / d a = 1 / a`` would amplify rounding
#: noise in the (tiny) gradient of what survives of a cell that is being overwritten.
GRAD_FLOOR = 1e-4


def safe_log(a: torch.Tensor) -> torch.Tensor:
    """``log a`` for ``a`` in [0, 1], floored at ``exp(-LOG_FLOOR)``, with the gradient of
    ``log max(a, GRAD_FLOOR)`` (computed in fp32 so that the floor survives half precision)."""
    wide = a.float() if a.dtype in (torch.float16, torch.bfloat16) else a
    value = torch.log(wide.clamp_min(_FLOOR))
    smooth = torch.log(wide.clamp_min(GRAD_FLOOR))
    return (smooth + (value - smooth).detach()).to(a.dtype)


def _pad_time(x: torch.Tensor, multiple: int) -> torch.Tensor:
    pad = -x.shape[1] % multiple
    if pad == 0:
        return x
    spec = [0, 0] * (x.dim() - 2) + [0, pad]
    return F.pad(x, spec)


def _strictly_later(n: int, device: torch.device) -> torch.Tensor:
    index = torch.arange(n, device=device)
    return index[:, None] > index[None, :]  # [u, s] = u > s


def decay_scan(v: torch.Tensor, log_decay: torch.Tensor, h0: torch.Tensor, chunk: int) -> torch.Tensor:
    """Time-invariant decays: ``h_t = exp(log_decay) * h_{t-1} + v_t``.

    v: (B, T, N); log_decay: (N,) <= 0; h0: (B, N). Returns h: (B, T, N)."""
    batch, length, width = v.shape
    size = max(1, min(chunk, length))
    v = _pad_time(v, size)
    n_chunks = v.shape[1] // size
    v = v.view(batch, n_chunks, size, width)
    log_decay = log_decay.clamp_min(-LOG_FLOOR)
    index = torch.arange(size, device=v.device)
    lag = index[:, None] - index[None, :]  # (C, C) t - s
    weights = torch.where(
        (lag >= 0)[..., None], torch.exp(lag.clamp_min(0)[..., None] * log_decay), torch.zeros((), device=v.device)
    )  # (C, C, N)
    # one (C, C) @ (C, B * nC) product per channel, laid out contiguously for a fast batched matmul
    columns = v.permute(3, 2, 0, 1).reshape(width, size, batch * n_chunks)
    intra = torch.bmm(weights.permute(2, 0, 1).contiguous(), columns)  # (N, C, B * nC)
    intra = intra.view(width, size, batch, n_chunks).permute(2, 3, 1, 0)  # (B, nC, C, N)
    ends = intra[:, :, -1]  # (B, nC, N)
    chunk_index = torch.arange(n_chunks, device=v.device)
    chunk_lag = chunk_index[:, None] - chunk_index[None, :]  # state after chunk n from chunk m's end
    chunk_weights = torch.where(
        (chunk_lag >= 0)[..., None],
        torch.exp((chunk_lag.clamp_min(0) * size)[..., None] * log_decay),
        torch.zeros((), device=v.device),
    )  # (nC, nC, N)
    after = torch.einsum("nmk,bmk->bnk", chunk_weights, ends)
    after = after + torch.exp(((chunk_index + 1) * size)[:, None] * log_decay) * h0[:, None]
    before = torch.cat([h0[:, None], after[:, :-1]], dim=1)  # (B, nC, N) state at each chunk start
    carry = torch.exp((index + 1)[:, None] * log_decay)  # (C, N)
    h = intra + carry * before[:, :, None]
    return h.reshape(batch, n_chunks * size, width)[:, :length]


def gated_scan(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, chunk: int) -> torch.Tensor:
    """Time-varying decays shared within a group: ``h_t[g] = a_t[g] * h_{t-1}[g] + b_t[g]``.

    log_a: (B, T, G) <= 0; b: (B, T, G, E); h0: (B, G, E). Returns h: (B, T, G, E) (inclusive:
    ``h_t`` has absorbed token t)."""
    batch, length, groups = log_a.shape
    width = b.shape[-1]
    size = max(1, min(chunk, length))
    log_a = _pad_time(log_a.clamp_min(-LOG_FLOOR), size)
    b = _pad_time(b, size)
    n_chunks = log_a.shape[1] // size
    log_a = log_a.view(batch, n_chunks, size, groups)
    b = b.view(batch, n_chunks, size, groups, width)
    later = _strictly_later(size, log_a.device)
    # seg[t, s] = sum of log a_u for s < u <= t, as a direct masked sum (stable)
    terms = torch.where(later[None, None, :, :, None], log_a[:, :, :, None, :], torch.zeros((), device=b.device))
    seg = terms.cumsum(dim=2)  # (B, nC, C, C, G)
    weights = torch.where((~later.T)[None, None, :, :, None], torch.exp(seg), torch.zeros((), device=b.device))
    intra = (weights.permute(0, 1, 4, 2, 3) @ b.permute(0, 1, 3, 2, 4)).permute(0, 1, 3, 2, 4)  # (B, nC, C, G, E)
    totals = log_a.sum(dim=2)  # (B, nC, G)
    chunk_later = _strictly_later(n_chunks, log_a.device)
    chunk_terms = torch.where(
        chunk_later[None, :, :, None], totals[:, :, None, :], torch.zeros((), device=b.device)
    )
    chunk_seg = chunk_terms.cumsum(dim=1)  # [n, m] = sum of totals over m < k <= n
    chunk_weights = torch.where(
        (~chunk_later.T)[None, :, :, None], torch.exp(chunk_seg), torch.zeros((), device=b.device)
    )
    after = torch.einsum("bnmg,bmge->bnge", chunk_weights, intra[:, :, -1])
    after = after + torch.exp(totals.cumsum(dim=1))[..., None] * h0[:, None]
    before = torch.cat([h0[:, None], after[:, :-1]], dim=1)  # (B, nC, G, E)
    h = intra + torch.exp(log_a.cumsum(dim=2))[..., None] * before[:, :, None]
    return h.reshape(batch, n_chunks * size, groups, width)[:, :length]


def exclusive(h: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The state *before* each token from the inclusive states ``h (B, T, ...)``."""
    return torch.cat([h0[:, None], h[:, :-1]], dim=1)


# --- reference twins: plain loops over time, used only in tests and benchmarks ------------------


def decay_scan_reference(v: torch.Tensor, log_decay: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    decay = torch.exp(log_decay)
    h, out = h0, []
    for t in range(v.shape[1]):
        h = decay * h + v[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def gated_scan_reference(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    a = torch.exp(log_a)
    h, out = h0, []
    for t in range(b.shape[1]):
        h = a[:, t, :, None] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)
