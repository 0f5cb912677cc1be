"""``drive.boredom``: an intrinsic drive that fires when recent inputs stop being novel.

The runtime reports ``input_novelty`` (the fraction of recent events whose type it had not seen in
its window); below the band, the homeostatic loop emits an ``Impulse`` that wakes the model to
explore. A drive is just an :class:`~mosaic.core.homeostasis.IntrinsicDrive`: a metric, a healthy
band, a gain and a refractory period.
"""

from __future__ import annotations

import attrs

from mosaic.core.homeostasis import DriveBand, IntrinsicDrive


@attrs.frozen
class BoredomConfig:
    metric: str = "input_novelty"
    band: DriveBand = DriveBand(0.1, 1.0)
    gain: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    refractory_s: float = attrs.field(default=120.0, validator=attrs.validators.ge(0))


def boredom(config: BoredomConfig) -> IntrinsicDrive:
    return IntrinsicDrive(
        name="boredom", metric=config.metric, band=config.band, gain=config.gain, refractory_s=config.refractory_s
    )
