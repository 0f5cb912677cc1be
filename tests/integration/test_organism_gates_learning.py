"""Small-budget learning tests of the VM's gain and whole-memory opcodes (issue 16): on the control
curriculum, a one-layer VM in control answers the priority vote only through GATE_UP / GATE_DOWN
(each forced to NOP sends the vote to chance) and the latest-fact query only through SCAN. One
tiny run (about a minute on two cores) serves both tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mosaic.runtime.training.run import run_preset

#: mosaic_gates shrunk to a CI budget: fewer steps, a smaller batch, a shorter teacher schedule.
TINY_GATES = [
    "vars.steps=250",
    "vars.batch_size=16",
    "vars.threads=1",
    "trainer.checkpoint_every=0",
    "trainer.log_every=50",
    "trainer.warmup_steps=10",
    "curriculum.warmup_steps=20",
    "curriculum.cooldown_steps=40",
    "eval.samples=256",
]


@pytest.fixture(scope="module")
def gates_eval(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: Path = tmp_path_factory.mktemp("gates")
    return run_preset("mosaic_gates", out=out, overrides=TINY_GATES, show_progress=False)["eval"]


def test_the_priority_vote_needs_gate_up_and_gate_down(gates_eval: dict[str, Any]) -> None:
    assert gates_eval["priority_exact"] >= 0.9
    off = gates_eval["ablations"]["opcode_off"]
    # the noise opposes the priority in half the samples: ungated there, the vote flips
    assert off["GATE_DOWN"]["priority_exact"] < 0.7
    assert off["GATE_UP"]["priority_exact"] < 0.7


def test_the_latest_fact_needs_scan(gates_eval: dict[str, Any]) -> None:
    assert gates_eval["scan_exact"] >= 0.9
    assert gates_eval["ablations"]["opcode_off"]["SCAN"]["scan_exact"] < 0.2
    assert gates_eval["ablations"]["memory_off"]["scan_exact"] < 0.2
