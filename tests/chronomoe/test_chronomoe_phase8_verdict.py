"""bench_phase8's statistics: the verdict can never call the lifecycle "matched" without an edit,
paired intervals and the rank correlation are right on constructed numbers."""

import importlib.util
from pathlib import Path

STATS = Path(__file__).resolve().parents[2] / "benchmarks" / "phase8_stats.py"
_spec = importlib.util.spec_from_file_location("phase8_stats", STATS)
stats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stats)


def run(val_loss, live_mean=6.0, edits=0):
    return {"val_loss": val_loss, "live_mean": live_mean, "edits": [{"action": "merge"}] * edits}


def test_no_edit_is_never_a_match():
    arms = {"chrono": [run(2.0)], "chrono_lifecycle": [run(2.0)], "chrono_adhoc": [run(2.0)]}
    result = stats.verdict(arms, {})
    assert "no edit happened" in result["verdict"]
    assert "match" not in result["verdict"]
    assert not result["goal_vs_no_lifecycle"] and not result["goal_vs_fixed"]


def test_the_goal_is_computed_from_loss_and_live_experts():
    base = [run(2.00), run(2.10)]
    better_smaller = [run(1.99, 5.0, 2), run(2.08, 5.0, 1)]
    worse = [run(2.05, 5.0, 2), run(2.20, 5.0, 1)]
    fixed_5 = [run(2.06), run(2.21)]
    met = stats.verdict({"chrono": base, "chrono_lifecycle": better_smaller}, {5: fixed_5})
    assert met["goal_vs_no_lifecycle"] and "goal met" in met["verdict"]
    vs_fixed = stats.verdict({"chrono": base, "chrono_lifecycle": worse}, {5: fixed_5})
    assert not vs_fixed["goal_vs_no_lifecycle"] and vs_fixed["goal_vs_fixed"]
    lost = stats.verdict({"chrono": base, "chrono_lifecycle": worse}, {5: [run(1.9), run(2.0)]})
    assert "NOT met" in lost["verdict"]


def test_paired_interval_and_spearman():
    paired = stats.paired([0.1, 0.2, 0.15])
    assert paired["mean"] == 0.15 and paired["ci95"][0] < 0.15 < paired["ci95"][1]
    assert stats.paired([0.1])["ci95"] is None
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert stats.spearman([1, 2], [1, 2]) is None


def test_scored_edits_are_summarised_by_kind_with_a_correlation_within_each():
    def edit(kind, predicted, realised):
        return {"action": kind, "delta_f_predicted": predicted, "delta_loss_realised": realised}

    scored = [edit("prune", p, r) for p, r in ((0.1, 0.2), (0.2, 0.3), (0.3, 0.1))]
    scored += [edit("merge", p, -p) for p in (0.1, 0.2, 0.3, 0.4)]
    summary = stats.by_kind(scored)
    assert list(summary) == ["merge", "prune"]
    assert summary["merge"]["spearman"] == -1.0 and summary["merge"]["realised_lower"] == 4
    assert summary["prune"]["scored"] == 3 and summary["prune"]["mean_realised_dloss"] == 0.2
    assert summary["prune"]["spearman"] == -0.5
