"""Small-budget learning test of tool building: a tiny ``mosaic_tools`` run answers held-out
``ToolRequest`` s (parameter values never seen with their task in training) with definitions that the
real runtime validates, registers and calls in the sandbox, and the results come back right. Trains
in-process on CPU within about a minute on two cores; the evaluation is ``mosaic eval``'s own
``eval.tools`` (the define -> register -> call -> result loop of mosaic.runtime.agent.tool_flow)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mosaic.runtime.training.run import run_preset

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's OS layers are specified for root")

#: mosaic_tools shrunk to a CI budget: two arithmetic tasks, fewer steps, a shorter teacher schedule.
TINY_TOOLS = [
    "vars.steps=120",
    "vars.batch_size=4",
    "vars.threads=1",
    "vars.tf_warmup=10",
    "vars.tf_cooldown=30",
    "dataset.tasks=[add, mul]",
    "trainer.checkpoint_every=0",
    "trainer.log_every=40",
    "trainer.warmup_steps=10",
    "trainer.lr=0.006",
    "eval.samples=6",
    "eval.batch_size=4",
]


def test_tiny_tools_run_builds_working_tools_for_held_out_requests(tmp_path: Path) -> None:
    summary = run_preset("mosaic_tools", out=tmp_path, overrides=TINY_TOOLS, show_progress=False)
    tools = summary["eval"]["tools"]
    assert tools["requests"] == 6
    assert tools["success_rate"] >= 0.5, tools
    assert tools["call_rate"] >= 0.5 and tools["registered_rate"] >= 0.5, tools
