"""Seed 003's β experiments on one ``layer.moe`` with ``router.chrono`` (8 experts), one command each:

- ``whiplash``: capacity whiplash as specified. Two pairs of systems from the same initialisation:
  *seeded* — β set to favour different experts (k = +k_max on experts 0-1 in system A, on 6-7 in
  B); *earned* — each system first trains ``--earn`` steps on inputs shifted by a different bias
  vector, so its own closed loop earns β, then both see the same common stream. Every system runs
  top-4 for ``--before`` steps, top-1 for ``--shock`` steps, top-4 for ``--recover`` steps; the
  control runs the same steps at top-4 throughout. Routing is the per-expert top-1 load of the
  clean-plus-β selection key on one fixed probe. *Divergence*: TV distance between the two systems'
  probe loads (before the shock, at its end, after recovery). *Hysteresis*: TV between a system's
  probe load before the shock and after recovery, minus the same distance in its no-shock control.
- ``saturation``: top-1 flip rate (clean vs biased selection) against |β| on a trained layer's
  logits, k = ±m in a fixed alternating pattern for a grid of m, with the bridge veto on and off.
- ``scale_free``: the same flip rate at a fixed k while the logits are scaled by ``--scales``:
  β_eff = k · logit std, so the flip rate should not depend on the scale. Reports the spread
  (max − min) across scales with the veto on and off.

Synthetic task (seconds on a CPU): inputs are a mixture of ``CLUSTERS`` Gaussian clusters, the target
a different random linear map per cluster; the layer is trained with AdamW on the squared error.
Run: ``python -m experiments.chrono_beta whiplash`` (likewise ``saturation``, ``scale_free``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import attrs
import torch

from chronomoe.config import ChronoConfig
from chronomoe.router_state import RouterState, biased_selection_key
from chronomoe.routers import masked_std
from mosaic.core.config import unstructure_config
from mosaic.core.plugins import get_registry

D, E, CLUSTERS, BATCH = 16, 8, 6, 256
K_MAX = 0.3


def build_layer(seed: int, chrono: ChronoConfig, top_k: int = 4) -> Any:
    torch.manual_seed(seed)
    return get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "n_experts": E,
            "top_k": top_k,
            "capacity_factor": None,
            "router": {"type": "router.chrono", "chrono": unstructure_config(chrono)},
        },
    )


class Task:
    """Cluster mixture with a linear map per cluster (fixed by ``seed``)."""

    def __init__(self, seed: int) -> None:
        g = torch.Generator().manual_seed(10_000 + seed)
        self.centres = torch.randn(CLUSTERS, D, generator=g) * 2.0
        self.maps = torch.randn(CLUSTERS, D, D, generator=g) / D**0.5

    def batch(
        self, g: torch.Generator, shift: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cluster = torch.randint(0, CLUSTERS, (BATCH,), generator=g)
        x = self.centres[cluster] + torch.randn(BATCH, D, generator=g)
        if shift is not None:
            x = x + shift
        y = torch.einsum("nd,nde->ne", x, self.maps[cluster])
        return x.view(1, BATCH, D), y.view(1, BATCH, D)


def train(
    layer: Any,
    optimizer: torch.optim.Optimizer,
    task: Task,
    steps: int,
    g: torch.Generator,
    shift: torch.Tensor | None = None,
) -> None:
    layer.train()
    for _ in range(steps):
        x, y = task.batch(g, shift)
        loss = (layer(x) - y).square().mean() + layer.aux_outputs()["moe_aux_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def probe_load(layer: Any, probe: torch.Tensor) -> torch.Tensor:
    """Top-1 load share per expert of the selection key (clean logits + β) on the probe."""
    layer.eval()
    with torch.no_grad():
        route = layer.router(probe.view(-1, D))
    layer.train()
    return torch.bincount(route.selection_key.argmax(-1), minlength=E).double() / probe.view(-1, D).shape[0]


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return round(0.5 * float((p - q).abs().sum()), 4)


def seeded_k(favoured: tuple[int, ...]) -> torch.Tensor:
    k = torch.full((E,), -K_MAX * len(favoured) / (E - len(favoured)))
    k[list(favoured)] = K_MAX
    return k


def whiplash_pair(seed: int, kind: str, shock: bool, args: argparse.Namespace) -> dict[str, Any]:
    chrono = ChronoConfig(k_max=K_MAX)
    task = Task(seed)
    probe = task.batch(torch.Generator().manual_seed(77_777 + seed))[0]
    systems = []
    for index in range(2):
        layer = build_layer(seed, chrono)
        optimizer = torch.optim.AdamW(layer.parameters(), lr=3e-3)
        if kind == "seeded":
            with torch.no_grad():
                layer.router.state.k.copy_(seeded_k((0, 1) if index == 0 else (6, 7)))
                layer.router.state.crystallised.fill_(True)  # the seeded β is held for the protocol
        else:  # earned: a different input bias per system, the closed loop earns its own β
            shift = torch.zeros(D)
            shift[index] = 3.0 if index == 0 else -3.0
            train(layer, optimizer, task, args.earn, torch.Generator().manual_seed(seed * 31 + index), shift)
        systems.append((layer, optimizer))
    loads: dict[str, list[torch.Tensor]] = {"before": [], "shock_end": [], "after": []}
    phases = (
        ("before", args.before, 4),
        ("shock_end", args.shock, 1 if shock else 4),
        ("after", args.recover, 4),
    )
    for number, (phase, steps, top_k) in enumerate(phases):
        for layer, optimizer in systems:
            layer.router.set_top_k(top_k)
            # the common stream: the same batches for both systems
            train(layer, optimizer, task, steps, torch.Generator().manual_seed(seed * 1000 + number))
            loads[phase].append(probe_load(layer, probe))
    return {
        "divergence": {phase: tv(*pair) for phase, pair in loads.items()},
        "drift": [tv(loads["before"][i], loads["after"][i]) for i in range(2)],
        "k_absmean_after": [round(float(layer.router.state.k.abs().mean()), 4) for layer, _ in systems],
    }


def whiplash(args: argparse.Namespace) -> dict[str, Any]:
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, list[dict[str, Any]]] = {}
    for kind in ("seeded", "earned"):
        for seed in seeds:
            shocked = whiplash_pair(seed, kind, True, args)
            control = whiplash_pair(seed, kind, False, args)
            rows.setdefault(kind, []).append(
                {
                    "seed": seed,
                    "shock": shocked,
                    "control": control,
                    "excess_hysteresis": [
                        round(s - c, 4) for s, c in zip(shocked["drift"], control["drift"], strict=True)
                    ],
                    "excess_divergence_after": round(
                        shocked["divergence"]["after"] - control["divergence"]["after"], 4
                    ),
                }
            )
    summary = {
        kind: {
            "mean_excess_hysteresis": round(
                statistics.fmean(h for r in runs for h in r["excess_hysteresis"]), 4
            ),
            "mean_divergence": {
                phase: round(statistics.fmean(r["shock"]["divergence"][phase] for r in runs), 4)
                for phase in ("before", "shock_end", "after")
            },
            "mean_control_divergence_after": round(
                statistics.fmean(r["control"]["divergence"]["after"] for r in runs), 4
            ),
        }
        for kind, runs in rows.items()
    }
    return {
        "setup": {
            "experts": E,
            "d_model": D,
            "protocol": "top-4 -> top-1 -> top-4",
            "before": args.before,
            "shock": args.shock,
            "recover": args.recover,
            "earn": args.earn,
            "seeds": seeds,
            "k_max": K_MAX,
        },
        "runs": rows,
        "summary": summary,
    }


def trained_logits(seed: int, steps: int) -> tuple[torch.Tensor, ChronoConfig]:
    chrono = ChronoConfig(k_max=K_MAX)
    layer = build_layer(seed, chrono, top_k=2)
    task = Task(seed)
    train(
        layer,
        torch.optim.AdamW(layer.parameters(), lr=3e-3),
        task,
        steps,
        torch.Generator().manual_seed(seed),
    )
    x = task.batch(torch.Generator().manual_seed(55_555 + seed))[0].view(-1, D)
    with torch.no_grad():
        return layer.router.gate(x).float(), chrono


VETO = {"on": {}, "off": {"veto_full": 0.99, "veto_zero": 1.0}}  # off: TV never reaches 0.99


def flip_rate(logits: torch.Tensor, k: torch.Tensor, chrono: ChronoConfig) -> float:
    """The router's own rule: β = RouterState.beta_eff() after observing these logits' std."""
    state = RouterState(E, attrs.evolve(chrono, k_max=max(K_MAX, float(k.abs().max()))))
    state.observe_logit_std(masked_std(logits, torch.ones(E, dtype=torch.bool)))
    state.k.copy_(k)
    _, metrics, _ = biased_selection_key(logits, state.beta_eff(), chrono)
    return round(float(metrics["flip_rate"]), 4)


def pattern(magnitude: float) -> torch.Tensor:
    return torch.tensor([magnitude if e % 2 == 0 else -magnitude for e in range(E)])


def saturation(args: argparse.Namespace) -> dict[str, Any]:
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0]
    table: dict[str, dict[str, list[float]]] = {veto: {} for veto in VETO}
    for seed in seeds:
        logits, chrono = trained_logits(seed, args.train)
        for veto, overrides in VETO.items():
            config = attrs.evolve(chrono, **overrides)
            for m in grid:
                table[veto].setdefault(str(m), []).append(flip_rate(logits, pattern(m), config))
    mean = {veto: {m: round(statistics.fmean(v), 4) for m, v in rows.items()} for veto, rows in table.items()}
    return {
        "setup": {
            "experts": E,
            "train_steps": args.train,
            "seeds": seeds,
            "k_grid": grid,
            "k_pattern": "+m on even experts, -m on odd",
            "k_max_default": K_MAX,
        },
        "flip_rate": table,
        "mean_flip_rate": mean,
    }


def scale_free(args: argparse.Namespace) -> dict[str, Any]:
    seeds = [int(s) for s in args.seeds.split(",")]
    scales = [float(s) for s in args.scales.split(",")]
    k = pattern(args.k)
    rows: dict[str, list[dict[str, Any]]] = {veto: [] for veto in VETO}
    for seed in seeds:
        logits, chrono = trained_logits(seed, args.train)
        for veto, overrides in VETO.items():
            config = attrs.evolve(chrono, **overrides)
            rates = [flip_rate(logits * scale, k, config) for scale in scales]
            # the contrast: a raw bias of fixed size (k · the unscaled std), not in units of the std
            raw = [
                round(float(biased_selection_key(logits * s, k * logits.std(), config)[1]["flip_rate"]), 4)
                for s in scales
            ]
            rows[veto].append(
                {
                    "seed": seed,
                    "flip_rate": rates,
                    "spread": round(max(rates) - min(rates), 4),
                    "raw_bias_flip_rate": raw,
                    "raw_bias_spread": round(max(raw) - min(raw), 4),
                }
            )
    summary = {
        veto: {
            "mean_spread": round(statistics.fmean(r["spread"] for r in runs), 4),
            "mean_raw_bias_spread": round(statistics.fmean(r["raw_bias_spread"] for r in runs), 4),
        }
        for veto, runs in rows.items()
    }
    return {
        "setup": {"experts": E, "train_steps": args.train, "seeds": seeds, "scales": scales, "k": args.k},
        "runs": rows,
        "summary": summary,
    }


EXPERIMENTS = {"whiplash": whiplash, "saturation": saturation, "scale_free": scale_free}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ChronoMoE β experiments (seed 003)")
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--before", type=int, default=150)
    parser.add_argument("--shock", type=int, default=50)
    parser.add_argument("--recover", type=int, default=150)
    parser.add_argument("--earn", type=int, default=150)
    parser.add_argument("--train", type=int, default=200, help="training steps before a flip-rate sweep")
    parser.add_argument("--k", type=float, default=0.2, help="scale_free: |k| of the fixed pattern")
    parser.add_argument("--scales", default="0.1,0.3,1,3,10", help="scale_free: logit scales")
    parser.add_argument("--out", type=Path, default=None, help="default docs/results/chrono_beta_NAME.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = {"experiment": args.experiment, **EXPERIMENTS[args.experiment](args)}
    out = args.out or Path("docs/results") / f"chrono_beta_{args.experiment}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result.get("summary", result.get("mean_flip_rate")), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
