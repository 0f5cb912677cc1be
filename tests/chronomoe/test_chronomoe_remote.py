"""Sovereignty (issue 22): the router stays local while experts are served by another process over
gRPC; killing the expert server mid-run masks its experts, emits Degraded and training goes on; the
experts come back when the server does. Payloads are safetensors, bounded and checked."""

from __future__ import annotations

import pickle
import signal
import struct
import subprocess
import time
from concurrent import futures

import grpc
import pytest
import torch
from safetensors.torch import save

from chronomoe.config import MoEConfig, RemoteExpertsConfig
from chronomoe.experts import SwiGLUExperts
from chronomoe.remote import ExpertsUnreachable, HybridExperts, RemoteExperts
from chronomoe.remote_server import ExpertService, launch, serve
from chronomoe.remote_wire import (
    DESCRIBE,
    FORWARD,
    SERVICE,
    RemoteExpertError,
    channel_options,
    decode,
    encode,
)
from mosaic.core.config import structure_config
from mosaic.core.contract import keys
from mosaic.core.errors import ConfigError
from mosaic.core.plugins import get_registry

D_MODEL = 16
UNREACHABLE = keys.MOE_UNREACHABLE_EXPERTS.name
LOAD = keys.MOE_EXPERT_LOAD.name


def start_server(port: int = 0) -> tuple[subprocess.Popen[str], int]:
    """``python -m chronomoe.remote_server`` in a subprocess; returns it once it listens."""
    return launch(2, D_MODEL, port=port, seed=1, timeout_s=30)


def remote_layer(port: int, router: str = "router.chrono"):
    return get_registry().build(
        "layer.moe",
        {
            "d_model": D_MODEL,
            "n_experts": 4,
            "top_k": 2,
            "router": {"type": router},
            "remote": {
                "address": f"127.0.0.1:{port}",
                "experts": [2, 3],
                "call_timeout_s": 2.0,
                "probe_timeout_s": 0.5,
                "retry_initial_s": 0.1,
                "retry_max_s": 0.4,
            },
        },
    )


class Run:
    """A few training steps of one layer on a fixed regression target."""

    def __init__(self, layer) -> None:
        torch.manual_seed(0)
        self.layer = layer
        self.x, self.y = torch.randn(4, 8, D_MODEL), torch.randn(4, 8, D_MODEL)
        self.optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
        self.losses: list[float] = []
        self.step_seconds: list[float] = []

    def step(self) -> dict[str, torch.Tensor]:
        start = time.monotonic()
        out = self.layer(self.x)
        loss = (out - self.y).square().mean() + self.layer.aux_outputs()[keys.MOE_AUX_LOSS.name]
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step_seconds.append(time.monotonic() - start)
        self.losses.append(float(loss.detach()))
        return self.layer.aux_outputs()


def remote_share(aux: dict[str, torch.Tensor]) -> float:
    return float(aux[LOAD][2:].sum())


@pytest.mark.parametrize("router", ["router.chrono", "router.loss_free"])
def test_killing_the_expert_server_degrades_routing_and_the_experts_come_back(router: str) -> None:
    server, port = start_server()
    try:
        layer = remote_layer(port, router)
        events = layer.experts.client.events
        run = Run(layer)
        for _ in range(4):
            aux = run.step()
            assert float(aux[UNREACHABLE]) == 0 and remote_share(aux) > 0  # remote experts in use
        assert layer.experts.client.calls >= 4 and not events

        gate_before = layer.router.gate.weight.detach().clone()
        local_before = layer.experts.local.w_up.detach().clone()
        server.send_signal(signal.SIGKILL)
        server.wait()
        for _ in range(4):
            aux = run.step()
            # masked: routing among the reachable local experts only, and training goes on
            assert float(aux[UNREACHABLE]) == 2 and remote_share(aux) == 0
        assert all(torch.isfinite(torch.tensor(run.losses)))
        assert not torch.equal(layer.router.gate.weight, gate_before)
        assert not torch.equal(layer.experts.local.w_up, local_before)
        assert [e.type for e in events] == ["Degraded"]
        assert events[0].payload["message"] == "still here, can't reach experts e2, e3"
        assert events[0].payload["experts"] == [2, 3] and "UNAVAILABLE" in events[0].payload["reason"]
        # no step waits on the dead server longer than one probe and one call deadline
        assert max(run.step_seconds[4:]) < 0.5 + 2.0

        server, _ = start_server(port)
        deadline = time.monotonic() + 20
        while float(aux[UNREACHABLE]) and time.monotonic() < deadline:
            time.sleep(0.05)
            aux = run.step()
        assert float(aux[UNREACHABLE]) == 0, "the experts did not come back with their server"
        calls = layer.experts.client.calls
        aux = run.step()
        assert remote_share(aux) > 0 and layer.experts.client.calls == calls + 1
        assert [e.type for e in events] == ["Degraded", "Restored"]
        assert events[1].payload["message"] == "experts e2, e3 are back"
    finally:
        server.kill()
        server.wait()


