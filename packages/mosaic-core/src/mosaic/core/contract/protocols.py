"""The Protocols of the seams between packages: what one package may call on another's objects.

Packages never import each other across these seams (the runtime does not import mosaic-layers,
mosaic-data or chronomoe; mosaic-layers does not import chronomoe); they check an object against
one of these Protocols with ``isinstance`` (``runtime_checkable``: it checks that the methods
exist, the signatures are documented here and checked by mypy) and call it.

Tensors are typed ``Any`` here because core does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

# --- plugins -------------------------------------------------------------------------------------


class Register(Protocol):
    """The callable a registration hook receives (see :mod:`mosaic.core.plugins.hookspecs`)."""

    def __call__(self, component_id: str, factory: str | Callable[..., Any], *, summary: str,
                 config: str | type | None = None) -> None: ...


# --- models and their streaming state ------------------------------------------------------------


@runtime_checkable
class StreamingState(Protocol):
    """A model's state between calls: copyable, movable and savable across restarts."""

    def copy(self) -> StreamingState: ...

    def to(self, device: Any) -> StreamingState: ...

    def state_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_state_dict(cls, data: dict[str, Any]) -> StreamingState: ...


@runtime_checkable
class StreamingModel(Protocol):
    """What the event runtimes call on a model. ``forward(batch)``, ``step(ids (B,), state)`` and
    ``prefill(ids (B, T), state)`` return a ``ModelOutput`` (with ``state`` for the latter two)."""

    def init_state(self, batch_size: int, device: Any = None) -> StreamingState: ...

    def step(self, ids: Any, state: Any) -> Any: ...

    def prefill(self, ids: Any, state: Any) -> Any: ...

    def forward(self, batch: Mapping[str, Any], state: Any = None) -> Any: ...


@runtime_checkable
class DeclaresOpcodes(Protocol):
    """A model whose VM has an opcode table (names by id; the v0 names first)."""

    @property
    def opcode_names(self) -> list[str]: ...


@runtime_checkable
class RecurrentStateCounter(Protocol):
    """A model that counts the floats it carries between tokens, per layer, for one sample after
    ``context_length`` tokens (memory table, state bank, registers, conv tail; a Transformer's KV
    cache grows with ``context_length``, a recurrent model's state does not)."""

    def recurrent_state_floats(self, context_length: int) -> list[int]: ...


@runtime_checkable
class DeclaresContextLength(Protocol):
    """A dataset whose samples are at most ``block_size`` tokens long (the run's context length)."""

    block_size: int


class MemoryCellsView(Protocol):
    """One layer's memory cells: ``occupancy`` (write strength in [0, 1], 0 empty) and ``utility``
    (worth keeping) share one shape; ``keys``/``values`` add a trailing feature axis."""

    @property
    def occupancy(self) -> Any: ...

    @property
    def utility(self) -> Any: ...


@runtime_checkable
class MemoryReadBack(Protocol):
    """Reading a model's memory back (consolidation, inspection, live metrics), apart from the fast
    path, without the caller knowing how the state lays memory out.

    ``memory_cells(state)`` lists one :class:`MemoryCellsView` per layer;
    ``replay_memory(state, cells, select)`` returns the logits the selected cells predict;
    ``forget_memory_cells(state, cells, select)`` clears them in place and returns how many;
    ``refresh_memory_cells(state, cells, select)`` re-writes them in place as the newest writes (so
    they survive overwriting longest) and returns how many."""

    def memory_cells(self, state: Any) -> list[Any]: ...

    def replay_memory(self, state: Any, cells: Any, select: Any) -> Any: ...

    def forget_memory_cells(self, state: Any, cells: Any, select: Any) -> Any: ...

    def refresh_memory_cells(self, state: Any, cells: Any, select: Any) -> Any: ...


# --- block memories (kind ``memory``) -------------------------------------------------------------


@runtime_checkable
class BlockMemory(Protocol):
    """The memory of a MOSAIC block, registered as ``memory.<name>`` and chosen by the block config
    (``memory: {type: memory.<name>, ...}``; the default is ``memory.hashed``).

    The fast path is ``forward``: ``u (B, T, D)`` is the token with its local context, ``controls``
    the VM's per-token channels (``read``, ``write``, ``clear``, ``scan`` ... each ``(B, T)``),
    ``teacher`` the teacher-forcing decisions, ``state`` the memory's own per-sample state (from
    ``init_state``), ``chunk`` the scan chunk length and ``scan`` whether the SCAN summary is read.
    It returns the memory's contribution ``(B, T, D)`` to the block's fusion, its aux outputs (keys
    of ``mosaic.core.contract.keys``) and the state after the last token. A token reads what was
    written before it, never its own write."""

    def init_state(self, batch_size: int, device: Any, dtype: Any) -> Any: ...

    def forward(self, u: Any, controls: Any, teacher: Any, state: Any, chunk: int, *,
                scan: bool) -> tuple[Any, dict[str, Any], Any]: ...

    # a torch module is called, not forwarded: the call runs hooks, then ``forward``
    def __call__(self, u: Any, controls: Any, teacher: Any, state: Any, chunk: int, *,
                 scan: bool) -> tuple[Any, dict[str, Any], Any]: ...


