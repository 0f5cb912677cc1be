"""Seed 003's β experiments run with one command each and write JSON (experiments/chrono_beta.py);
the properties they measure hold on tiny runs: β in units of the logit std is exactly scale-free
without the veto, the veto's cut-off makes a large β select nothing, and the whiplash protocol
reports divergence and hysteresis against its no-shock control."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_experiment(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / f"{name}.json"
    subprocess.run(
        [sys.executable, "-m", "experiments.chrono_beta", name, "--seeds", "0", "--out", str(out), *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["saturation", "scale_free"])
def test_the_flip_rate_experiments_write_json(tmp_path: Path, name: str) -> None:
    data = run_experiment(tmp_path, name, "--train", "20")
    assert data["experiment"] == name
    if name == "scale_free":
        off, on = data["summary"]["off"], data["summary"]["on"]
        assert off["mean_spread"] == 0.0  # argmax of s·(z + k·std z) does not depend on s
        assert off["mean_raw_bias_spread"] > 0.0  # a raw bias of fixed size is not scale-free
        assert on["mean_spread"] >= 0.0
    else:
        on, off = data["mean_flip_rate"]["on"], data["mean_flip_rate"]["off"]
        assert on["0.0"] == off["0.0"] == 0.0
        assert off["2.0"] > off["0.1"]  # without the veto a larger β flips more
        assert on["2.0"] == 0.0  # with it, a β that would move most of the mass is vetoed entirely


def test_whiplash_reports_divergence_and_hysteresis_against_the_control(tmp_path: Path) -> None:
    data = run_experiment(
        tmp_path, "whiplash", "--before", "5", "--shock", "3", "--recover", "5", "--earn", "5"
    )
    assert data["setup"]["protocol"] == "top-4 -> top-1 -> top-4"
    for kind in ("seeded", "earned"):
        run = data["runs"][kind][0]
        assert set(run["shock"]["divergence"]) == {"before", "shock_end", "after"}
        assert run["excess_hysteresis"] == pytest.approx(
            [s - c for s, c in zip(run["shock"]["drift"], run["control"]["drift"], strict=True)], abs=1e-3
        )
    # the seeded pair favours different experts: their routing differs before any shock
    assert data["runs"]["seeded"][0]["shock"]["divergence"]["before"] > 0.0
