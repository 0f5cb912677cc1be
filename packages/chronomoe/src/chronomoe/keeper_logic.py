"""What each built-in keeper notices, run inside its keeper process (see :mod:`chronomoe.keepers`).

Each function maps a snapshot (plain data built by the trainer at that clock's interval) to a list
of proposals ``{kind, key, payload}``. They decide nothing: the kernel checks the keeper's
capability and budget, and identity proposals must still hold one window later.

Snapshot shapes (``config`` is the run's ChronoConfig as plain data):

- fast: ``{"config": {...}, "layers": [{"layer": l, "experts": [{"expert": e, "crystallised": bool,
  "evidence": {k, phi_slow, tokens, flip, veto}}]}]}``
- mid: ``{"config": {...}, "layers": [{"layer": l, "psi_mid": x, "psi_slow": y}]}``
- slow: ``{"config": {...}, "trials": [{"step": s, "layer": l, "action": a, "expert": e,
  "delta_loss": d}], "edits": [{"layer": l, "action": a, "expert": e, "f_before": x, "f_after": y}]}``
  (``trials``: the counterfactual trials scored since the last snapshot, ``chronomoe.evidence``)

Keys name what they would write, so a repeated proposal is recognised (an epoch is keyed by its
kernel window: at most one per layer and window).
"""

from __future__ import annotations

from typing import Any

from chronomoe.config import ChronoConfig
from chronomoe.identity import gates_from_evidence, is_scar
from mosaic.core.config import structure_config


def _config(snapshot: dict[str, Any]) -> ChronoConfig:
    return structure_config(snapshot.get("config", {}), ChronoConfig)


def fast_reflexes(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    config = _config(snapshot)
    proposals = []
    for layer in snapshot.get("layers", []):
        for expert in layer.get("experts", []):
            if expert.get("crystallised"):
                continue
            gates = gates_from_evidence(expert["evidence"], config)
            if all(gates.values()):
                key = f"reflex/layer{layer['layer']}/expert{expert['expert']}"
                proposals.append({"kind": "reflex", "key": key,
                                  "payload": {"layer": layer["layer"], "expert": expert["expert"], "gates": gates}})
    return proposals


def mid_epochs(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    config = _config(snapshot)
    proposals = []
    for layer in snapshot.get("layers", []):
        shift = abs(layer["psi_mid"] - layer["psi_slow"])
        if shift >= config.kernel.epoch_psi_shift:
            window = int(snapshot.get("step", 0)) // config.kernel.window_steps
            key = f"epoch/layer{layer['layer']}/window{window}"
            proposals.append({"kind": "epoch", "key": key,
                              "payload": {"layer": layer["layer"], "psi_mid": layer["psi_mid"],
                                          "psi_slow": layer["psi_slow"]}})
    return proposals


def slow_scars(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    config = _config(snapshot)
    proposals = []
    for trial in snapshot.get("trials", []):
        if trial["delta_loss"] is not None and trial["delta_loss"] > config.kernel.scar_delta_loss:
            key = f"scar/layer{trial['layer']}/{trial['action']}/expert{trial['expert']}"
            proposals.append({"kind": "scar", "key": key, "payload": dict(trial)})
    for edit in snapshot.get("edits", []):
        if is_scar(edit["f_before"], edit["f_after"], config):
            key = f"scar/layer{edit['layer']}/{edit['action']}/expert{edit.get('expert')}"
            proposals.append({"kind": "scar", "key": key, "payload": dict(edit)})
    return proposals
