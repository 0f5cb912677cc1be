"""The lifecycle's edit kinds as data: one row per kind (propose, predicted effect, apply, guard).

Everything that handles an edit by kind reads this table: the slow clock's proposals
(:func:`chronomoe.edits.propose_edits`), queued kernel edits and :meth:`ChronoSystem.apply_edit`,
the ad-hoc controller of ``layer.chrono_lifecycle``, and the decision records (``expert_delta``)
that ``mosaic chrono report`` counts live experts from. A new edit kind is one more row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs

from chronomoe.expert_registry import LifecycleError
from chronomoe.free_energy import (
    LayerView,
    after_merge,
    after_prune,
    after_spawn,
    after_split,
    pair_redundancy,
)

if TYPE_CHECKING:
    from chronomoe.buffer import CoherenceSnapshot
    from chronomoe.config import ChronoConfig
    from chronomoe.expert_registry import ExpertRegistry
    from chronomoe.lifecycle import LayerHealth


@attrs.frozen
class Candidate:
    """One edit a kind proposes: the expert acted on, the other expert (absorbed by a merge, the new
    column of a split or spawn) and why."""

    expert: int
    other: int | None
    trigger: str


@attrs.frozen
class EditContext:
    """What a kind's ``propose`` may look at for one layer at one slow evaluation."""

    registry: ExpertRegistry
    snapshot: CoherenceSnapshot
    health: LayerHealth
    split_passed: list[int]  # experts whose relaxation trial passed
    config: ChronoConfig
    view: LayerView
    settled: list[int]  # live experts out of cooling
    # edits are decided on held-out evidence (chronomoe.evidence): the kinds also propose the
    # edits their thresholds would not, for the trial to judge (prune the least selected expert,
    # spawn from the most selected one)
    explore: bool = False


@attrs.frozen
class EditKind:
    """One row of the table.

    - ``propose(context) -> [Candidate]``: the candidates of this kind (none: nothing to propose);
    - ``predict(view, candidate) -> LayerView``: the layer as it would be after the edit, scored by F;
    - ``apply(registry, candidate)``: carry the edit out;
    - ``guard(registry, candidate) -> reason | None``: why a queued edit no longer applies;
    - ``expert_delta``: the change in the layer's live experts (its sign, where ``count`` is set);
    - ``adhoc_rank``: the ad-hoc controller's preference (lower first; None: not an ad-hoc edit);
    - ``count(registry, candidate) -> int``: the change, where it depends on the layer (widen).
    """

    name: str
    propose: Callable[[EditContext], list[Candidate]]
    predict: Callable[[LayerView, Candidate], LayerView]
    apply: Callable[[ExpertRegistry, Candidate], object]
    guard: Callable[[ExpertRegistry, Candidate], str | None]
    expert_delta: int
    adhoc_rank: int | None = None
    count: Callable[[ExpertRegistry, Candidate], int] | None = None

    def change(self, registry: ExpertRegistry, candidate: Candidate) -> int:
        """The change in the layer's live experts this edit would make now."""
        return self.expert_delta if self.count is None else self.count(registry, candidate)


# --- the built-in kinds ----------------------------------------------------------------------------


def _propose_prune(c: EditContext) -> list[Candidate]:
    if not c.registry.can_shrink() or (c.health.starving and not c.explore):
        return []
    found = []
    for e in c.settled:
        stats = c.snapshot.experts[e]
        if stats.tokens_seen >= c.config.prune_min_tokens and stats.phi_slow < c.config.prune_phi:
            found.append(Candidate(e, None, f"phi_slow {stats.phi_slow:.3f} < {c.config.prune_phi}"))
    if c.explore and c.settled and not found:
        least = min(c.settled, key=lambda e: (float(c.view.share[c.view.index(e)]), e))
        share = float(c.view.share[c.view.index(least)])
        found.append(Candidate(least, None, f"least selected (share {share:.3f}): for the trial to judge"))
    return found


