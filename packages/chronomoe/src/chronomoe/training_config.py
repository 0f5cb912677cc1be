"""Configuration of ``layer.chrono_lifecycle``, the trainer-driven ChronoMoE lifecycle (torch-free)."""

from __future__ import annotations

from typing import Literal

import attrs

from mosaic.core.validators import at_least, one_of, optional

#: ``free_energy``: ChronoSystem's slow clock — edits ranked by predicted F_l and decided on held-out
#: evidence (chronomoe.evidence); ``adhoc``: the original's fixed thresholds — prune when φ_slow <
#: ``prune_phi``, split when bimodal, spawn when starving; no F_l check; ``none``: the registry only
#: (``n_active`` of the columns live, capacity over them) and no clock at all — the paired control
#: of the same network without a lifecycle.
TRIGGERS = ("free_energy", "adhoc", "none")


@attrs.frozen
class ChronoLifecycleConfig:
    """The ChronoConfig (clocks, thresholds, lifecycle intervals) is the routers' own ``chrono``."""

    trigger: Literal["free_energy", "adhoc", "none"] = attrs.field(default="free_energy", validator=one_of(*TRIGGERS))
    # experts live at the start (the rest are free columns for splits and spawns); None = all
    n_active: int | None = attrs.field(default=None, validator=optional(at_least(1)))
    seed: int = 0
