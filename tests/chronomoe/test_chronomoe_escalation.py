"""Disagreement escalation with thresholds calibrated on each layer's own baseline."""

import random

import torch

from chronomoe.config import ChronoConfig, LifecycleConfig
from chronomoe.escalation import EscalationCalibrator, calibrated_thresholds
from chronomoe.system import ChronoSystem
from mosaic.core.config import unstructure_config
from mosaic.core.plugins import get_registry

D = 16
LIFECYCLE = LifecycleConfig(mid_interval=2, slow_interval=10_000, calibration_evals=8)
CONFIG = ChronoConfig(lifecycle=LIFECYCLE)


def build():
    torch.manual_seed(0)
    moe = get_registry().build(
        "layer.moe",
        {
            "d_model": D,
            "router": {"type": "router.chrono", "track_roles": True, "chrono": unstructure_config(CONFIG)},
        },
    )
    return moe, ChronoSystem([moe], CONFIG)


def feed(moe, system, flips):
    """One mid evaluation per reading: the mid-clock flip rate is set to the reading, k to ones."""
    records = []
    for flip in flips:
        for _ in range(LIFECYCLE.mid_interval):
            disagreement = moe.router.state.disagreement
            disagreement.numerator[0] = torch.tensor([flip, flip / 10])
            disagreement.weight[0] = 1.0
            moe.router.state.k.fill_(0.1)
            records += system.step().control
    return records


def quiet(n, seed=0):
    rng = random.Random(seed)
    return [0.03 + 0.01 * rng.random() for _ in range(n)]


def test_thresholds_are_mean_plus_sigmas_std_with_floors():
    config = LifecycleConfig(warn_floor=0.1, decay_floor=0.3, reset_floor=0.5, escalation_sigmas=(1, 2, 3))
    noisy = calibrated_thresholds([0.2, 0.4], config)  # mean 0.3, std 0.1
    assert (round(noisy.warn, 6), round(noisy.decay, 6), round(noisy.reset, 6)) == (0.4, 0.5, 0.6)
    silent = calibrated_thresholds([0.0] * 5, config)
    assert (silent.warn, silent.decay, silent.reset) == (0.1, 0.3, 0.5)


def test_quiet_run_never_escalates_and_records_its_calibration():
    moe, system = build()
    records = feed(moe, system, quiet(40))
    assert [r.action for r in records] == ["escalation_calibrated"]
    assert system.calibrators[0].calibrated
    assert float(moe.router.state.k.min()) > 0.0  # β untouched


def test_injected_disagreement_escalates_warn_then_decay_then_reset():
    moe, system = build()
    feed(moe, system, quiet(LIFECYCLE.calibration_evals))
    thresholds = system.calibrators[0].thresholds()
    assert thresholds.warn < thresholds.decay < thresholds.reset
    ramp = [thresholds.warn + 0.01, thresholds.decay + 0.01, thresholds.reset + 0.01]
    actions = []
    for flip in ramp:
        records = feed(moe, system, [flip])
        actions += [r.action for r in records]
        k = float(moe.router.state.k[0])
        if actions[-1] == "decay_beta":
            assert abs(k - 0.1 * LIFECYCLE.beta_decay) < 1e-6
        elif actions[-1] == "reset_beta":
            assert k == 0.0
    assert actions == ["warn", "decay_beta", "reset_beta"]


def test_a_noisy_baseline_raises_the_thresholds_above_the_floors():
    moe, system = build()
    rng = random.Random(1)
    baseline = [0.15 + 0.1 * rng.random() for _ in range(LIFECYCLE.calibration_evals)]
    feed(moe, system, baseline)
    thresholds = system.calibrators[0].thresholds()
    assert thresholds.warn > LIFECYCLE.warn_floor
    # a reading that the floors alone would call a warning is ordinary for this layer
    assert not feed(moe, system, [max(baseline)])


def test_checkpoint_restore_reproduces_calibration_and_decisions():
    moe, system = build()
    feed(moe, system, quiet(5))
    checkpoint = system.state_dict()
    later = feed(moe, system, quiet(5, seed=7) + [0.2, 0.4, 0.6])
    moe2, system2 = build()
    system2.load_state_dict(checkpoint)
    replay = feed(moe2, system2, quiet(5, seed=7) + [0.2, 0.4, 0.6])
    assert replay == later
    assert system2.calibrators[0].thresholds() == system.calibrators[0].thresholds()
    assert [r.action for r in later][0] == "escalation_calibrated"


def test_calibrator_without_window_uses_floors_at_once():
    calibrator = EscalationCalibrator(LifecycleConfig(calibration_evals=0))
    assert calibrator.calibrated
    assert calibrator.observe(0.55) == ("reset_beta", False)


def test_the_readme_gives_the_escalation_thresholds_the_code_uses():
    """One set of escalation thresholds: the package README quotes LifecycleConfig's defaults."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "packages/chronomoe/README.md").read_text(encoding="utf-8")
    found = re.search(r"floors warn ([\d.]+) / decay β ([\d.]+) / reset β ([\d.]+), σ ([\d.]+) / ([\d.]+) / ([\d.]+)",
                      readme)
    assert found, "the README no longer states the escalation floors and sigmas"
    config = LifecycleConfig()
    floors = tuple(float(v) for v in found.groups()[:3])
    sigmas = tuple(float(v) for v in found.groups()[3:])
    assert floors == (config.warn_floor, config.decay_floor, config.reset_floor)
    assert sigmas == tuple(float(s) for s in config.escalation_sigmas)
