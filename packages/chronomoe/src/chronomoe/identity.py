"""Detectors for the three identity events; each returns evidence the kernel re-checks one window
later (two-step commit). Thresholds live in :class:`chronomoe.config.KernelConfig`.

- Reflex crystallisation (fast clock) — five gates per expert: persistence of β at the clamp,
  coherence, agreement with the clean router, evidence (tokens), anti-gaming (the expert's own
  veto rate: its β is not being vetoed on the tokens routed to it).
- Epoch boundary (mid clock) — the mid-clock layer coherence has moved away from the slow clock.
- Scar (slow clock) — an edit made the layer's free energy worse by at least ``scar_delta_f``.
"""

from __future__ import annotations

from typing import Any

from chronomoe.config import ChronoConfig


def reflex_evidence(moe: Any, expert: int) -> dict[str, float]:
    """What the reflex gates read for one expert, as plain numbers (host read)."""
    router = moe.router
    return {
        "k": float(router.state.k[expert]),
        "phi_slow": float(router.coherence.phi_slow()[expert]),
        "tokens": float(router.coherence.tokens_seen[expert]),
        "flip": float(router.state.disagreement.estimate_at(0)[0]),
        "veto": float(router.state.expert_veto.estimate_at(0)[expert]),
    }


def gates_from_evidence(evidence: dict[str, float], config: ChronoConfig) -> dict[str, bool]:
    """The five gates of reflex crystallisation from :func:`reflex_evidence`'s numbers."""
    kc = config.kernel
    return {
        "persistence": abs(evidence["k"]) >= kc.reflex_k_fraction * config.k_max,
        "coherence": evidence["phi_slow"] >= kc.reflex_min_phi,
        "agreement": evidence["flip"] <= kc.reflex_max_flip,
        "evidence": evidence["tokens"] >= kc.reflex_min_tokens,
        "anti_gaming": evidence["veto"] <= kc.reflex_max_veto,
    }


def reflex_gates(moe: Any, expert: int, config: ChronoConfig) -> dict[str, bool]:
    """The five gates of reflex crystallisation for one expert (host read)."""
    return gates_from_evidence(reflex_evidence(moe, expert), config)


def reflex_candidates(moe: Any, live: list[int], config: ChronoConfig) -> list[tuple[int, dict[str, bool]]]:
    crystallised = moe.router.state.crystallised.cpu().tolist()
    out = []
    for expert in live:
        if crystallised[expert]:
            continue
        gates = reflex_gates(moe, expert, config)
        if all(gates.values()):
            out.append((expert, gates))
    return out


def psi_mid_slow(moe: Any) -> tuple[float, float]:
    psi = moe.router.coherence.psi().cpu().tolist()  # fast, mid, slow
    return psi[1], psi[2]


def epoch_shift(moe: Any, config: ChronoConfig) -> tuple[bool, float, float]:
    psi_mid, psi_slow = psi_mid_slow(moe)
    return abs(psi_mid - psi_slow) >= config.kernel.epoch_psi_shift, psi_mid, psi_slow


def is_scar(f_before: float, f_after: float, config: ChronoConfig) -> bool:
    return f_after - f_before >= config.kernel.scar_delta_f