def test_remote_experts_are_served_frozen_and_the_router_still_learns() -> None:
    """The documented gradient contract: no gradient crosses the wire; the local experts and the
    router (whose gates weigh the remote outputs) get theirs."""
    server, port = start_server()
    try:
        layer = remote_layer(port, "router.topk")
        assert layer.experts.refresh() == [True] * 4
        slots = torch.randn(4, 3, D_MODEL, requires_grad=True)
        out = layer.experts(slots)
        (remote_grad,) = torch.autograd.grad(out[2:].sum(), slots, retain_graph=True)
        (local_grad,) = torch.autograd.grad(out[:2].sum(), slots)
        assert remote_grad.abs().sum() == 0 and local_grad[:2].abs().sum() > 0
        assert out[2:].abs().sum() > 0  # the remote experts did compute
        layer(torch.randn(2, 8, D_MODEL)).square().sum().backward()
        assert layer.router.gate.weight.grad.abs().sum() > 0
        assert layer.experts.local.w_down.grad.abs().sum() > 0
    finally:
        server.kill()
        server.wait()


class SlowService(ExpertService):
    def run(self, request: bytes) -> torch.Tensor:
        time.sleep(1.0)
        return super().run(request)


def test_a_hung_server_costs_one_deadline_then_the_experts_are_masked() -> None:
    torch.manual_seed(0)
    experts = SwiGLUExperts(2, D_MODEL, 2 * D_MODEL)
    slow = SlowService(experts)
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            FORWARD: grpc.unary_unary_rpc_method_handler(slow.forward),
            DESCRIBE: grpc.unary_unary_rpc_method_handler(slow.describe),
        },
    )
    hung = grpc.server(futures.ThreadPoolExecutor(2), handlers=[handler], options=channel_options())
    port = hung.add_insecure_port("127.0.0.1:0")
    hung.start()
    try:
        config = RemoteExpertsConfig(
            f"127.0.0.1:{port}",
            (2, 3),
            call_timeout_s=0.2,
            probe_timeout_s=0.2,
            retry_initial_s=60.0,
            retry_max_s=60.0,
        )
        layer = HybridExperts(4, D_MODEL, 2 * D_MODEL, config)
        assert layer.refresh() == [True] * 4  # Describe is quick: the server looks up
        start = time.monotonic()
        with pytest.raises(ExpertsUnreachable, match="DEADLINE_EXCEEDED"):
            layer(torch.randn(4, 3, D_MODEL))
        assert time.monotonic() - start < 0.9  # the deadline, not the server's 1 s
        assert layer.refresh() == [True, True, False, False]  # masked; next probe in 60 s
        assert layer.client.events[0].type == "Degraded"
    finally:
        hung.stop(None)


def test_probes_back_off_while_the_server_stays_away() -> None:
    now = [0.0]
    config = RemoteExpertsConfig("127.0.0.1:1", (1,), retry_initial_s=1.0, retry_max_s=4.0)
    client = RemoteExperts(config, D_MODEL, clock=lambda: now[0])
    probes: list[float] = []
    real = client._describe

    def counting(request: bytes, timeout: float) -> bytes:
        probes.append(now[0])
        return real(request, timeout=timeout)

    client._describe = counting
    while now[0] < 20.0:
        assert client.refresh() is False
        now[0] += 0.25
    assert probes == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 19.0]  # 1, 2, 4 s, then capped at retry_max_s
    assert [e.type for e in client.events] == ["Degraded"]  # reported once, not at every probe
    client.close()


