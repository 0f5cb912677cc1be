"""Hypothesis profiles for mosaic-core's tests.

``default`` keeps quick runs quick; ``ci`` (``HYPOTHESIS_PROFILE=ci``, used by the nox session)
raises every property to at least 10,000 examples, as the event substrate's contract demands.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=200, deadline=None)
settings.register_profile(
    "ci",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
