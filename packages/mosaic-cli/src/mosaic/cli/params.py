"""Click parameter types the commands share, for values click's own types let through.

``click.FloatRange`` accepts ``nan`` (every comparison with NaN is false), and ``int`` accepts any
integer, while torch's generators take a seed only in ``[-2**63, 2**64)``: both used to end in a
traceback deep inside sampling. Here they are usage errors (exit code 2) that name the option.
"""

from __future__ import annotations

import math
from typing import Any

import click

#: The seeds ``torch.Generator.manual_seed`` accepts.
SEED_RANGE = (-(2**63), 2**64 - 1)


class FiniteFloatRange(click.FloatRange):
    """A ``click.FloatRange`` that also refuses ``nan`` and ``inf``."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


#: A sampling seed torch can take.
SEED = click.IntRange(*SEED_RANGE)
