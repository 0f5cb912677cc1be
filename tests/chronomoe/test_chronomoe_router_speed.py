"""router.chrono's bookkeeping was rewritten for speed (issue 18): it must compute what it computed.

``chrono_golden.json`` holds a short closed-loop training run of ``router.chrono`` recorded with the
implementation before the rewrite (git 41dc816): every aux output of every step and the router's slow state
at the end. It was regenerated once, for an intended change: ``moe_flip_rate`` and the per-expert veto
counts are estimated on the metrics' token sample (``js_token_stride``) since then, which changes
them and the EMAs they feed (``disagreement``, ``expert_veto``) and nothing else. The run covers an expert warming in (entry offset) and an archived column. Regenerate
the file only for an intended change of what router.chrono computes:
``python tests/chronomoe/test_chronomoe_router_speed.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from chronomoe.config import ChronoConfig
from chronomoe.geometry import fisher_rao_distance
from chronomoe.router_state import (
    biased_selection_key,
    bridge_relevance,
    expert_softmax,
    js_divergence,
    total_variation,
)
from mosaic.core.plugins import get_registry

GOLDEN = Path(__file__).with_name("chrono_golden.json")


def closed_loop_trajectory(steps: int = 12) -> dict[str, object]:
    torch.manual_seed(7)
    # a fast loop and a tight veto, so that β moves routing and the veto bites within a few steps
    chrono = {
        "eta": 0.3,
        "k_max": 2.0,
        "deadband": 0.0,
        "veto_full": 0.02,
        "veto_zero": 0.2,
        "js_token_stride": 3,
    }
    router = {"type": "router.chrono", "chrono": chrono}
    config = {"d_model": 16, "n_experts": 8, "top_k": 2, "router": router, "emit_trace": True}
    moe = get_registry().build("layer.moe", config).train()
    columns = moe.router.columns
    with torch.no_grad():
        columns.entry_offset[3] = -0.5  # warming in
        columns.active[7] = False  # archived
    optimizer = torch.optim.SGD(moe.parameters(), lr=0.5)
    aux_per_step = []
    for _ in range(steps):
        x = torch.randn(2, 32, 16)
        optimizer.zero_grad()
        y = moe(x)
        aux = moe.aux_outputs()
        (y.square().mean() + aux["moe_aux_loss"]).backward()
        optimizer.step()
        aux_per_step.append(
            {name: value.detach().reshape(-1).tolist() for name, value in sorted(aux.items())}
        )
    state = {
        name: value.float().reshape(-1).tolist()
        for name, value in sorted(moe.router.state_dict().items())
        if not name.startswith("gate.")
    }
    return {"aux": aux_per_step, "state": state}


def test_router_chrono_computes_what_it_computed_before_the_rewrite():
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = closed_loop_trajectory()
    assert len(got["aux"]) == len(golden["aux"])
    for step, (have, want) in enumerate(zip(got["aux"], golden["aux"], strict=True)):
        assert sorted(have) == sorted(want), f"step {step}: aux keys changed"
        for name in want:
            torch.testing.assert_close(
                torch.tensor(have[name]),
                torch.tensor(want[name]),
                rtol=1e-4,
                atol=1e-5,
                msg=lambda m, step=step, name=name: f"step {step}, {name}: {m}",
            )
    # a buffer added after the golden run (preserving growth's families): every column its own family
    assert got["state"].pop("columns.family") == [float(e) for e in range(8)]
    assert sorted(got["state"]) == sorted(golden["state"])
    for name, want in golden["state"].items():
        torch.testing.assert_close(
            torch.tensor(got["state"][name]),
            torch.tensor(want),
            rtol=1e-4,
            atol=1e-5,
            msg=lambda m, name=name: f"state {name}: {m}",
        )
    # the loop was closed: β moved routing, and the veto bit
    assert any(value != 0 for value in golden["state"]["state.k"])
    assert max(step["moe_flip_rate"][0] for step in golden["aux"]) > 0.05
    assert any(0.05 < step["moe_veto"][0] < 0.95 for step in golden["aux"])


if __name__ == "__main__":
    torch.set_num_threads(1)
    GOLDEN.write_text(json.dumps(closed_loop_trajectory(), indent=None) + "\n", encoding="utf-8")


def _selection_key_as_written_before(clean_logits, beta, config):
    """biased_selection_key as it was written before the rewrite (token-major, one op per formula)."""
    p_clean = expert_softmax(clean_logits)
    p_proposed = expert_softmax(clean_logits + beta)
    relevance = bridge_relevance(total_variation(p_clean, p_proposed), config)
    key = clean_logits + relevance.unsqueeze(-1) * beta
    stride = config.js_token_stride
    p_sample, p_biased = p_clean[::stride], expert_softmax(key[::stride])
    metrics = {
        "js": js_divergence(p_sample, p_biased).mean(),
        "tv": total_variation(p_sample, p_biased).mean(),
        "fisher_rao": fisher_rao_distance(p_sample, p_biased).mean(),
        "flip_rate": (clean_logits[::stride].argmax(-1) != key[::stride].argmax(-1)).float().mean(),
        "veto": 1.0 - relevance.mean(),
    }
    return key, metrics, 1.0 - relevance


@pytest.mark.parametrize("stride", [1, 3, 8])
@pytest.mark.parametrize("scale", [0.0, 0.3, 3.0])
def test_biased_selection_key_matches_its_plain_formulas(stride, scale):
    torch.manual_seed(stride)
    config = ChronoConfig(js_token_stride=stride, veto_full=0.05, veto_zero=0.25)
    clean = torch.randn(257, 8) * 2.0
    clean[:, 5] = float("-inf")  # an archived column
    beta = torch.randn(8) * scale
    key, metrics, veto = biased_selection_key(clean, beta, config)
    want_key, want_metrics, want_veto = _selection_key_as_written_before(clean, beta, config)
    torch.testing.assert_close(key, want_key, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(veto, want_veto, rtol=1e-5, atol=1e-6)
    assert sorted(metrics) == sorted(want_metrics)
    for name, want in want_metrics.items():
        torch.testing.assert_close(metrics[name], want, rtol=1e-4, atol=1e-5, msg=name)
    assert torch.equal(key.topk(2, dim=-1).indices, want_key.topk(2, dim=-1).indices)
    if scale == 0.0:  # no bias: nothing moves
        assert (
            torch.equal(key, clean) and float(metrics["flip_rate"]) == 0.0 and float(metrics["veto"]) == 0.0
        )