@runtime_checkable
class ReadableBlockMemory(Protocol):
    """A block memory whose cells can be read back, replayed and forgotten (consolidation); kept
    apart from the fast path, and optional: a memory without it runs but cannot be consolidated."""

    def read_cells(self, state: Any, layer: int) -> MemoryCellsView: ...

    def replay_values(self, values: Any) -> Any: ...

    def forget_cells(self, state: Any, cells: Any, select: Any) -> int: ...

    def refresh_cells(self, state: Any, cells: Any, select: Any) -> int: ...


# --- training hooks and the lifecycle controller -------------------------------------------------


@runtime_checkable
class TrainingHooks(Protocol):
    """A model the trainer drives after each optimizer step, with controller state in checkpoints.

    ``after_optimizer_step`` returns the decisions taken (JSON-able dicts), which the trainer writes
    to the run's ``decisions.jsonl``."""

    def after_optimizer_step(
        self, step: int, optimizer: Any, probe: TrainingProbe | None = None
    ) -> list[dict[str, Any]]: ...

    def lifecycle_state_dict(self) -> dict[str, Any] | None: ...

    def load_lifecycle_state_dict(self, state: dict[str, Any] | None) -> None: ...


@runtime_checkable
class TrainingProbe(Protocol):
    """What a trainer lends a lifecycle controller so that structural edits are decided on evidence.

    - ``total_steps``: the run's planned optimizer steps (a controller stops editing near the end);
    - ``trial_losses(edit, relax_steps)``: on the live model, run ``edit()`` (or nothing), take
      ``relax_steps`` optimizer steps on training batches, and return ``(probe, check)``: the mean
      loss on a fixed probe set the relaxation never trains on (what the controller decides on) and
      on a disjoint held-out check set (the realised effect a prediction is checked against; None
      where there is none); then restore the model, the optimizer and the RNG exactly as they were.
      Every call at the same trainer step relaxes on the same batches, so an edited copy and the
      unedited one differ only by the edit. The controller restores its own bookkeeping (the
      edit's side effects outside the model)."""

    @property
    def total_steps(self) -> int: ...

    def trial_losses(self, edit: Callable[[], None] | None, relax_steps: int) -> tuple[float, float | None]: ...


@runtime_checkable
class KnowsRunDir(Protocol):
    """A probe that also names the run directory (``None`` when the run writes none), where a
    controller keeps files of its own (chronomoe's kernel audit log)."""

    @property
    def run_dir(self) -> Any: ...


