"""Small-budget learning test of event-native recall: ``mosaic_event_native`` shrunk to short traces
(2 facts, 1 noise event each, no negotiation or replay) learns to answer held-out MemoryQuery events
at teacher forcing 0 with no hint at the answers, and only through its memory: with the memory read
zeroed, or READ_MEM forced to NOP, the answers fall to chance. Trains in-process on CPU in about a
minute on two cores (the full preset's figures are in docs/organism.md)."""

from __future__ import annotations

from pathlib import Path

from mosaic.runtime.training.run import run_preset

#: mosaic_event_native at a CI budget: 2 facts per trace in a 1088-byte block, 450 updates of 2 traces
#: (more updates rather than bigger batches: 250 of 4 stayed at chance), a shorter teacher schedule.
TINY_EVENTS = [
    "vars.negotiation_pairs=0",
    "dataset.n_pairs=2",
    "dataset.distractor_events=1",
    "dataset.sleep_replay_per_pair=0",
    "dataset.block_size=1088",
    "vars.batch_size=2",
    "vars.steps=450",
    "vars.threads=1",
    "trainer.warmup_steps=10",
    "curriculum.warmup_steps=40",
    "curriculum.cooldown_steps=80",
    "trainer.checkpoint_every=0",
    "eval.samples=32",
]


def test_tiny_event_native_recalls_through_memory(tmp_path: Path) -> None:
    summary = run_preset("mosaic_event_native", out=tmp_path, overrides=TINY_EVENTS, show_progress=False)
    evaluation = summary["eval"]
    assert evaluation["answer_exact"] >= 0.25  # whole two-digit answers; chance is about 0.01
    assert evaluation["ablations"]["memory_off"]["answer_exact"] <= 0.05
    assert evaluation["ablations"]["opcode_off"]["READ_MEM"]["answer_exact"] <= 0.05
