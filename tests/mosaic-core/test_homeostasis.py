"""Homeostasis: bands, drive signals, one Impulse per out-of-band metric, refractory periods, and
the built-in drives registered as plugins."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core import DriveBand, EventEnvelope, HomeostaticLoop, IntrinsicDrive
from mosaic.core.drives import build_drives
from mosaic.core.errors import ConfigError, MosaicError
from mosaic.core.homeostasis import IMPULSE_EVENT_TYPE, DriveSignal, HomeostasisError
from mosaic.core.plugins import get_registry

# The contract properties (round-trips, robustness against arbitrary input) run at the profile's
# count (10,000 under HYPOTHESIS_PROFILE=ci); the secondary properties here are capped at 1,000.
secondary = settings(max_examples=min(settings().max_examples, 1000))

BUILTIN_DRIVES = ["drive.commitment_balance", "drive.memory_pressure", "drive.output_confidence", "drive.routing_entropy"]


def memory_drive(refractory_s=5.0, gain=1.0):
    return IntrinsicDrive("memory_pressure", "memory_pressure", DriveBand(0.0, 0.8), gain=gain, refractory_s=refractory_s)


def confidence_drive(refractory_s=0.0):
    return IntrinsicDrive("confidence", "output_confidence", DriveBand(0.5, 1.0), refractory_s=refractory_s)


def test_band_validation_and_deviation():
    band = DriveBand(0.2, 0.6)
    assert band.deviation(0.1) == pytest.approx(-0.1) and band.deviation(0.9) == pytest.approx(0.3)
    assert band.deviation(0.4) == 0.0 and band.contains(0.2) and band.contains(0.6) and not band.contains(0.61)
    assert DriveBand(3, 3).width == 0.0 and isinstance(DriveBand(1, 2).low, float)
    for low, high in [(1.0, 0.0), (math.nan, 1.0), (0.0, math.inf), ("0", 1.0), (True, 2.0)]:
        with pytest.raises(HomeostasisError):
            DriveBand(low, high)


def test_drive_validation():
    with pytest.raises(HomeostasisError, match="gain"):
        memory_drive(gain=0.0)
    with pytest.raises(HomeostasisError, match="refractory_s"):
        memory_drive(refractory_s=-1.0)
    with pytest.raises(HomeostasisError, match="name"):
        IntrinsicDrive("", "m", DriveBand(0, 1))
    with pytest.raises(HomeostasisError, match="band"):
        IntrinsicDrive("d", "m", (0, 1))  # type: ignore[arg-type]
    with pytest.raises(HomeostasisError, match="used twice"):
        HomeostaticLoop([memory_drive(), memory_drive()])
    assert issubclass(HomeostasisError, MosaicError)


def test_signal_deviation_and_urgency():
    drive = IntrinsicDrive("d", "m", DriveBand(0.0, 0.5), gain=2.0)
    assert drive.signal(0.25) is None
    signal = drive.signal(0.75)
    assert signal.deviation == pytest.approx(0.25) and signal.urgency == pytest.approx(2.0 * 0.25 / 0.5)
    below = IntrinsicDrive("s", "m", DriveBand(1.0, 1.0)).signal(-1)
    assert below.deviation == -2.0 and below.urgency == 2.0  # zero-width band: width counts as 1
    with pytest.raises(HomeostasisError, match="finite"):
        drive.signal(math.nan)
    with pytest.raises(HomeostasisError, match="real number"):
        drive.signal("high")


def test_out_of_band_metric_gives_one_impulse_within_band_none():
    loop = HomeostaticLoop([memory_drive()], sender="organism")
    assert loop.impulse({"memory_pressure": 0.5}, now=0.0) is None
    event = loop.impulse({"memory_pressure": 0.95}, now=1.0)
    assert isinstance(event, EventEnvelope) and event.type == IMPULSE_EVENT_TYPE and event.sender == "organism"
    assert event.payload == {
        "drive": "memory_pressure",
        "metric": "memory_pressure",
        "value": 0.95,
        "band": [0.0, 0.8],
        "deviation": pytest.approx(0.15),
        "urgency": pytest.approx(0.15 / 0.8),
    }
    assert DriveSignal.from_impulse(event).drive == "memory_pressure"
    assert EventEnvelope.from_json_dict(event.to_json_dict()) == event
    assert loop.impulses_emitted == 1


def test_refractory_period_holds_then_releases():
    loop = HomeostaticLoop([memory_drive(refractory_s=5.0)])
    high = {"memory_pressure": 0.99}
    assert loop.impulse(high, now=10.0) is not None
    assert [loop.impulse(high, now=t) for t in (10.0, 11.0, 14.9)] == [None, None, None]
    assert loop.suppressed == 3
    assert loop.impulse(high, now=15.0) is not None
    loop.reset()
    assert loop.impulse(high, now=15.1) is not None


def test_most_urgent_drive_wins_and_refractory_passes_the_turn():
    loop = HomeostaticLoop([memory_drive(refractory_s=100.0), confidence_drive(refractory_s=100.0)])
    metrics = {"memory_pressure": 0.9, "output_confidence": 0.1}  # urgencies 0.125 and 0.8
    assert [s.drive for s in loop.signals(metrics)] == ["confidence", "memory_pressure"]
    assert loop.impulse(metrics, now=0.0).payload["drive"] == "confidence"
    assert loop.impulse(metrics, now=1.0).payload["drive"] == "memory_pressure"
    assert loop.impulse(metrics, now=2.0) is None


def test_missing_metrics_are_not_consulted_and_bad_metrics_raise():
    loop = HomeostaticLoop([memory_drive()])
    assert loop.impulse({"unrelated": 5.0}, now=0.0) is None
    with pytest.raises(HomeostasisError, match="memory_pressure"):
        loop.impulse({"memory_pressure": math.inf}, now=0.0)
    with pytest.raises(HomeostasisError, match="mapping"):
        loop.impulse([0.9])  # type: ignore[arg-type]


def test_loop_uses_its_clock_when_no_time_is_given():
    ticks = iter([0.0, 1.0, 30.0])
    loop = HomeostaticLoop([memory_drive(refractory_s=10.0)], clock=lambda: next(ticks))
    high = {"memory_pressure": 1.0}
    assert [loop.impulse(high) is not None for _ in range(3)] == [True, False, True]


@secondary
@given(
    st.lists(st.floats(-2, 3, allow_nan=False), min_size=1, max_size=40),
    st.floats(0, 5, allow_nan=False),
)
def test_no_impulse_storm(values, refractory_s):
    # One metric reading per second: a drive never fires twice within its refractory period, and
    # fires only for out-of-band values.
    loop = HomeostaticLoop([memory_drive(refractory_s=refractory_s)])
    fired = []
    for second, value in enumerate(values):
        event = loop.impulse({"memory_pressure": value}, now=float(second))
        assert (event is not None) <= (not 0.0 <= value <= 0.8)
        if event is not None:
            fired.append(second)
    assert all(later - earlier >= refractory_s for earlier, later in itertools.pairwise(fired))


def test_builtin_drives_are_registered_plugins():
    registry = get_registry()
    core_drives = [c.id for c in registry if c.kind == "drive" and c.provider == "mosaic-core"]
    assert core_drives == BUILTIN_DRIVES
    for component_id in BUILTIN_DRIVES:
        component = registry.get(component_id)
        assert component.provider == "mosaic-core" and component.summary
        drive = registry.build(component_id, {})
        assert isinstance(drive, IntrinsicDrive) and drive.name == component_id.removeprefix("drive.")
        assert drive.refractory_s > 0 and drive.band.low < drive.band.high


def test_builtin_drive_configs_are_validated():
    registry = get_registry()
    drive = registry.build("drive.memory_pressure", {"band": {"low": 0, "high": 0.5}, "refractory_s": 3})
    assert drive.band == DriveBand(0.0, 0.5) and drive.refractory_s == 3.0
    with pytest.raises(ConfigError, match=r"\$.band"):
        registry.build("drive.memory_pressure", {"band": {"low": 1, "high": 0.5}})
    with pytest.raises(ConfigError, match="gain"):
        registry.build("drive.routing_entropy", {"gain": -1})
    with pytest.raises(ConfigError, match="colour"):
        registry.build("drive.output_confidence", {"colour": "red"})


def test_build_drives_feeds_a_loop():
    drives = build_drives({"drive.output_confidence": None, "drive.commitment_balance": {"refractory_s": 0}})
    loop = HomeostaticLoop(drives)
    event = loop.impulse({"output_confidence": 0.9, "commitment_balance": 7.0}, now=0.0)
    assert event.payload["drive"] == "commitment_balance" and event.payload["deviation"] == 4.0
    with pytest.raises(HomeostasisError, match="not a drive"):
        build_drives({"model.mosaic_lm": {}})


@pytest.mark.parametrize(
    ("component_id", "band", "refractory_s", "metric"),
    [("drive.memory_pressure", (0.0, 0.85), 30.0, "memory_pressure"),
     ("drive.routing_entropy", (0.3, 1.0), 60.0, "memory_routing_entropy"),
     ("drive.commitment_balance", (0.0, 3.0), 20.0, "commitment_balance"),
     ("drive.output_confidence", (0.5, 1.0), 10.0, "output_confidence")],
)
def test_builtin_drive_defaults_come_from_one_table(component_id: str, band: tuple, refractory_s: float,
                                                    metric: str) -> None:
    from mosaic.core.drives import build_drives
    from mosaic.core.errors import ConfigError

    (drive,) = build_drives({component_id: None})
    name = component_id.removeprefix("drive.")
    assert (drive.name, drive.metric, (drive.band.low, drive.band.high)) == (name, metric, band)
    assert drive.metrics == (metric,)  # the drive declares the metric it reads
    assert (drive.gain, drive.refractory_s) == (1.0, refractory_s)
    (tuned,) = build_drives({component_id: {"metric": "custom", "refractory_s": 1.5}})
    assert (tuned.metric, tuned.refractory_s, tuned.band.low) == ("custom", 1.5, band[0])
    with pytest.raises(ConfigError, match="gain"):
        build_drives({component_id: {"gain": 0}})
