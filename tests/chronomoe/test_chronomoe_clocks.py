import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from chronomoe.clocks import ThreeClockEMA, reference_ema
from chronomoe.config import ClockConfig, alpha_of, half_life_of
from mosaic.core.errors import ConfigError


def test_default_half_lives_match_the_documented_clocks():
    fast, mid, slow = ClockConfig().half_lives
    assert fast == pytest.approx(6.58, abs=0.01)
    assert mid == pytest.approx(68.97, abs=0.01)
    assert slow == pytest.approx(692.8, abs=0.1)


@given(st.floats(min_value=0.5, max_value=1e5))
def test_alpha_and_half_life_are_inverse(half_life):
    assert half_life_of(alpha_of(half_life)) == pytest.approx(half_life, rel=1e-6)


def test_half_life_is_where_an_observation_weighs_half():
    alpha = alpha_of(10.0)
    assert alpha**10 == pytest.approx(0.5)
    config = ClockConfig.from_half_lives(2.0, 20.0, 200.0)
    assert config.half_lives == pytest.approx((2.0, 20.0, 200.0))


def test_invalid_retentions_are_rejected():
    with pytest.raises(ValueError, match="alpha_fast < alpha_mid < alpha_slow"):
        ClockConfig(0.99, 0.9, 0.999)
    with pytest.raises(ConfigError):
        half_life_of(1.0)
    with pytest.raises(ConfigError):
        alpha_of(0.0)


def test_bias_correction_reports_a_constant_from_the_first_step():
    ema = ThreeClockEMA(ClockConfig(), (3,))
    value = torch.tensor([0.7, -0.2, 1.5])
    for _ in range(3):
        ema.update(value)
        torch.testing.assert_close(ema.estimate(), value.expand(3, 3))


def test_uncorrected_ema_would_start_near_zero_but_ours_does_not():
    ema = ThreeClockEMA(ClockConfig(), ())
    ema.update(torch.tensor(1.0))
    raw_slow = ema.numerator[2]
    assert float(raw_slow) == pytest.approx(0.001, rel=1e-4)  # what the original reported
    assert ema.estimate("slow") == pytest.approx(1.0)


def test_step_response_reaches_half_at_the_half_life():
    config = ClockConfig.from_half_lives(5.0, 50.0, 500.0)
    ema = ThreeClockEMA(config, ())
    for _ in range(1000):
        ema.update(torch.tensor(0.0))
    for _ in range(5):
        ema.update(torch.tensor(1.0))
    # after one half-life of 1s following a long history of 0s, the fast clock reads ~ 1/2
    assert float(ema.estimate("fast")) == pytest.approx(0.5, abs=0.01)
    assert ema.estimate("slow") < 0.01


def test_unseen_entries_age_but_keep_their_estimate():
    ema = ThreeClockEMA(ClockConfig(0.5, 0.6, 0.7), (2,))
    ema.update(torch.tensor([1.0, 2.0]))
    evidence_before = ema.evidence("fast").clone()
    for _ in range(4):
        ema.update(torch.tensor([9.0, 3.0]), seen=torch.tensor([False, True]))
    assert ema.estimate("fast")[0] == pytest.approx(1.0)  # nothing new observed for expert 0
    assert ema.evidence("fast")[0] < evidence_before[0] / 10  # but its clock aged
    assert ema.steps == 5
    never = ThreeClockEMA(ClockConfig(), (1,))
    never.update(torch.tensor([4.0]), seen=torch.tensor([False]))
    assert never.estimate("slow", empty=-7.0) == pytest.approx(-7.0)


@given(
    st.lists(st.tuples(st.floats(-10, 10), st.booleans()), min_size=1, max_size=40),
    st.sampled_from(["fast", "mid", "slow"]),
)
def test_vectorised_clock_agrees_with_plain_loop(steps, clock):
    config = ClockConfig(0.6, 0.9, 0.97)
    ema = ThreeClockEMA(config, ())
    values, seen = [v for v, _ in steps], [s for _, s in steps]
    alpha = dict(zip(("fast", "mid", "slow"), config.alphas, strict=True))[clock]
    expected = reference_ema(values, seen, alpha)
    for value, observed, want in zip(values, seen, expected, strict=True):
        ema.update(torch.tensor(value), seen=torch.tensor(observed))
        got = float(ema.estimate(clock, empty=float("nan")))
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(want, rel=1e-4, abs=1e-4)
