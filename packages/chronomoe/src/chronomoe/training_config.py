"""Configuration of ``layer.chrono_lifecycle``, the trainer-driven ChronoMoE lifecycle (torch-free)."""

from __future__ import annotations

from typing import Literal

import attrs

from mosaic.core.validators import at_least, one_of, optional

#: ``free_energy``: ChronoSystem's slow clock — an edit is taken only when it lowers the predicted
#: F_l by ``min_delta_f``; ``adhoc``: the original's fixed thresholds — prune when φ_slow <
#: ``prune_phi``, split when bimodal (no relaxation trial), spawn when starving; no F_l check.
TRIGGERS = ("free_energy", "adhoc")


@attrs.frozen
class ChronoLifecycleConfig:
    """The ChronoConfig (clocks, thresholds, lifecycle intervals) is the routers' own ``chrono``."""

    trigger: Literal["free_energy", "adhoc"] = attrs.field(default="free_energy", validator=one_of(*TRIGGERS))
    # experts live at the start (the rest are free columns for splits and spawns); None = all
    n_active: int | None = attrs.field(default=None, validator=optional(at_least(1)))
    seed: int = 0
