"""Settings of the agent runtimes (attrs, torch-free)."""

from __future__ import annotations

import math
from typing import cast

import attrs
from attrs import validators as v

COMMITMENT_SOURCES = ("head", "vm", "event")


def finite(instance: object, attribute: attrs.Attribute, value: float) -> None:
    """attrs validator: ``nan`` and ``inf`` pass every ``ge``/``le`` bound, so refuse them first."""
    if not math.isfinite(value):
        raise ValueError(f"{attribute.name!r} must be a finite number, got {value}")
TURN_TAKING = ("always", "opcodes")


@attrs.frozen
class GenerationConfig:
    """How a session generates its response events.

    ``temperature`` 0 is greedy decoding; above 0 bytes are sampled from a generator seeded with
    ``seed``. ``commitment_source``: ``"head"`` updates the ledger from the model's commitment head
    (a model without one is refused); ``"vm"`` applies the head's verdict only where the model
    executed COMMIT in the text (``mosaic.runtime.agent.decisions.ledger_delta``); ``"event"`` uses
    the deltas written in the events themselves.

    ``turn_taking``: ``"always"`` answers every event handed to ``handle``; ``"opcodes"`` follows
    the VM: silent where IDLE dominates after the event, emitting from the byte after the first
    position where RESPOND dominates (bytes before it are stepped through, not emitted), and silent
    when no onset comes within ``max_new_bytes``.

    Limits: ``max_new_bytes`` bounds one generated event (and the bytes stepped through while waiting
    for RESPOND); an invalid generation becomes an ``Error`` event whose ``preview`` holds its first
    ``preview_bytes`` bytes (decoded as UTF-8, invalid bytes replaced).
    """

    max_new_bytes: int = attrs.field(default=512, validator=[v.instance_of(int), v.ge(1)])
    preview_bytes: int = attrs.field(default=120, validator=[v.instance_of(int), v.ge(0)])
    temperature: float = attrs.field(default=0.0, converter=float, validator=[finite, v.ge(0.0)])
    # the seeds torch.Generator.manual_seed takes
    seed: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(-(2**63)), v.le(2**64 - 1)])
    commitment_source: str = attrs.field(default="head", validator=v.in_(COMMITMENT_SOURCES))
    sender: str = attrs.field(default="runtime", validator=v.instance_of(str))
    turn_taking: str = attrs.field(default="always", validator=v.in_(TURN_TAKING))


@attrs.frozen
class ConsolidationConfig:
    """Idle-time consolidation of the live session's memory (see ``mosaic.runtime.agent.consolidation``).

    A cell's utility is what the model's ``write_utility`` head said when it was written (in [0, 1]).
    Occupied cells with utility at most ``prune_below`` are cleared; those with utility at least
    ``refresh_above`` are re-written as their buckets' newest writes, so they outlive ring overwrite
    (None: no refresh). Up to ``replay_samples`` occupied cells, drawn in proportion to their utility,
    are replayed; with ``online_step`` and an online learner, the learner takes one IDLE-labelled step
    on the replayed tokens.
    """

    prune_below: float = attrs.field(default=0.2, converter=float, validator=[finite, v.ge(0.0), v.le(1.0)])
    refresh_above: float | None = attrs.field(default=cast("float | None", 0.5),
                                              validator=v.optional([v.instance_of(float), finite, v.ge(0.0), v.le(1.0)]))
    replay_samples: int = attrs.field(default=2, validator=[v.instance_of(int), v.ge(0)])
    online_step: bool = attrs.field(default=False, validator=v.instance_of(bool))
    seed: int = attrs.field(default=0, validator=v.instance_of(int))


#: Linear layers that get adapters unless told otherwise (fnmatch patterns; at least one must match)
DEFAULT_ADAPTER_TARGETS = ("head", "blocks.*.mixer.up", "blocks.*.mixer.down")


@attrs.frozen
class OnlineConfig:
    """Medium-timescale learning: LoRA-style adapters on the Linear layers whose qualified names
    match any of ``targets`` (fnmatch patterns), updated every ``update_every`` tokens from a replay
    buffer of the latest ``buffer_size`` event sequences (``batch`` of them per update). With held-out
    sequences to guard it, an update that raises their loss by more than ``max_heldout_rise`` (a
    fraction) is rolled back. Guard sequences are scored whole (at most ``max_guard_bytes`` each): cut
    to their tail, a trace loses the facts its questions ask about, and an update that breaks recall
    passes the guard."""

    #: the defaults are bench_idle's measured set-up (docs/runtime.md): the output head and, in a
    #: MosaicLM, its blocks' local mixers (a model without mixers adapts its head alone)
    targets: tuple[str, ...] = attrs.field(default=DEFAULT_ADAPTER_TARGETS, converter=tuple)
    rank: int = attrs.field(default=8, validator=[v.instance_of(int), v.ge(1)])
    alpha: float = attrs.field(default=16.0, converter=float, validator=v.gt(0.0))
    lr: float = attrs.field(default=3e-3, converter=float, validator=v.gt(0.0))
    update_every: int = attrs.field(default=384, validator=[v.instance_of(int), v.ge(1)])
    buffer_size: int = attrs.field(default=24, validator=[v.instance_of(int), v.ge(1)])
    batch: int = attrs.field(default=4, validator=[v.instance_of(int), v.ge(1)])
    max_sequence_bytes: int = attrs.field(default=1024, validator=[v.instance_of(int), v.ge(2)])
    max_heldout_rise: float = attrs.field(default=0.03, converter=float, validator=v.ge(0.0))
    max_guard_bytes: int = attrs.field(default=16384, validator=[v.instance_of(int), v.ge(2)])
    #: 0: each buffered sequence is one fed event alone; > 0: the stream's last ``context_bytes``
    #: tokens ending at that event, so an event that depends on earlier ones (an answer on its
    #: facts) is learned with them, not from a fresh state that teaches it to guess
    context_bytes: int = attrs.field(default=0, validator=[v.instance_of(int), v.ge(0)])
    #: rehearsal: each update adds ``anchor_weight`` x the KL divergence from the base model's
    #: next-byte distribution to the adapted one on ``rehearse`` sequences of the training
    #: distribution (:meth:`~mosaic.runtime.agent.online.OnlineLearner.rehearse_with`), so a step that
    #: learns the new pattern is pulled back wherever it moves the old one; 0 turns it off
    anchor_weight: float = attrs.field(default=30.0, converter=float, validator=v.ge(0.0))
    rehearse: int = attrs.field(default=2, validator=[v.instance_of(int), v.ge(1)])
    seed: int = attrs.field(default=0, validator=v.instance_of(int))

    @targets.validator
    def _check_targets(self, _attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
        if not value or not all(isinstance(item, str) and item for item in value):
            raise ValueError(f"targets: expected non-empty name patterns, got {value!r}")


@attrs.frozen
class LiveConfig:
    """The autonomous loop: ``poll_ms`` is how long a tick waits for an external event before it
    asks homeostasis; consolidation runs at most every ``consolidate_every_ticks`` idle ticks."""

    poll_ms: int = attrs.field(default=100, validator=[v.instance_of(int), v.ge(0)])
    max_ticks: int | None = attrs.field(default=None, validator=v.optional([v.instance_of(int), v.ge(1)]))
    consolidate_every_ticks: int = attrs.field(default=1, validator=[v.instance_of(int), v.ge(1)])
    save_every_ticks: int | None = attrs.field(default=None, validator=v.optional([v.instance_of(int), v.ge(1)]))
