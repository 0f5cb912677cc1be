"""Configuration of ``layer.chrono_lifecycle``, the trainer-driven ChronoMoE lifecycle (torch-free)."""

from __future__ import annotations

from typing import Literal

import attrs

from mosaic.core.validators import at_least, greater_than, one_of, optional, reject

#: ``free_energy``: ChronoSystem's slow clock — edits ranked by predicted F_l and decided on held-out
#: evidence (chronomoe.evidence); ``adhoc``: the original's fixed thresholds — prune when φ_slow <
#: ``prune_phi``, split when bimodal, spawn when starving; no F_l check; ``none``: the registry only
#: (``n_active`` of the columns live, capacity over them) and no clock at all — the paired control
#: of the same network without a lifecycle; ``schedule``: no decision at all — at train step
#: ``grow_at`` every live expert spawns once (most selected first) into the free columns, the edit
#: the evidence gate is asked to judge, taken on a schedule to measure what it is worth.
TRIGGERS = ("free_energy", "adhoc", "none", "schedule")


@attrs.frozen
class SovereignConfig:
    """The sovereign core around the trainer-driven lifecycle (``chronomoe.sovereign``): the kernel
    with its audit log in the run directory and one keeper process per clock.

    - ``fast_interval``: steps between the fast keeper's snapshots (the mid and slow keepers get one
      at their clock's ``mid_interval`` / ``slow_interval``); never every step.
    - ``keeper_timeout_s``: a keeper that owes a heartbeat for longer is hung (paused, restarted).
    - ``key_file``: the audit log's checkpoint signing key; default ``$MOSAIC_AUDIT_KEY_FILE``, else
      ``audit.key`` in the user key directory (``mosaic.core.keys``). It may not lie inside the run
      directory.
    - ``logic``: import paths of the keepers' logic by clock (default ``chronomoe.keeper_logic``).
    """

    fast_interval: int = attrs.field(default=10, validator=at_least(1))
    keeper_timeout_s: float = attrs.field(default=30.0, validator=greater_than(0.0))
    key_file: str | None = None
    logic: dict[str, str] = attrs.Factory(
        lambda: {
            "fast": "chronomoe.keeper_logic:fast_reflexes",
            "mid": "chronomoe.keeper_logic:mid_epochs",
            "slow": "chronomoe.keeper_logic:slow_scars",
        }
    )

    def __attrs_post_init__(self) -> None:
        if sorted(self.logic) != ["fast", "mid", "slow"]:
            reject("logic", f"name the logic of exactly the clocks fast, mid, slow; got {sorted(self.logic)}")


@attrs.frozen
class ChronoLifecycleConfig:
    """The ChronoConfig (clocks, thresholds, lifecycle intervals) is the routers' own ``chrono``."""

    trigger: Literal["free_energy", "adhoc", "none", "schedule"] = attrs.field(
        default="free_energy", validator=one_of(*TRIGGERS))
    # experts live at the start (the rest are free columns for splits and spawns); None = all
    n_active: int | None = attrs.field(default=None, validator=optional(at_least(1)))
    seed: int = 0
    # the sovereign core (kernel, audit log, keeper processes); null: the lifecycle runs alone
    # (ignored with trigger "none", which runs no clock)
    kernel: SovereignConfig | None = None
    # trigger "schedule": the train step of the scheduled growth (required there, refused elsewhere)
    grow_at: int | None = attrs.field(default=None, validator=optional(at_least(1)))

    def __attrs_post_init__(self) -> None:
        if (self.trigger == "schedule") != (self.grow_at is not None):
            reject("grow_at", "trigger 'schedule' needs grow_at (the train step of the scheduled growth) and no "
                              f"other trigger takes one; got trigger {self.trigger!r}, grow_at {self.grow_at}")
