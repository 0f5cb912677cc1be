"""Sovereignty under a dying expert server: a ``layer.moe`` (router.chrono, 4 experts, top-2) whose
experts e2 and e3 are served by ``python -m chronomoe.remote_server`` trains on a fixed regression
target; the server is killed with SIGKILL mid-run, then started again on the same port.

Per phase (serving, killed, restarted) it records the steps, the mean number of masked experts
(``moe_unreachable_experts``), the remote experts' share of assignments, the loss at the phase's
first and last step and the step times; and every event the layer emitted. Writes
``docs/results/remote_experts.json`` (rendered into docs/chronomoe.md by
``docs/renderers/remote_experts.py``). Run: ``python -m experiments.remote_experts``.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from chronomoe.remote_server import launch
from mosaic.core.contract import keys
from mosaic.core.plugins import get_registry

D_MODEL = 16
OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "remote_experts.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per phase")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    server, port = launch(2, D_MODEL, seed=1)
    remote = {
        "address": f"127.0.0.1:{port}",
        "experts": [2, 3],
        "call_timeout_s": 2.0,
        "probe_timeout_s": 0.5,
        "retry_initial_s": 0.1,
        "retry_max_s": 0.4,
    }
    layer = get_registry().build(
        "layer.moe",
        {
            "d_model": D_MODEL,
            "n_experts": 4,
            "top_k": 2,
            "router": {"type": "router.chrono"},
            "remote": remote,
        },
    )
    events: list[dict[str, Any]] = []
    step = 0
    layer.experts.client.on_event = lambda e: events.append({"step": step, "type": e.type, **e.payload})
    x, y = torch.randn(4, 8, D_MODEL), torch.randn(4, 8, D_MODEL)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    phases: dict[str, list[dict[str, float]]] = {"serving": [], "killed": [], "restarted": []}

    def train(phase: str) -> dict[str, float]:
        nonlocal step
        start = time.monotonic()
        loss = (layer(x) - y).square().mean() + layer.aux_outputs()[keys.MOE_AUX_LOSS.name]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        aux = layer.aux_outputs()
        row = {
            "loss": float(loss.detach()),
            "seconds": time.monotonic() - start,
            "unreachable": float(aux[keys.MOE_UNREACHABLE_EXPERTS.name]),
            "remote_share": float(aux[keys.MOE_EXPERT_LOAD.name][2:].sum()),
        }
        phases[phase].append(row)
        step += 1
        time.sleep(0.05)  # a trainer does other work between steps (data, logging)
        return row

    try:
        for _ in range(args.steps):
            train("serving")
        server.send_signal(signal.SIGKILL)
        server.wait()
        for _ in range(args.steps):
            train("killed")
        server, _ = launch(2, D_MODEL, port=port, seed=1)
        deadline = time.monotonic() + 60
        while train("restarted")["unreachable"] and time.monotonic() < deadline:
            pass
        for _ in range(args.steps):
            train("restarted")
    finally:
        server.kill()
        server.wait()
    summary = {
        phase: {
            "steps": len(rows),
            "unreachable_mean": statistics.fmean(r["unreachable"] for r in rows),
            "remote_share_mean": statistics.fmean(r["remote_share"] for r in rows),
            "remote_share_last": rows[-1]["remote_share"],
            "loss_first": rows[0]["loss"],
            "loss_last": rows[-1]["loss"],
            "step_ms_median": 1000 * statistics.median(r["seconds"] for r in rows),
            "step_ms_max": 1000 * max(r["seconds"] for r in rows),
        }
        for phase, rows in phases.items()
    }
    record = {
        "setup": {
            "machine": "2-core CPU dev machine, shared",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "d_model": D_MODEL,
            "n_experts": 4,
            "top_k": 2,
            "router": "router.chrono",
            "remote": remote | {"address": "127.0.0.1:<port>"},
            "steps_per_phase": args.steps,
        },
        "phases": summary,
        "events": [
            {k: e[k] for k in ("step", "type", "message", "experts")}
            | {"reason": str(e.get("reason", "")).split(":")[0]}
            for e in events
        ],
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record["phases"], indent=2))


if __name__ == "__main__":
    main()
