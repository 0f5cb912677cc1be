"""Keepers as processes: capabilities enforced and audited by the kernel, bounded queues, and a
killed keeper that pauses its clock, is reported as Degraded and restarted while the run goes on."""

from __future__ import annotations

import os
import signal
import time

import pytest

from chronomoe.config import ChronoConfig, KernelConfig
from chronomoe.keeper_logic import fast_reflexes, mid_epochs, slow_scars
from chronomoe.keepers import Capability, KeeperSpec, KeeperSupervisor, Proposal
from chronomoe.kernel import Kernel
from mosaic.core.audit import AuditLog
from mosaic.core.config import unstructure_config


@pytest.fixture
def audit(tmp_path):
    (tmp_path / "keys").mkdir()
    return AuditLog(tmp_path / "audit.jsonl", key=b"k" * 32, checkpoint_path=tmp_path / "keys" / "audit.ckpt")


def test_a_proposal_outside_the_keepers_capability_is_refused_and_audited(audit) -> None:
    kernel = Kernel(KernelConfig(window_steps=10), audit)
    fast = Capability.for_clock("fast")
    assert kernel.submit(fast, Proposal("fast", "scar", "scar/0/prune", {"layer": 0}, 3)) == "refused"
    # a keeper cannot borrow another's capability either
    assert kernel.submit(fast, Proposal("slow", "reflex", "reflex/0/1", {}, 3)) == "refused"
    refusals = [r for r in audit.records() if r.kind == "kernel.refuse"]
    assert len(refusals) == 2 and "no capability for 'scar'" in refusals[0].data["reason"]
    assert not kernel.pending and not kernel.finalised
    assert kernel.submit(fast, Proposal("fast", "reflex", "reflex/0/1", {"layer": 0}, 3)) == "proposed"
    assert [w.key for w in kernel.pending] == ["reflex/0/1"]


def test_an_exhausted_write_budget_queues_keeper_edits(audit) -> None:
    kernel = Kernel(KernelConfig(window_steps=10, write_budget=1), audit)
    slow = Capability.for_clock("slow")
    assert kernel.submit(slow, Proposal("slow", "edit", "edit/a", {"layer": 0}, 1)) == "written"
    assert kernel.submit(slow, Proposal("slow", "edit", "edit/b", {"layer": 0}, 2)) == "queued"
    assert [w.key for w in kernel.advance(10, lambda w: True)] == ["edit/b"]


def test_builtin_keeper_logic_proposes_from_plain_snapshots() -> None:
    config = unstructure_config(ChronoConfig())
    kc = ChronoConfig().kernel
    strong = {"k": ChronoConfig().k_max, "phi_slow": 1.0, "tokens": kc.reflex_min_tokens, "flip": 0.0, "veto": 0.0}
    weak = {**strong, "veto": 1.0}
    fast = {"config": config, "layers": [{"layer": 0, "experts": [
        {"expert": 0, "crystallised": False, "evidence": strong},
        {"expert": 1, "crystallised": False, "evidence": weak},
        {"expert": 2, "crystallised": True, "evidence": strong}]}]}
    assert [p["key"] for p in fast_reflexes(fast)] == ["reflex/layer0/expert0"]
    mid = {"config": config, "step": 40, "layers": [{"layer": 0, "psi_mid": 0.9, "psi_slow": 0.2},
                                                     {"layer": 1, "psi_mid": 0.5, "psi_slow": 0.5}]}
    assert [p["payload"]["layer"] for p in mid_epochs(mid)] == [0]
    slow = {"config": config, "edits": [
        {"layer": 0, "action": "prune", "expert": 3, "f_before": 1.0, "f_after": 1.0 + 10 * kc.scar_delta_f},
        {"layer": 0, "action": "merge", "expert": 1, "f_before": 1.0, "f_after": 0.5}]}
    assert [p["key"] for p in slow_scars(slow)] == ["scar/layer0/prune/expert3"]


def _snapshot(clock: str) -> dict:
    config = unstructure_config(ChronoConfig())
    if clock == "mid":
        return {"config": config, "step": 0, "layers": [{"layer": 0, "psi_mid": 0.9, "psi_slow": 0.1}]}
    return {"config": config, "layers": [], "edits": []}


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_killing_a_keeper_pauses_its_clock_reports_degraded_and_restarts_it(audit) -> None:
    kernel = Kernel(KernelConfig(window_steps=1000, identity_budget=100), audit)
    events = []
    specs = [KeeperSpec("fast", "chronomoe.keeper_logic:fast_reflexes", interval=1),
             KeeperSpec("mid", "chronomoe.keeper_logic:mid_epochs", interval=5)]
    with KeeperSupervisor(specs, kernel.submit, events.append) as supervisor:
        mid = supervisor.handles["mid"]
        supervisor.tick(0, _snapshot)
        # ticks between the mid clock's intervals only collect what the keeper sent for step 0
        _wait_for(lambda: (supervisor.tick(1, _snapshot), bool(kernel.pending))[1])
        assert [w.kind for w in kernel.pending] == ["epoch"]
        first_pid = mid.process.pid
        os.kill(first_pid, signal.SIGKILL)
        _wait_for(lambda: not mid.process.is_alive())
        for step in range(2, 11):  # training goes on; the mid clock's next tick (5) finds it dead
            supervisor.tick(step, _snapshot)
        degraded = [e for e in events if e.type == "Degraded"]
        assert len(degraded) == 1 and degraded[0].payload["component"] == "keeper.mid"
        assert "crashed" in degraded[0].payload["reason"] and degraded[0].payload["step"] == 5
        assert supervisor.paused == {"mid": 1}
        assert mid.restarts == 1 and mid.process.is_alive() and mid.process.pid != first_pid
        _wait_for(lambda: (supervisor.tick(11, _snapshot), mid._outstanding == 0)[1])
    assert supervisor.handles["fast"].restarts == 0


def hang_forever(snapshot: dict) -> list:
    """A keeper logic that never answers (run inside the keeper process)."""
    time.sleep(3600)
    return []


def test_a_hung_keeper_is_restarted_and_training_never_waits(audit) -> None:
    kernel = Kernel(KernelConfig(window_steps=1000), audit)
    events = []
    spec = KeeperSpec("slow", f"{__name__}:hang_forever", interval=1, timeout_s=0.3, inbox_size=1)
    with KeeperSupervisor([spec], kernel.submit, events.append) as supervisor:
        started = time.monotonic()
        supervisor.tick(0, _snapshot)  # the keeper takes it and hangs
        for step in (1, 2, 3):  # its inbox fills: snapshots are dropped, training never waits
            supervisor.tick(step, _snapshot)
        assert time.monotonic() - started < 0.5
        assert supervisor.handles["slow"].dropped >= 1
        time.sleep(0.4)
        supervisor.tick(4, _snapshot)
        assert [e.payload["reason"] for e in events] == ["hung (no heartbeat for 0.3 s)"]
        assert supervisor.handles["slow"].restarts == 1


def test_malformed_keeper_output_is_refused_not_raised(audit) -> None:
    from chronomoe.keepers import _proposal

    kernel = Kernel(KernelConfig(window_steps=10), audit)
    slow = Capability.for_clock("slow")
    for body in (None, "scar", {"kind": 3}, {"kind": "scar", "key": "k", "payload": []}):
        assert kernel.submit(slow, _proposal("slow", 1, body)) == "refused"
    assert not kernel.pending and len([r for r in audit.records() if r.kind == "kernel.refuse"]) == 4
