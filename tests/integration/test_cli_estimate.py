"""`mosaic presets show --estimate` says which precision its figures assume, and what the run uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MOSAIC = str(Path(sys.executable).parent / "mosaic")


def estimate_heading(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSAIC_")}
    result = subprocess.run([MOSAIC, "presets", "show", "mqar_transformer", "--estimate", *args],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("estimate for"))


def test_heading_names_the_budget_precision_and_the_training_precision() -> None:
    # mqar_transformer's budget is stated for bf16; the preset trains in fp32
    assert estimate_heading() == "estimate for mqar (batch 64, bf16 as the budget assumes; this preset trains in fp32):"
    assert estimate_heading("--precision", "fp32") == "estimate for mqar (batch 64, fp32):"
