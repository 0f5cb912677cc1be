"""The sovereign core around the trainer-driven lifecycle: keepers propose from processes, the trainer
vets and the kernel decides; scars from harmful trials block later proposals; identity events are
reverted only by the audited identity-grade operation; the audit key stays out of the run dir."""

from __future__ import annotations

import pytest
import torch

from chronomoe.config import ChronoConfig, ClockConfig, KernelConfig, LifecycleConfig
from chronomoe.escalation import escalate_beta
from chronomoe.expert_registry import LifecycleError
from chronomoe.keepers import Capability, Proposal
from chronomoe.kernel import Kernel, KernelError
from chronomoe.sovereign import AUDIT_FILE, audit_key_path
from chronomoe.training import ChronoLifecycle
from chronomoe.training_config import ChronoLifecycleConfig, SovereignConfig
from mosaic.core.audit import AuditLog, verify_log
from mosaic.core.config import unstructure_config
from mosaic.core.plugins import get_registry


@pytest.fixture
def audit(tmp_path):
    (tmp_path / "keys").mkdir()
    return AuditLog(tmp_path / "audit.jsonl", key=b"k" * 32, checkpoint_path=tmp_path / "keys" / "audit.ckpt")


def kinds(audit: AuditLog) -> list[str]:
    return [r.kind for r in audit.records()]


def test_a_flooding_keeper_is_refused_past_its_proposal_budget(audit) -> None:
    kernel = Kernel(KernelConfig(window_steps=10, proposal_budget=2, identity_budget=10), audit)
    fast = Capability.for_clock("fast")
    outcomes = [
        kernel.submit(fast, Proposal("fast", "reflex", f"reflex/{i}", {"layer": 0}, 1)) for i in range(4)
    ]
    assert outcomes == ["proposed", "proposed", "refused", "refused"]
    refusals = [r.data["reason"] for r in audit.records() if r.kind == "kernel.refuse"]
    assert len(refusals) == 2 and "spent its 2 proposals" in refusals[0]
    kernel.advance(10, lambda w: True)  # a new window restores the budget
    assert kernel.submit(fast, Proposal("fast", "reflex", "reflex/9", {"layer": 0}, 11)) == "proposed"


def test_the_trainers_vet_replaces_or_refuses_a_keepers_payload(audit) -> None:
    kernel = Kernel(KernelConfig(window_steps=10), audit)
    kernel.vet = lambda p: "no trial on record" if p.payload.get("claim") else {"layer": 0, "trusted": True}
    slow = Capability.for_clock("slow")
    assert kernel.submit(slow, Proposal("slow", "scar", "scar/a", {"layer": 0, "claim": 9.0}, 1)) == "refused"
    assert (
        kernel.submit(slow, Proposal("slow", "scar", "scar/b", {"layer": 0, "made_up": 1}, 1)) == "proposed"
    )
    assert kernel.pending[0].payload == {"layer": 0, "trusted": True, "keeper": "slow"}
    assert kernel.submit(slow, Proposal("slow", "scar", "scar/b", {"layer": 0}, 2)) == "duplicate"
    assert [r.data["reason"] for r in audit.records() if r.kind == "kernel.refuse"] == ["no trial on record"]


def test_identity_events_revert_only_through_the_audited_identity_operation(audit) -> None:
    kernel = Kernel(KernelConfig(window_steps=10), audit)
    kernel.propose("scar", "scar/layer0/merge/expert3", {"layer": 0, "action": "merge", "expert": 3})
    kernel.advance(10, lambda w: True)
    assert kernel.forbidden(0, "merge", 3) == "scar/layer0/merge/expert3"
    assert kernel.forbidden(0, "merge", 2) is None and kernel.forbidden(0, "prune", 3) is None
    with pytest.raises(KernelError, match="irreversible"):
        kernel.revert("scar/layer0/merge/expert3")
    with pytest.raises(KernelError, match="authority and a reason"):
        kernel.revert_identity("scar/layer0/merge/expert3", authority="ops", reason=" ")
    kernel.revert_identity("scar/layer0/merge/expert3", authority="ops", reason="mis-measured trial")
    assert kernel.forbidden(0, "merge", 3) is None
    revert = [r.data for r in audit.records() if r.kind == "identity.revert"]
    assert revert == [{**revert[0], "authority": "ops", "reason": "mis-measured trial"}]


