"""The typed record of one ChronoSystem decision (escalations, trials, edits, identity events).

Records are written to the decision log and returned to the trainer as JSON objects
(:meth:`Decision.to_json`); ``mosaic chrono report`` reads them back from ``decisions.jsonl``
without importing chronomoe, so an edit's effect on the live experts travels in the record
(``edit``, ``expert_delta``) rather than in a copy of the edit names.
"""

from __future__ import annotations

from typing import Any

import attrs

CLOCKS = ("fast", "mid", "slow")


@attrs.frozen
class Decision:
    """``action`` is an edit kind's name when ``edit`` is True (the edit was applied, changing the
    layer's live experts by ``expert_delta``), else a control action (``none``, ``outcome``,
    ``relaxation_trial``, ``warn`` ...)."""

    step: int
    clock: str = attrs.field(validator=attrs.validators.in_(CLOCKS))
    action: str
    layer: int
    expert: int | None
    other: int | None = None
    coherence: dict[str, Any] | None = None
    free_energy: dict[str, float] = attrs.Factory(dict)
    competing: list[dict[str, Any]] = attrs.Factory(list)
    trigger: str = ""
    edit: bool = False
    expert_delta: int = 0
    # an edit scored on held-out loss (chronomoe.evidence): predicted dF, probe losses, realised dloss
    evidence: dict[str, float] = attrs.Factory(dict)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        """A record read back (checkpoints of a pending edit); records written before ``edit`` and
        ``expert_delta`` existed read as non-edits."""
        names = {field.name for field in attrs.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})
