import json

import pytest
import torch

from chronomoe.config import ChronoConfig, ClockConfig, KernelConfig, LifecycleConfig
from chronomoe.kernel import Kernel, KernelError
from chronomoe.system import ChronoSystem
from mosaic.core.audit import AuditLog, canonical_json, record_hash, verify_log
from mosaic.core.config import unstructure_config
from mosaic.core.plugins import get_registry


@pytest.fixture
def audit(tmp_path):
    (tmp_path / "keys").mkdir()  # the checkpoint is kept outside the log's directory
    return AuditLog(tmp_path / "audit.jsonl", key=b"k" * 32, checkpoint_path=tmp_path / "keys" / "audit.ckpt")


def kinds(audit):
    return [r.kind for r in audit.records()]


def test_over_budget_writes_queue_and_finalise_in_a_later_window(audit):
    kernel = Kernel(KernelConfig(window_steps=10, write_budget=2), audit)
    assert kernel.write("edit", "a", {"layer": 0}) and kernel.write("edit", "b", {"layer": 0})
    assert not kernel.write("edit", "c", {"layer": 0})  # over budget: queued, not final
    assert not kernel.is_final("c") and [w.key for w in kernel.queue] == ["c"]
    assert kernel.advance(5, lambda w: True) == []  # same window
    finalised = kernel.advance(10, lambda w: True)
    assert [w.key for w in finalised] == ["c"] and kernel.is_final("c")
    assert kinds(audit) == ["kernel.write", "kernel.write", "kernel.queue", "kernel.write"]


def test_identity_proposal_is_finalised_only_if_its_evidence_persists(audit):
    kernel = Kernel(KernelConfig(window_steps=10, identity_budget=5), audit)
    kernel.propose("reflex", "reflex/0/1", {"layer": 0, "expert": 1})
    kernel.propose("scar", "scar/0/prune", {"layer": 0, "action": "prune"})
    assert not kernel.is_final("reflex/0/1")
    assert kernel.advance(9, lambda w: True) == []  # still window 0: nothing finalised early
    persists = {"reflex/0/1": True, "scar/0/prune": False}
    finalised = kernel.advance(10, lambda w: persists[w.key])
    assert [w.key for w in finalised] == ["reflex/0/1"]
    assert kernel.is_final("reflex/0/1") and not kernel.is_final("scar/0/prune")
    assert kinds(audit) == ["kernel.propose", "kernel.propose", "identity.reflex", "kernel.lapse"]


def test_identity_budget_queues_identity_events(audit):
    kernel = Kernel(KernelConfig(window_steps=1, identity_budget=1), audit)
    kernel.propose("epoch", "e1", {"layer": 0})
    kernel.propose("epoch", "e2", {"layer": 0})
    assert [w.key for w in kernel.advance(1, lambda w: True)] == ["e1"]
    assert [w.key for w in kernel.advance(2, lambda w: True)] == ["e2"]


def test_only_ordinary_writes_are_reversible(audit):
    kernel = Kernel(KernelConfig(window_steps=1), audit)
    kernel.write("edit", "edit/1", {"layer": 0})
    kernel.revert("edit/1")
    assert not kernel.is_final("edit/1")
    kernel.propose("scar", "scar/x", {"layer": 0})
    kernel.advance(1, lambda w: True)
    with pytest.raises(KernelError, match="irreversible"):
        kernel.revert("scar/x")
    with pytest.raises(KernelError, match="identity event"):
        kernel.write("scar", "scar/y", {})
    with pytest.raises(KernelError, match="only identity events"):
        kernel.propose("edit", "edit/2", {})


def test_kernel_state_round_trips(audit):
    kernel = Kernel(KernelConfig(window_steps=10, write_budget=0), audit)
    kernel.write("edit", "q", {"layer": 0})
    kernel.propose("epoch", "p", {"layer": 0})
    other = Kernel(KernelConfig(window_steps=10, write_budget=0), audit)
    other.load_state_dict(json.loads(json.dumps(kernel.state_dict())))
    assert other.state_dict() == kernel.state_dict()


def _lines(path):
    return path.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "truncate", "rehash"])
def test_tampering_with_the_kernels_audit_log_is_detected(tmp_path, audit, tamper):
    kernel = Kernel(KernelConfig(window_steps=1, write_budget=1), audit)
    for i in range(4):
        kernel.write("edit", f"edit/{i}", {"layer": 0, "i": i})
    assert verify_log(audit.path, key=b"k" * 32, checkpoint_path=audit.checkpoint_path).ok
    lines = _lines(audit.path)
    if tamper == "edit":
        lines[1] = lines[1].replace(b'"i":1', b'"i":7')
    elif tamper == "delete":
        del lines[1]
    elif tamper == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper == "truncate":
        lines = lines[:-1]
    else:  # rewrite a record and re-hash the whole chain consistently
        records = [json.loads(line) for line in lines]
        records[1]["data"]["payload"]["i"] = 9
        prev = records[0]["prev"]
        for record in records:
            record["prev"] = prev
            body = {k: record[k] for k in ("seq", "ts", "kind", "data", "prev")}
            record["hash"] = prev = record_hash(body)
        lines = [canonical_json(r) + b"\n" for r in records]
    audit.path.write_bytes(b"".join(lines))
    report = verify_log(audit.path, key=b"k" * 32, checkpoint_path=audit.checkpoint_path)
    assert not report.ok


def test_system_routes_edits_and_identity_events_through_the_kernel(tmp_path, audit):
    config = ChronoConfig(
        clocks=ClockConfig(0.6, 0.8, 0.9),
        prune_min_tokens=50,
        lifecycle=LifecycleConfig(
            mid_interval=5,
            slow_interval=10,
            cooldown_steps=10,
            warmup_steps=5,
            relaxation_steps=10,
            min_delta_f=0.0, lambda_n=0.0,
        ),
        kernel=KernelConfig(
            window_steps=10,
            write_budget=1,
            identity_budget=1,
            reflex_min_tokens=0,
            reflex_min_phi=-1.0,
            reflex_max_flip=1.0,
            reflex_max_veto=1.0,
            reflex_k_fraction=0.01,
        ),
    )
    torch.manual_seed(0)
    moe = get_registry().build(
        "layer.moe",
        {
            "d_model": 16,
            "capacity_factor": None,
            "router": {"type": "router.chrono", "track_roles": True, "chrono": unstructure_config(config)},
        },
    )
    optimizer = torch.optim.AdamW(moe.parameters(), lr=1e-2)
    kernel = Kernel(config.kernel, audit)
    system = ChronoSystem([moe], config, optimizer=optimizer, n_active=6, kernel=kernel)
    actions = []
    for step in range(40):
        x = torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(step))
        loss = moe(x).square().mean() + moe.aux_outputs()["moe_aux_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        report = system.step()
        actions += [r.action for r in report.control + report.actions]
    assert "propose_reflex" in actions and "reflex_crystallised" in actions
    crystallised = moe.router.state.crystallised
    assert crystallised.any()
    k_before = moe.router.state.k.clone()
    moe(torch.randn(2, 8, 16))
    torch.testing.assert_close(moe.router.state.k[crystallised], k_before[crystallised])
    assert "identity.reflex" in kinds(audit)
    edits = [a for a in actions if a in ("prune", "merge", "split", "spawn")]
    assert len(edits) == kinds(audit).count("kernel.write")
    assert verify_log(audit.path, key=b"k" * 32, checkpoint_path=audit.checkpoint_path).ok
