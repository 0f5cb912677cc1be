"""Remote experts inside a whole model (issue 22): a MOSAIC LM whose MoE feed-forwards share an expert
server keeps training when the server is killed, and uses the remote experts again when it returns."""

from __future__ import annotations

import signal
import time

import torch

from chronomoe.remote_server import launch
from mosaic.core.contract import keys
from mosaic.core.plugins import get_registry

V, B, T, D = 32, 2, 12, 16


def test_a_mosaic_lm_trains_through_the_loss_of_its_expert_server() -> None:
    torch.manual_seed(0)
    server, port = launch(1, D, timeout_s=30)
    try:
        remote = {"address": f"127.0.0.1:{port}", "experts": [3], "retry_initial_s": 0.1, "retry_max_s": 0.4}
        ffn = {
            "type": "layer.moe",
            "n_experts": 4,
            "top_k": 2,
            "router": {"type": "router.chrono"},
            "remote": remote,
        }
        block = {
            "d_model": D,
            "state_k": 2,
            "state_dim": 4,
            "mem_buckets": 8,
            "mem_key_dim": 8,
            "mem_dim": 8,
            "reg_slots": 0,
            "opcodes_enabled": False,
            "commitment_head_enabled": False,
            "ffn": ffn,
        }
        model = get_registry().build(
            "model.mosaic_lm", {"vocab_size": V, "n_layers": 2, "plugin_opcodes": False, "block": block}
        )
        ids = torch.randint(V, (B, T), generator=torch.Generator().manual_seed(0))
        batch = {keys.INPUT_IDS.name: ids, keys.TARGET_IDS.name: ids}
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        unreachable, remote_load = keys.MOE_UNREACHABLE_EXPERTS.name, keys.MOE_EXPERT_LOAD.name
        recorded: list[dict] = []  # what the trainer would append to the run's decisions.jsonl

        def step() -> dict[str, torch.Tensor]:
            out = model(batch)
            loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, V), ids.reshape(-1))
            optimizer.zero_grad()
            (loss + out.aux[keys.MOE_AUX_LOSS.name].sum()).backward()
            optimizer.step()
            recorded.extend(model.after_optimizer_step(len(recorded), optimizer))
            assert torch.isfinite(loss)
            return out.aux

        def recorded_events() -> list[tuple[str, int, str]]:
            return [(r["action"], r["layer"], r["source"]) for r in recorded]

        for _ in range(3):
            aux = step()
            assert aux[unreachable].tolist() == [0.0, 0.0] and bool((aux[remote_load][:, 3] > 0).all())
        server.send_signal(signal.SIGKILL)
        server.wait()
        for _ in range(3):
            aux = step()
            assert aux[unreachable].tolist() == [1.0, 1.0] and aux[remote_load][:, 3].tolist() == [0.0, 0.0]
        assert recorded_events() == [("degraded", 0, "remote_experts"), ("degraded", 1, "remote_experts")]
        assert "still here" in recorded[0]["event"]["message"] and recorded[0]["event"]["experts"] == [3]

        server, _ = launch(1, D, port=port, timeout_s=30)
        deadline = time.monotonic() + 20
        while aux[unreachable].sum() and time.monotonic() < deadline:
            time.sleep(0.05)
            aux = step()
        assert aux[unreachable].tolist() == [0.0, 0.0]
        assert sorted(recorded_events()[2:]) == [("restored", 0, "remote_experts"), ("restored", 1, "remote_experts")]
    finally:
        server.kill()
        server.wait()