@runtime_checkable
class LifecycleController(Protocol):
    """The component a model's ``lifecycle`` mapping names (e.g. ``layer.chrono_lifecycle``),
    attached lazily at the first optimizer step (the optimizer is built after the model); ``probe``
    is the trainer's :class:`TrainingProbe` (None where no trainer lends one, e.g. a bare loop)."""

    def attach(self, layers: Sequence[Any], optimizer: Any, probe: TrainingProbe | None = None) -> None: ...

    def step(self) -> list[dict[str, Any]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# --- curricula -----------------------------------------------------------------------------------


@runtime_checkable
class Curriculum(Protocol):
    """A schedule over training: ``update`` adjusts the dataset and returns the values it set."""

    def update(self, step: int, total_steps: int, dataset: Any) -> Mapping[str, float]: ...


@runtime_checkable
class DifficultyAdjustable(Protocol):
    """A dataset whose difficulty a curriculum ramps (``level`` in [0, 1])."""

    def set_difficulty(self, level: float) -> None: ...


@runtime_checkable
class TeacherForcingAdjustable(Protocol):
    """A dataset whose per-item teacher-forcing probability a curriculum decays."""

    def set_teacher_forcing(self, probability: float) -> None: ...


@runtime_checkable
class CollatingDataset(Protocol):
    """A dataset that batches its own items (the trainer's default ``collate`` otherwise)."""

    def collate(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]: ...


@runtime_checkable
class BatchedDataset(Protocol):
    """A dataset that builds many items at once, faster than one ``__getitem__`` each."""

    def __getitems__(self, indices: Sequence[int]) -> Sequence[Mapping[str, Any]]: ...


# --- routers and feed-forwards -------------------------------------------------------------------


@runtime_checkable
class RouterColumns(Protocol):
    """Which of a router's fixed ``E`` columns hold live experts (the lifecycle switches them).

    ``active`` is an ``(E,)`` bool buffer; ``mask(logits)`` puts ``-inf`` in inactive columns and
    ``key(key)`` adds the entry offset of experts warming in. ``chronomoe.routers.ExpertColumns`` is
    the implementation every router can reuse.
    """

    active: Any

    def mask(self, logits: Any) -> Any: ...

    def key(self, key: Any) -> Any: ...


@runtime_checkable
class Router(Protocol):
    """A token-to-expert router, as the MoE layer (``layer.moe``) drives it.

    - ``forward(x (N, D), sequence_length=T)`` returns a ``chronomoe.routers.RouterOutput``:
      ``expert_idx (N, k)`` int64, ``gates (N, k)`` differentiable, ``clean_logits (N, E)`` (``-inf``
      in inactive columns), ``selection_key (N, E)`` (what top-k ran on, detached), ``probs (N, E)``,
      the 0-d ``load_balance_loss``, ``z_loss`` and ``aux_loss`` (added to the task loss), ``bias (E,)``
      and ``metrics`` (0-d tensors, reported as ``moe_<name>``). ``k`` is read from ``expert_idx``,
      so ``top_k`` may change at run time.
    - ``n_experts`` and ``top_k`` are the layer's (the layer injects ``d_model``, ``n_experts`` and
      ``top_k`` into the router's config); ``columns`` is a :class:`RouterColumns`.
    - ``needs_trace``: the layer computes a ``MoETrace`` (coherence inputs) every forward when true;
      ``leave_one_out`` and ``token_level`` say how per-expert coherence φ is computed from it.
    - ``observe(route, trace, phi, seen)`` is called once per training forward (``trace``, ``phi``
      and ``seen`` are ``None`` when no trace was computed): slow state is advanced here, on the
      device, without host syncs.
    - Optionally :class:`StepsAfterOptimizer` for an update once per optimizer step.

    A worked example is ``router.cosine`` in ``examples/mosaic-plugin-example`` (docs/plugins.md).
    """

    n_experts: int
    top_k: int
    needs_trace: bool
    leave_one_out: bool
    token_level: bool
    columns: RouterColumns

    def __call__(self, x: Any, sequence_length: int | None = None) -> Any: ...

    def forward(self, x: Any, sequence_length: int | None = None) -> Any: ...

    def observe(self, route: Any, trace: Any, phi: Any, seen: Any) -> None: ...


@runtime_checkable
class FeedForward(Protocol):
    """A block's feed-forward ``(B, T, D) -> (B, T, D)``."""

    def forward(self, x: Any) -> Any: ...


@runtime_checkable
class StepsAfterOptimizer(Protocol):
    """A feed-forward with a per-step update outside autograd (e.g. ``router.loss_free``'s bias),
    called by the model's training hooks after every optimizer step."""

    def after_optimizer_step(self) -> None: ...


@runtime_checkable
class RaisesRunEvents(Protocol):
    """A feed-forward that raises events while it runs (remote experts' ``Degraded`` and
    ``Restored``): the model's training hooks drain them after every optimizer step, and the trainer
    writes them to the run's ``decisions.jsonl`` beside the lifecycle's decisions.

    ``drain_run_events`` returns the events raised since its last call, each a JSON-able dict with
    at least ``action`` (the event kind, lower case) and ``source`` (the component)."""

    def drain_run_events(self) -> list[dict[str, Any]]: ...


@runtime_checkable
class ReportsAux(Protocol):
    """A layer that reports auxiliary losses and metrics of its last forward (``moe_*`` keys)."""

    def aux_outputs(self) -> Mapping[str, Any]: ...


# --- objectives ----------------------------------------------------------------------------------


@runtime_checkable
class Objective(Protocol):
    """``objective(output, batch) -> (loss, metrics)``: reads keys of the model output and batch."""

    def __call__(self, output: Any, batch: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]: ...


@runtime_checkable
class DescribesSources(Protocol):
    """An objective that names the model and dataset in its errors about missing keys."""

    def describe_sources(self, *, model: str, dataset: str) -> None: ...


# --- naming what is missing ----------------------------------------------------------------------

_CALLABLE_DUNDERS = ("__call__", "__getitems__")


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The methods and properties ``protocol`` declares (the names ``isinstance`` checks)."""
    names: list[str] = []
    for klass in protocol.__mro__:
        if klass is object or klass.__name__ in ("Protocol", "Generic"):
            continue
        declared = [*vars(klass).get("__annotations__", {}), *vars(klass)]  # data members, then methods
        names.extend(name for name in dict.fromkeys(declared)
                     if (not name.startswith("_") or name in _CALLABLE_DUNDERS) and name not in names)
    return tuple(names)


def missing_members(obj: object, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks, for error messages that say what to add."""
    return [name for name in protocol_members(protocol) if not hasattr(obj, name)]
