"""Click parameter types the commands share, for values click's own types let through.

``click.FloatRange`` accepts ``nan`` (every comparison with NaN is false), and ``int`` accepts any
integer, while torch's generators take a seed only in ``[-2**63, 2**64)``: both used to end in a
traceback deep inside sampling. Here they are usage errors (exit code 2) that name the option.
"""

from __future__ import annotations

import math
from pathlib import Path
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


def png_path(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
    """A click callback: a ``.png`` file in a directory that exists (matplotlib would add a suffix of
    its own to a bare name, and fail late on a missing directory or another format)."""
    if path is None:
        return None
    if path.suffix.lower() != ".png":
        raise click.BadParameter(f"{str(path)!r}: the plot is a PNG, name it NAME.png", ctx, param)
    if not path.parent.is_dir():
        raise click.BadParameter(f"{str(path)!r}: the directory {str(path.parent)!r} does not exist", ctx, param)
    return path


def checked_overrides(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """A click callback for ``--set KEY=VALUE``: a malformed override is a usage error (exit 2)
    before anything is built, with the preset reader's message."""
    from mosaic.core.errors import ConfigError
    from mosaic.runtime.training.variables import parse_override

    for text in values:
        try:
            parse_override(text)
        except ConfigError as exc:
            raise click.BadParameter("; ".join(problem.message for problem in exc.problems), ctx, param) from None
    return values