def test_the_audit_key_may_not_live_in_the_run_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MOSAIC_AUDIT_KEY_FILE", raising=False)
    run = tmp_path / "run"
    with pytest.raises(LifecycleError, match="inside the run directory"):
        audit_key_path(SovereignConfig(key_file=str(run / "audit.key")), run)
    monkeypatch.setenv("MOSAIC_AUDIT_KEY_FILE", str(run / "sub" / "k"))
    with pytest.raises(LifecycleError, match="inside the run directory"):
        audit_key_path(SovereignConfig(), run)
    monkeypatch.setenv("MOSAIC_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("MOSAIC_AUDIT_KEY_FILE")
    assert audit_key_path(SovereignConfig(), run) == tmp_path / "keys" / "audit.key"


class HarmfulEdits:
    """A probe whose every edit raises the held-out loss by 1 nat (a harmful trial)."""

    total_steps = 10_000

    def trial_losses(self, edit, relax_steps: int) -> tuple[float, float | None]:
        if edit is None:
            return 1.0, None
        edit()
        return 2.0, None


def _config() -> ChronoConfig:
    return ChronoConfig(
        clocks=ClockConfig(0.6, 0.8, 0.9),
        prune_min_tokens=50,
        lifecycle=LifecycleConfig(
            mid_interval=5,
            slow_interval=10,
            cooldown_steps=10,
            warmup_steps=5,
            relaxation_steps=10,
            min_delta_f=0.0,
            lambda_n=0.0,
        ),
        kernel=KernelConfig(
            window_steps=5,
            identity_budget=8,
            reflex_min_tokens=0,
            reflex_min_phi=-1.0,
            reflex_max_flip=1.0,
            reflex_max_veto=1.0,
            reflex_k_fraction=0.01,
            scar_delta_loss=0.5,
        ),
    )


def test_keepers_drive_scars_and_reflexes_in_a_training_loop(tmp_path) -> None:
    """Keeper processes propose; a harmful trial scars its edit for its expert, later proposals of it
    are blocked and audited; a crystallised reflex keeps its beta through the beta update and
    escalation; the log verifies."""
    config = _config()
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
    key_file = tmp_path / "keys" / "audit.key"
    lifecycle = ChronoLifecycle(
        ChronoLifecycleConfig(n_active=6, kernel=SovereignConfig(fast_interval=5, key_file=str(key_file)))
    )
    lifecycle.attach([moe], optimizer, HarmfulEdits(), run_dir=tmp_path / "run")
    records = []
    try:
        for step in range(60):
            x = torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(step))
            loss = moe(x).square().mean() + moe.aux_outputs()["moe_aux_loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            records += lifecycle.step()
            if step % 10 == 9:  # give the keeper processes time to answer, as a real step would
                import time

                time.sleep(1.0 if step < 20 else 0.3)
        # the trainer's vet: a keeper's numbers are replaced by the trainer's record, or refused
        core = lifecycle.core
        assert core is not None
        trial = core.system.trial_log[0]
        claim = {"layer": 0, "action": trial["action"], "expert": trial["expert"], "delta_loss": -5.0}
        vetted = core._vet(Proposal("slow", "scar", "scar/claimed", claim, 60))
        assert isinstance(vetted, dict) and vetted["delta_loss"] == pytest.approx(1.0)
        untried = {"layer": 0, "action": "merge", "expert": 99, "delta_loss": 9.0}
        assert "no trial" in core._vet(Proposal("slow", "scar", "scar/untried", untried, 60))
        assert "not live" in core._vet(Proposal("fast", "reflex", "reflex/x", {"layer": 0, "expert": 99}, 60))
        assert "no layer" in core._vet(Proposal("mid", "epoch", "epoch/x", {"layer": 7}, 60))
        # the identity-grade operation undoes a scar's effect, and only it can
        scar = next(w for w in core.kernel.finalised.values() if w.kind == "scar")
        forbidden = (0, scar.payload["action"], scar.payload["expert"])
        assert forbidden in core.system.expert_scars
        with pytest.raises(KernelError):
            core.kernel.revert(scar.key)
        core.revert_identity(scar.key, authority="test", reason="the trial was mis-measured")
        assert forbidden not in core.system.expert_scars and not core.kernel.is_final(scar.key)
    finally:
        lifecycle.close()
    actions = [r["action"] for r in records]
    assert "scar_formed" in actions and "blocked_by_scar" in actions, actions
    assert actions.index("scar_formed") < actions.index("blocked_by_scar")
    assert not any(a in ("prune", "merge", "split", "spawn") for a in actions)  # every trial was harmful
    audit = AuditLog(tmp_path / "run" / AUDIT_FILE)
    log = kinds(audit)
    assert "identity.scar" in log and "kernel.block" in log
    scars = [r.data["payload"] for r in audit.records() if r.kind == "identity.scar"]
    assert all(s["delta_loss"] == pytest.approx(1.0) and s["keeper"] == "slow" for s in scars)
    assert "identity.reflex" in log
    crystallised = moe.router.state.crystallised.clone()
    k = moe.router.state.k.clone()
    moe(torch.randn(2, 8, 16))  # the beta update (a training forward)
    for action in ("decay_beta", "reset_beta"):
        escalate_beta(moe.router.state, action, 0.5)
    torch.testing.assert_close(moe.router.state.k[crystallised], k[crystallised])
    assert crystallised.any() and (moe.router.state.k[~crystallised] == 0).all() and k[~crystallised].any()
    assert verify_log(tmp_path / "run" / AUDIT_FILE, key=key_file.read_bytes()).ok


def test_run_directory_files_planted_as_links_or_fifos_are_never_written_through(tmp_path) -> None:
    """keepers.json is replaced atomically (a symbolic link under its name is replaced, its target
    untouched; a FIFO is replaced, never waited on); the signatures and decisions logs refuse a
    link or FIFO with an error naming the file instead of appending outside the run directory."""
    import os

    from chronomoe.sovereign import KEEPERS_FILE, SIGNATURES_FILE
    from mosaic.core.errors import NotPlainFileError

    config = _config()
    torch.manual_seed(0)
    moe = get_registry().build("layer.moe", {"d_model": 16, "capacity_factor": None, "router": {
        "type": "router.chrono", "track_roles": True, "chrono": unstructure_config(config)}})
    optimizer = torch.optim.AdamW(moe.parameters(), lr=1e-2)
    run = tmp_path / "run"
    run.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / KEEPERS_FILE).symlink_to(victim)
    os.mkfifo(run / SIGNATURES_FILE)
    lifecycle = ChronoLifecycle(ChronoLifecycleConfig(
        n_active=6, kernel=SovereignConfig(fast_interval=5, key_file=str(tmp_path / "keys" / "audit.key"))))
    lifecycle.attach([moe], optimizer, HarmfulEdits(), run_dir=run)
    try:
        assert victim.read_text() == "precious"
        assert (run / KEEPERS_FILE).is_file() and not (run / KEEPERS_FILE).is_symlink()
        with pytest.raises(NotPlainFileError, match=rf"{SIGNATURES_FILE} is not a regular file \(a FIFO"):
            for step in range(config.lifecycle.mid_interval):
                x = torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(step))
                loss = moe(x).square().mean() + moe.aux_outputs()["moe_aux_loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                lifecycle.step()
    finally:
        lifecycle.close()
    assert victim.read_text() == "precious"
