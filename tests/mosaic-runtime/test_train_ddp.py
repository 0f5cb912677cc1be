"""Two-process torchrun (gloo on CPU) matches one process on the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mosaic.runtime.testing.tiny_training import TINY_PRESET
from mosaic.runtime.training.checkpoint import latest_checkpoint

#: the tiny preset run in its own process (python -m ENTRY PRESET OUT ...)
ENTRY = "mosaic.runtime.testing.train_entry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def summary_of(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("SUMMARY ")]
    assert len(lines) == 1, stdout  # only rank 0 reports a run directory
    return json.loads(lines[0][len("SUMMARY "):])


def test_two_process_torchrun_matches_one_process(tmp_path: Path) -> None:
    preset = tmp_path / "tiny.yml"
    preset.write_text(TINY_PRESET.replace("steps: 30", "steps: 12"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", ENTRY, str(preset), str(tmp_path / "one")], env=env,
                            capture_output=True, text=True, check=False, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
              "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    double = subprocess.run([*launch, "--module", ENTRY, str(preset), str(tmp_path / "two")], env=env,
                            capture_output=True, text=True, check=False, timeout=600)
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = summary_of(single.stdout), summary_of(double.stdout)
    assert two["final"]["loss_total"] == pytest.approx(one["final"]["loss_total"], rel=1e-4)
    a = torch.load(latest_checkpoint(Path(one["run_dir"]) / "checkpoints"), weights_only=True)
    b = torch.load(latest_checkpoint(Path(two["run_dir"]) / "checkpoints"), weights_only=True)
    worst = max(float((a["model"][k] - b["model"][k]).abs().max()) for k in a["model"])
    assert worst < 1e-4, f"parameters differ by up to {worst}"
    summary = json.loads((Path(two["run_dir"]) / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len(list((tmp_path / "two").rglob("summary.json"))) == 1  # rank 1 wrote nothing


def test_two_ranks_stay_in_lockstep_with_a_head_that_gets_no_gradient(tmp_path: Path) -> None:
    """A head no loss term reads (as memory.write_utility is under a preset that weights its term 0)
    and per-rank dropout: DDP must not crash, and both ranks must end with identical weights."""
    preset = tmp_path / "tiny.yml"
    preset.write_text(TINY_PRESET.replace("steps: 30", "steps: 12").replace(
        "n_layers: 2\n", "n_layers: 2\n      unused_head: true\n      dropout: 0.1\n", 1))
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
              "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    done = subprocess.run([*launch, "--module", ENTRY, str(preset), str(tmp_path / "two")],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, check=False,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((Path(summary_of(done.stdout)["run_dir"]) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert summary["ranks_in_lockstep"] is True