def test_the_wire_never_unpickles_and_bounds_every_payload() -> None:
    good = encode({"out": torch.zeros(2, 3, 4)})
    assert decode(good, {"out": (torch.float32, 3)})["out"].shape == (2, 3, 4)
    for blob, why in [
        (pickle.dumps({"out": torch.zeros(2)}), "header|not valid safetensors"),
        (struct.pack("<Q", 2) + b"{x", "not valid safetensors"),
        (b"\x00" * 4, "too short"),
        (struct.pack("<Q", 1 << 40) + b"{}", "header"),
        (
            save({"out": torch.zeros(2, 3, 4)}, metadata={"padding": "x" * 5000}),
            "header of .* over the 4096 limit",
        ),
        (encode({"out": torch.zeros(2, 3, 4, dtype=torch.float64)}), "float32 of rank 3"),
        (encode({"out": torch.zeros(2, 3)}), "rank 3"),
        (encode({"out": torch.zeros(1, 1, 1), "extra": torch.zeros(1)}), "must hold"),
    ]:
        with pytest.raises(RemoteExpertError, match=why):
            decode(blob, {"out": (torch.float32, 3)})
    service = ExpertService(SwiGLUExperts(2, D_MODEL, 8))
    with pytest.raises(RemoteExpertError, match="expert indices"):
        service.run(encode({"slots": torch.zeros(1, 2, D_MODEL), "experts": torch.tensor([5])}))
    with pytest.raises(RemoteExpertError, match="Forward takes"):
        service.run(encode({"slots": torch.zeros(1, 2, D_MODEL + 1), "experts": torch.tensor([0])}))


def test_remote_config_leaves_routing_defined_without_the_server() -> None:
    base = {"d_model": 8, "n_experts": 4, "top_k": 2}
    with pytest.raises(ConfigError, match="at least top_k"):
        structure_config({**base, "remote": {"address": "h:1", "experts": [1, 2, 3]}}, MoEConfig)
    with pytest.raises(ConfigError, match="below n_experts"):
        structure_config({**base, "remote": {"address": "h:1", "experts": [4]}}, MoEConfig)
    with pytest.raises(ConfigError, match="repeat"):
        structure_config({**base, "remote": {"address": "h:1", "experts": [3, 3]}}, MoEConfig)
    with pytest.raises(ConfigError, match="host:port"):
        structure_config({**base, "remote": {"address": "nowhere", "experts": [3]}}, MoEConfig)


@pytest.mark.parametrize("dispatch", ["capacity", "sorted"])
def test_remote_experts_compute_what_the_same_experts_would_locally(dispatch: str) -> None:
    torch.manual_seed(0)
    served = SwiGLUExperts(2, D_MODEL, 2 * D_MODEL)
    server, port = serve(served)
    try:
        spec = {
            "d_model": D_MODEL,
            "n_experts": 4,
            "top_k": 2,
            "capacity_factor": None,
            "dispatch": dispatch,
            "router": {"type": "router.topk"},
        }
        hybrid = get_registry().build(
            "layer.moe", {**spec, "remote": {"address": f"127.0.0.1:{port}", "experts": [2, 3]}}
        )
        local = get_registry().build("layer.moe", spec)
        local.router.load_state_dict(hybrid.router.state_dict())
        with torch.no_grad():
            for name, weight in zip(("w_gate", "w_up", "w_down"), served.weights(), strict=True):
                mine = getattr(local.experts, name)
                mine[:2] = getattr(hybrid.experts.local, name)
                mine[2:] = weight
        x = torch.randn(2, 6, D_MODEL)
        torch.testing.assert_close(hybrid(x), local(x))
        assert hybrid.experts.client.calls >= 1 and not hybrid.experts.client.events
    finally:
        server.stop(None)