def _propose_merge(c: EditContext) -> list[Candidate]:
    """The most redundant pair (survivor = the larger share) among experts out of their guard."""
    if not c.registry.can_shrink():
        return []
    mergeable = [e for e in c.settled if c.registry.can_merge(e)]
    if len(mergeable) < 2:
        return []
    rows = [c.view.index(e) for e in mergeable]
    pairs = pair_redundancy(c.view)[rows][:, rows]
    flat = int(pairs.argmax())
    i, j = mergeable[flat // len(rows)], mergeable[flat % len(rows)]
    if i == j:
        return []
    share = c.view.share
    survivor, absorbed = (i, j) if share[c.view.index(i)] >= share[c.view.index(j)] else (j, i)
    return [Candidate(survivor, absorbed, f"redundancy {float(pairs.max()):.3f}")]


def _propose_split(c: EditContext) -> list[Candidate]:
    child = c.registry.free_column()
    if not c.registry.can_grow() or child is None:
        return []
    return [Candidate(e, child, "bimodal after relaxation trial") for e in c.split_passed if e in c.settled]


def _propose_spawn(c: EditContext) -> list[Candidate]:
    """Only while the layer starves (or when exploring for a trial): clone the most selected expert."""
    child = c.registry.free_column()
    if not c.registry.can_grow() or child is None or not (c.health.starving or c.explore) or not c.settled:
        return []
    source = max(c.settled, key=lambda e: float(c.view.share[c.view.index(e)]))
    reason = ("layer starving: " + "; ".join(c.health.reasons)) if c.health.starving else (
        "most selected: for the trial to judge")
    return [Candidate(source, child, reason)]


def _widen_sources(registry: ExpertRegistry, view: LayerView) -> list[int]:
    """The experts a widen clones, most selected first: one per free column, settled experts only."""
    settled = [e for e in registry.live() if registry.states[e] != "cooling"]
    room = sum(1 for s in registry.states if s == "archived")
    if registry.config.max_experts is not None:
        room = min(room, registry.config.max_experts - len(registry.live()))
    return view.most_selected(settled)[:max(0, room)]


def _propose_widen(c: EditContext) -> list[Candidate]:
    """With ``widen``, while the layer starves (or when exploring for a trial): every settled expert
    spawns once, the most selected first, into the free columns (two or more of them)."""
    if not c.config.lifecycle.widen or not (c.health.starving or c.explore) or not c.registry.can_grow():
        return []
    sources = _widen_sources(c.registry, c.view)
    child = c.registry.free_column()
    if len(sources) < 2 or child is None:
        return []  # one new expert is a spawn
    reason = ("layer starving: " + "; ".join(c.health.reasons)) if c.health.starving else "for the trial to judge"
    return [Candidate(sources[0], child, f"widen by {len(sources)}: {reason}")]


def _predict_widen(view: LayerView, c: Candidate) -> LayerView:
    # the view holds the live experts only, not the free columns: every one spawns here, which
    # over-counts a widen short of room; the proxy only orders the kinds' candidates for the trials
    for n, source in enumerate(view.most_selected()):
        view = after_spawn(view, source, _other(c) + n)  # column ids only label the new rows
    return view


def _widen_sources_now(registry: ExpertRegistry) -> list[int]:
    from chronomoe.edits import layer_view

    return _widen_sources(registry, layer_view(registry))


def _apply_widen(registry: ExpertRegistry, _c: Candidate) -> None:
    for source in _widen_sources_now(registry):
        registry.spawn(source)


def _apply_merge(registry: ExpertRegistry, c: Candidate) -> None:
    from chronomoe.edits import layer_view

    view = layer_view(registry)
    shares = (float(view.share[view.index(c.expert)]), float(view.share[view.index(_other(c))]))
    registry.merge(c.expert, _other(c), share=shares)


def _no_room(registry: ExpertRegistry, _c: Candidate) -> str | None:
    return None if registry.can_grow() else "no room"


def _at_minimum(registry: ExpertRegistry, _c: Candidate) -> str | None:
    return None if registry.can_shrink() else "at the minimum"


def _guard_merge(registry: ExpertRegistry, c: Candidate) -> str | None:
    if registry.guarded("merge", c.expert, c.other):
        return "oscillation guard"
    return _at_minimum(registry, c)


def _guard_split(registry: ExpertRegistry, c: Candidate) -> str | None:
    return _no_room(registry, c) or ("oscillation guard" if registry.guarded("split", c.expert, c.other) else None)


def _other(c: Candidate) -> int:
    if c.other is None:
        raise LifecycleError(f"an edit of expert {c.expert} needs the other expert (merge, split, spawn)")
    return c.other


#: The edit kinds by name, in proposal order.
EDIT_KINDS: dict[str, EditKind] = {
    kind.name: kind
    for kind in (
        EditKind("prune", _propose_prune, lambda v, c: after_prune(v, c.expert),
                 lambda r, c: r.prune(c.expert), _at_minimum, expert_delta=-1, adhoc_rank=0),
        EditKind("merge", _propose_merge, lambda v, c: after_merge(v, c.expert, _other(c)),
                 _apply_merge, _guard_merge, expert_delta=-1),
        EditKind("split", _propose_split, lambda v, c: after_split(v, c.expert, _other(c)),
                 lambda r, c: r.split(c.expert), _guard_split, expert_delta=1, adhoc_rank=1),
        EditKind("spawn", _propose_spawn, lambda v, c: after_spawn(v, c.expert, _other(c)),
                 lambda r, c: r.spawn(c.expert), _no_room, expert_delta=1, adhoc_rank=2),
        EditKind("widen", _propose_widen, _predict_widen, _apply_widen, _no_room, expert_delta=1,
                 count=lambda r, _c: len(_widen_sources_now(r))),
    )
}


def edit_kind(name: str, table: Mapping[str, EditKind] | None = None) -> EditKind:
    """The row of ``name`` or a :class:`LifecycleError` listing the known kinds."""
    table = EDIT_KINDS if table is None else table
    if name not in table:
        raise LifecycleError(f"unknown edit {name!r} (edit kinds: {', '.join(table)})")
    return table[name]
