"""The gated delta rule, chunked, with its step-by-step reference twin.

Per head, a fast-weight state ``S (d_v, d_k)`` is updated token by token:

    S_t = α_t · S_{t-1} · (I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ,        o_t = S_t q_t

with a decay gate α_t ∈ (0, 1] and a write strength β_t ∈ (0, 1] (DeltaNet when α ≡ 1; Gated
DeltaNet, Yang et al. 2024, in general). Keys are expected L2-normalised, so the update replaces the
value stored along k_t rather than adding to it.

The chunked form. Write u_t = β_t (v_t − α_t S_{t-1} k_t), so that S_t = α_t S_{t-1} + u_t k_tᵀ.
Within a chunk that starts from S₀, with γ_t = ∏_{i≤t} α_i (cumulative inside the chunk):

    S_t = γ_t S₀ + Σ_{j≤t} (γ_t/γ_j) u_j k_jᵀ
    (I + A) U = diag(β) V − diag(βγ) K S₀ᵀ,   A_tj = β_t (γ_t/γ_j) k_t·k_j  for j < t

so U = Ũ − W S₀ᵀ with Ũ = (I + A)⁻¹ diag(β) V and W = (I + A)⁻¹ diag(βγ) K (one unit-triangular
solve per chunk), and

    O   = diag(γ) Q S₀ᵀ + ((Q Kᵀ) ⊙ Γ ⊙ causal) U,     Γ_tj = γ_t/γ_j
    S_C = γ_C S₀ + Uᵀ diag(γ_C/γ) K

A Python loop runs over chunks only; everything inside a chunk is batched matrix algebra.
"""

from __future__ import annotations

import torch


def gated_delta_rule_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence, one token at a time. ``q, k (B, H, T, d_k)``, ``v (B, H, T, d_v)``,
    ``alpha, beta (B, H, T)``, ``state (B, H, d_v, d_k)``. Returns ``o (B, H, T, d_v)`` and the state."""
    bsz, heads, length, d_k = k.shape
    s = q.new_zeros(bsz, heads, v.shape[-1], d_k) if state is None else state
    outputs = []
    eye = torch.eye(d_k, dtype=k.dtype, device=k.device)
    for t in range(length):
        k_t, v_t = k[:, :, t], v[:, :, t]  # (B, H, d_k), (B, H, d_v)
        a_t, b_t = alpha[:, :, t, None, None], beta[:, :, t, None, None]
        erase = eye - b_t * k_t[..., :, None] * k_t[..., None, :]  # (B, H, d_k, d_k)
        s = a_t * (s @ erase) + b_t * v_t[..., :, None] * k_t[..., None, :]
        outputs.append((s @ q[:, :, t, :, None])[..., 0])  # (B, H, d_v)
    return torch.stack(outputs, dim=2), s


def chunked_gated_delta_rule(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
    chunk_size: int = 64, state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same result as :func:`gated_delta_rule_reference`, computed chunk by chunk."""
    bsz, heads, length, d_k = k.shape
    d_v = v.shape[-1]
    s = q.new_zeros(bsz, heads, d_v, d_k) if state is None else state
    log_alpha = alpha.clamp_min(torch.finfo(alpha.dtype).tiny).log()
    outputs = []
    for start in range(0, length, chunk_size):
        end = min(start + chunk_size, length)
        c = end - start
        q_c, k_c, v_c = q[:, :, start:end], k[:, :, start:end], v[:, :, start:end]  # (B, H, C, ·)
        b_c = beta[:, :, start:end]  # (B, H, C)
        log_gamma = log_alpha[:, :, start:end].cumsum(-1)  # (B, H, C)
        gamma = log_gamma.exp()
        # Γ_tj = γ_t / γ_j on and below the diagonal; 0 above (exp of -inf), never overflowing
        causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
        log_ratio = (log_gamma[..., :, None] - log_gamma[..., None, :]).masked_fill(~causal, float("-inf"))
        ratio = log_ratio.exp()  # (B, H, C, C)
        kk = k_c @ k_c.transpose(-1, -2)  # (B, H, C, C)
        strict = torch.ones(c, c, dtype=torch.bool, device=q.device).tril(-1)
        a = (b_c[..., :, None] * ratio * kk).masked_fill(~strict, 0.0)
        system = a + torch.eye(c, dtype=q.dtype, device=q.device)
        rhs = torch.cat([b_c[..., None] * v_c, (b_c * gamma)[..., None] * k_c], dim=-1)  # (B, H, C, d_v + d_k)
        solved = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
        u_tilde, w = solved[..., :d_v], solved[..., d_v:]
        u = u_tilde - w @ s.transpose(-1, -2)  # (B, H, C, d_v)
        qk = (q_c @ k_c.transpose(-1, -2)) * ratio  # (B, H, C, C), zero above the diagonal
        outputs.append(gamma[..., None] * (q_c @ s.transpose(-1, -2)) + qk @ u)
        decay_to_end = (log_gamma[..., -1:] - log_gamma).exp()  # (B, H, C): γ_C / γ_j
        s = gamma[..., -1, None, None] * s + u.transpose(-1, -2) @ (decay_to_end[..., None] * k_c)
    return torch.cat(outputs, dim=2), s
