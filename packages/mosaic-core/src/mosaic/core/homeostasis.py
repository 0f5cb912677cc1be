"""Homeostasis: intrinsic drives that turn a metric outside its band into an ``Impulse`` event.

A :class:`DriveBand` is the healthy range of one metric. An :class:`IntrinsicDrive` watches one
metric key: outside the band it produces a :class:`DriveSignal` whose ``deviation`` is the signed
distance to the band (negative below, positive above) and whose ``urgency`` is
``gain * |deviation| / band width`` (width 1 for a zero-width set-point band), so urgencies of
different drives are comparable. A :class:`HomeostaticLoop` asks every drive each time it is given
metrics and returns one ``Impulse`` envelope for the most urgent drive, or None. A drive that fired
stays quiet for its refractory period, so a metric that stays out of band cannot cause an impulse
storm.

Drives are plugins (kind ``drive``); the built-in ones live in :mod:`mosaic.core.drives`.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from mosaic.core.errors import MosaicError
from mosaic.core.events.envelope import EventEnvelope

#: ``type`` of the events a homeostatic loop emits.
IMPULSE_EVENT_TYPE = "Impulse"


class HomeostasisError(MosaicError, ValueError):
    """A drive, band or metric is invalid; names which and why.

    A ``ValueError`` too, so that config structuring reports it as a ``$.path: message`` problem.
    """


def _real(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HomeostasisError(f"{what}: expected a real number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise HomeostasisError(f"{what}: expected a finite number, got {number}")
    return number


def _as_float(value: Any) -> Any:
    """Integers become floats (one type per field); anything else is left for the validator."""
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise HomeostasisError(f"{value} is too large to be a finite number") from None
    return value


def _finite(what: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
        _real(what, value)

    return check


@attrs.frozen
class DriveBand:
    """The healthy range ``[low, high]`` of a metric (``low == high`` is a set point)."""

    low: float = attrs.field(converter=_as_float, validator=_finite("DriveBand.low"))
    high: float = attrs.field(converter=_as_float, validator=_finite("DriveBand.high"))

    def __attrs_post_init__(self) -> None:
        if self.low > self.high:
            raise HomeostasisError(f"DriveBand: low {self.low} is above high {self.high}")

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def deviation(self, value: float) -> float:
        """Signed distance from the band: negative below, positive above, 0 inside."""
        if value < self.low:
            return value - self.low
        if value > self.high:
            return value - self.high
        return 0.0


@attrs.frozen
class DriveSignal:
    """What a drive reports about a metric outside its band."""

    drive: str
    metric: str
    value: float
    band: DriveBand
    deviation: float
    urgency: float

    def to_payload(self) -> dict[str, Any]:
        return {
            "drive": self.drive,
            "metric": self.metric,
            "value": self.value,
            "band": [self.band.low, self.band.high],
            "deviation": self.deviation,
            "urgency": self.urgency,
        }

    @classmethod
    def from_impulse(cls, event: EventEnvelope) -> DriveSignal:
        """Read the signal back out of an ``Impulse`` event."""
        payload = event.payload
        if event.type != IMPULSE_EVENT_TYPE or not isinstance(payload, dict):
            raise HomeostasisError(f"expected an {IMPULSE_EVENT_TYPE} event with an object payload, got {event.type}")
        try:
            low, high = payload["band"]
            return cls(
                drive=payload["drive"],
                metric=payload["metric"],
                value=_real("value", payload["value"]),
                band=DriveBand(low, high),
                deviation=_real("deviation", payload["deviation"]),
                urgency=_real("urgency", payload["urgency"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HomeostasisError(f"malformed {IMPULSE_EVENT_TYPE} payload {payload!r}: {exc}") from None


def _name(what: str) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str) or not value:
            raise HomeostasisError(f"{what}: expected a non-empty string, got {value!r}")

    return check


def _positive(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if _real(f"IntrinsicDrive.{attribute.name}", value) <= 0:
        raise HomeostasisError(f"IntrinsicDrive.{attribute.name}: expected > 0, got {value}")


def _non_negative(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if _real(f"IntrinsicDrive.{attribute.name}", value) < 0:
        raise HomeostasisError(f"IntrinsicDrive.{attribute.name}: expected >= 0, got {value}")


def _band(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, DriveBand):
        raise HomeostasisError(f"IntrinsicDrive.band: expected a DriveBand, got {value!r}")


@attrs.frozen
class IntrinsicDrive:
    """Watches ``metric``; outside ``band`` it signals with urgency ``gain * |deviation| / width``.

    ``refractory_s``: seconds the drive stays quiet after its impulse was emitted.
    """

    name: str = attrs.field(validator=_name("IntrinsicDrive.name"))
    metric: str = attrs.field(validator=_name("IntrinsicDrive.metric"))
    band: DriveBand = attrs.field(validator=_band)
    gain: float = attrs.field(default=1.0, converter=_as_float, validator=_positive)
    refractory_s: float = attrs.field(default=0.0, converter=_as_float, validator=_non_negative)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics this drive reads (a runtime checks that it reports them when it loads the drive)."""
        return (self.metric,)

    def signal(self, value: float) -> DriveSignal | None:
        """The signal for ``value``, or None inside the band."""
        value = _real(f"metric {self.metric!r}", value)
        deviation = self.band.deviation(value)
        if deviation == 0.0:
            return None
        scale = self.band.width if self.band.width > 0 else 1.0
        urgency = self.gain * abs(deviation) / scale
        return DriveSignal(self.name, self.metric, value, self.band, deviation, urgency)


