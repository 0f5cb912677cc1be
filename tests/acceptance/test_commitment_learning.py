"""Small-budget learning tests for issue 16's commitment, turn-taking and COMMIT -> ledger criteria.

Not in CI (``nox -s acceptance``): on the 2-core CPU the training run takes far longer than the
60 s a CI learning test may, and held-out ``close`` accuracy does not reach the threshold yet, so
these tests fail today. They keep the issue's thresholds so that the gap stays visible.

One tiny ``mosaic_commitment`` run (one memory pair with one noise event, two overlapping
commitments) trains in-process; the held-out evaluation uses the eval split, whose phrasings come only from the eval
template set. Each test fails when the behaviour it names breaks: commitments that do not
generalise to new phrasings, a VM whose IDLE / RESPOND / COMMIT decisions have no effect."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mosaic.runtime.training.run import run_preset

TINY = [
    "trainer.steps=100", "trainer.warmup_steps=5", "trainer.log_every=50", "trainer.checkpoint_every=1000",
    "trainer.batch_size=4", "trainer.lr=0.006", "trainer.threads=2", "eval.samples=24", "eval.batch_size=8",
    "vars.d_model=64", "objective.aux_commitment_weight=3.0", "objective.aux_commitment_balanced=true",
    "dataset.n_pairs=1", "dataset.distractor_events=1", "dataset.sleep_replay_per_pair=0",
    "dataset.value_digits=2", "dataset.block_size=2688",
    "curriculum.warmup_steps=5", "curriculum.cooldown_steps=40",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.manual_seed(0)
    return run_preset("mosaic_commitment", overrides=TINY, out=tmp_path_factory.mktemp("commitment_runs"),
                      show_progress=False)


def test_commitments_generalise_to_heldout_templates(trained: dict) -> None:
    heldout = trained["eval"]["commitment"]["heldout_templates"]
    assert all(count > 0 for count in heldout["messages"].values())
    for name, accuracy in heldout["per_class_accuracy"].items():
        assert accuracy >= 0.8, (name, heldout)


def test_commit_feeds_the_ledger(trained: dict) -> None:
    evaluation = trained["eval"]
    exact = evaluation["commitment"]["ledger_exact"]
    without_commit = evaluation["ablations"]["opcode_off"]["COMMIT"]["ledger_exact"]
    assert exact >= 0.6 and exact - without_commit >= 0.3, (exact, without_commit)
    checkpoint = sorted((Path(trained["run_dir"]) / "checkpoints").glob("*.pt"))[-1]
    weights = torch.load(checkpoint, weights_only=True)["model"]
    drives = [value for name, value in weights.items() if name.endswith("commit_drive")]
    assert drives and all(float(drive.abs().sum()) > 0 for drive in drives)


def test_idle_silences_and_respond_starts_the_response(trained: dict) -> None:
    evaluation = trained["eval"]
    turns, off = evaluation["turns"], evaluation["ablations"]["opcode_off"]
    assert turns["onset"] >= 0.8 and turns["onset"] - off["RESPOND"]["onset"] >= 0.3, (turns, off)
    assert turns["silence"] >= 0.8 and turns["silence"] - off["IDLE"]["silence"] >= 0.3, (turns, off)
