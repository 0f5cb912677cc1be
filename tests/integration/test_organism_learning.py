"""Small-budget learning tests of the organism: the VM in control learns recall that depends on
READ_MEM, and CLEAR_MEM's erasure makes a forgotten key unanswerable. Each trains in-process on
CPU within about a minute on two cores."""

from __future__ import annotations

from pathlib import Path

from mosaic.runtime.training.run import run_preset

#: mosaic_vm shrunk to a CI budget: narrower, fewer pairs, fewer steps, a shorter teacher schedule.
TINY_VM = [
    "vars.n_pairs=2", "vars.batch_size=16", "vars.steps=300", "vars.threads=1",
    "trainer.checkpoint_every=0", "trainer.log_every=50", "trainer.warmup_steps=10",
    "curriculum.warmup_steps=20", "curriculum.cooldown_steps=40", "eval.samples=128",
]


def test_tiny_vm_recalls_and_needs_read_mem(tmp_path: Path) -> None:
    summary = run_preset("mosaic_vm", out=tmp_path, overrides=TINY_VM, show_progress=False)
    evaluation = summary["eval"]
    assert evaluation["answer_exact"] >= 0.9
    assert evaluation["ablations"]["opcode_off"]["READ_MEM"]["answer_exact"] < 0.2
    assert evaluation["ablations"]["memory_off"]["answer_exact"] < 0.2


def test_clear_makes_a_forgotten_key_answer_unknown(tmp_path: Path) -> None:
    """One of two written keys is forgotten (FORGET k, CLEAR_MEM on k): its query must be answered
    UNKNOWN, which only an erased memory allows; forcing CLEAR_MEM to NOP breaks exactly that."""
    overrides = [*TINY_VM, "dataset.forget_per_sample=1"]
    summary = run_preset("mosaic_vm", out=tmp_path, overrides=overrides, show_progress=False)
    evaluation = summary["eval"]
    assert evaluation["forget_exact"] >= 0.9
    assert evaluation["answer_exact"] >= 0.9
    assert evaluation["ablations"]["opcode_off"]["CLEAR_MEM"]["forget_exact"] < 0.2