def check_drive_metrics(drives: Iterable[IntrinsicDrive], reported: Iterable[str], *, runtime: str) -> None:
    """Refuse drives that read a metric ``runtime`` never reports (such a drive could never fire),
    naming the drive, the metric and what the runtime does report."""
    known = set(reported)
    problems = [f"drive {drive.name!r} reads metric {metric!r}" for drive in drives for metric in drive.metrics
                if metric not in known]
    if problems:
        raise HomeostasisError(f"{'; '.join(problems)}, which {runtime} never reports (it reports: "
                               f"{', '.join(sorted(known))}); fix the drive's metric or use a runtime that reports it")


class HomeostaticLoop:
    """Turns metrics into at most one ``Impulse`` per call, for the most urgent drive.

    ``clock`` (monotonic seconds) times the refractory periods; ``impulse(..., now=)`` overrides it.
    Drives whose metric is absent from the mapping are not consulted here (metrics arrive from
    different parts of a runtime at different rates); a runtime refuses, when it loads the drives, one
    whose metric it never reports (:func:`check_drive_metrics`).
    """

    def __init__(
        self,
        drives: Iterable[IntrinsicDrive],
        *,
        sender: str = "homeostasis",
        priority: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.drives = tuple(drives)
        for drive in self.drives:
            if not isinstance(drive, IntrinsicDrive):
                raise HomeostasisError(f"HomeostaticLoop: expected IntrinsicDrive instances, got {drive!r}")
        names = [drive.name for drive in self.drives]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise HomeostasisError(f"HomeostaticLoop: drive name(s) used twice: {', '.join(duplicates)}")
        self.sender = sender
        self.priority = priority
        self.clock = clock
        self._last_fired: dict[str, float] = {}
        self.impulses_emitted = 0
        self.suppressed = 0  # out-of-band signals held back by a refractory period

    def signals(self, metrics: Mapping[str, Any]) -> list[DriveSignal]:
        """Every drive's current signal (ignoring refractory periods), most urgent first."""
        found = [
            signal
            for drive in self.drives
            if drive.metric in metrics and (signal := drive.signal(metrics[drive.metric])) is not None
        ]
        return sorted(found, key=lambda signal: -signal.urgency)

    def in_refractory(self, drive: IntrinsicDrive, now: float) -> bool:
        fired = self._last_fired.get(drive.name)
        return fired is not None and now - fired < drive.refractory_s

    def impulse(self, metrics: Mapping[str, Any], *, now: float | None = None) -> EventEnvelope | None:
        """One ``Impulse`` event for the most urgent drive out of band and not refractory, or None."""
        if not isinstance(metrics, Mapping):
            raise HomeostasisError(f"impulse expects a mapping of metric values, got {type(metrics).__name__}")
        now = self.clock() if now is None else _real("now", now)
        best: tuple[DriveSignal, IntrinsicDrive] | None = None
        for drive in self.drives:
            if drive.metric not in metrics:
                continue
            signal = drive.signal(metrics[drive.metric])
            if signal is None:
                continue
            if self.in_refractory(drive, now):
                self.suppressed += 1
                continue
            if best is None or signal.urgency > best[0].urgency:
                best = (signal, drive)
        if best is None:
            return None
        signal, drive = best
        self._last_fired[drive.name] = now
        self.impulses_emitted += 1
        return EventEnvelope(IMPULSE_EVENT_TYPE, signal.to_payload(), self.sender, priority=self.priority)

    def reset(self) -> None:
        """Forget when drives last fired."""
        self._last_fired.clear()
