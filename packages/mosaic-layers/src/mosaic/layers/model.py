"""MosaicLM: embedding, a stack of MOSAIC blocks, final norm and vocabulary head; batch forward,
chunked prefill and single-token streaming over a typed :class:`MosaicState`."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.contract import keys
from mosaic.core.contract.protocols import MemoryCellsView, ReadableBlockMemory
from mosaic.core.errors import CheckpointError, ModelError
from mosaic.core.model_output import ModelOutput
from mosaic.layers import recurrent_step
from mosaic.layers.block import MosaicBlock
from mosaic.layers.config import MosaicLMConfig
from mosaic.layers.ffn import LifecycleHooks, TrainingHooksMixin, model_registry
from mosaic.layers.generation import GenerationMixin
from mosaic.layers.isa import V0_OPCODES, Opcode, opcode_table
from mosaic.layers.memory_readback import MemoryCells
from mosaic.layers.state import MosaicState
from mosaic.layers.vm import TeacherForcing

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry

IGNORE_INDEX = keys.IGNORE_INDEX
_VERSION = operator.attrgetter("_version")  # bumped by every in-place update (an optimizer step)
INPUT_IDS, TARGET_IDS = keys.INPUT_IDS.name, keys.TARGET_IDS.name


def _hook_dicts(modules: Sequence[nn.Module]) -> list[Any]:
    """The dicts that hold the forward (pre-)hooks of ``modules`` and the global ones. Registering a
    hook adds to one of them in place, so keeping the list lets :func:`_hooked` test them without
    walking the modules at every step."""
    from torch.nn.modules import module as torch_module

    return [torch_module._global_forward_hooks, torch_module._global_forward_pre_hooks,
            *(m._forward_hooks for m in modules), *(m._forward_pre_hooks for m in modules)]


def _hooked(dicts: Sequence[Any]) -> bool:
    """Whether any of the hook ``dicts`` of :func:`_hook_dicts` holds a hook."""
    return any(dicts)


def init_weights(module: nn.Module) -> None:
    """nanoGPT-style initialisation of linear and embedding weights."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def stack_layer_aux(per_layer: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``{name: (L, ...)}`` from one aux dict per layer (never overwriting a layer's entry)."""
    return {name: torch.stack([aux[name] for aux in per_layer]) for name in per_layer[0]}


def vocabulary_logits(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor | None,
                      labels_only: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits everywhere ``(B, T, V)``, or only at labelled positions ``(N, V)`` with their targets."""
    if labels_only and targets is not None:
        mask = targets != IGNORE_INDEX
        return head(hidden[mask]), targets[mask]
    return head(hidden), None


def language_model_loss(logits: torch.Tensor, targets: torch.Tensor | None,
                        logit_targets: torch.Tensor | None) -> torch.Tensor | None:
    """Mean cross-entropy over labelled positions (0 when there are none), or None without targets.

    ``logits (B, T, V)`` with ``targets (B, T)``; or ``logits (N, V)`` already restricted to the
    labelled positions, with their ``logit_targets (N,)``.
    """
    if targets is None:
        return None
    if logit_targets is None:
        logits, logit_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)  # (B*T, V), (B*T,)
    # A sum over the labelled positions divided by their count: the mean, and 0 rather than NaN
    # when a batch has no label at all.
    total = F.cross_entropy(logits.float(), logit_targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (logit_targets != IGNORE_INDEX).sum().clamp(min=1)


def check_input_ids(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    if INPUT_IDS not in batch:
        raise ModelError(f"batch has no {INPUT_IDS!r} (keys: {sorted(batch)})")
    ids = batch[INPUT_IDS]
    if ids.dim() != 2 or ids.dtype != torch.int64:
        raise ModelError(f"batch[{INPUT_IDS!r}]: expected an int64 tensor (B, T), got {ids.dtype} {tuple(ids.shape)}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ModelError(f"batch[{INPUT_IDS!r}]: empty batch or sequence {tuple(ids.shape)}")
    targets = batch.get(TARGET_IDS)
    if targets is not None and targets.shape != ids.shape:
        raise ModelError(f"batch[{TARGET_IDS!r}]: shape {tuple(targets.shape)} differs from input_ids {tuple(ids.shape)}")
    return ids


class MosaicLM(TrainingHooksMixin, GenerationMixin, nn.Module):
    def __init__(self, config: MosaicLMConfig, opcodes: Sequence[Opcode] | None = None, *,
                 registry: Registry | None = None) -> None:
        super().__init__()
        registry = model_registry(registry)
        if opcodes is None:
            opcodes = (opcode_table(registry, include_plugins=config.plugin_opcodes)
                       if config.block.opcodes_enabled else V0_OPCODES)
        opcodes = tuple(opcodes)
        if opcodes[: len(V0_OPCODES)] != V0_OPCODES:
            raise ModelError("the opcode table must start with the ten v0 opcodes (ids 0-9)")
        self.config = config
        self.opcodes = opcodes
        d = config.block.d_model
        self.embed = nn.Embedding(config.vocab_size, d)
        self.blocks = nn.ModuleList(MosaicBlock(config.block, opcodes, registry=registry)
                                    for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        self.apply(init_weights)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight
        self.lifecycle = LifecycleHooks(config.lifecycle, registry)
        # the recurrent step's rearranged weights (mosaic.layers.recurrent_step), built on first use
        self._step_params: list[nn.Parameter] | None = None
        self._step_versioned: list[nn.Parameter] = []
        self._step_modules: list[Any] = []  # the modules' hook dicts (see _hook_dicts)
        self._step_cache: tuple[tuple[int, ...], tuple[list[recurrent_step.BlockStep], torch.Tensor, torch.Tensor, torch.Tensor]] | None = None

    @property
    def block_list(self) -> list[MosaicBlock]:
        """``blocks`` typed as what they hold (``nn.ModuleList`` items are typed ``Module``)."""
        return cast("list[MosaicBlock]", list(self.blocks))

    # --- training hooks (see mosaic.layers.ffn) -----------------------------------------------

    def ffn_layers(self) -> list[nn.Module]:
        return [block.mixer.ffn for block in self.block_list if block.mixer.ffn is not None]

    # --- opcode table and checkpoints ---------------------------------------------------------

    @property
    def opcode_names(self) -> list[str]:
        return [op.name for op in self.opcodes]

    def check_opcode_table(self, names: Sequence[str]) -> None:
        """Raise :class:`CheckpointError` unless ``names`` is this model's opcode table."""
        if list(names) != self.opcode_names:
            raise CheckpointError(
                f"opcode table mismatch: checkpoint has {list(names)}, this model has {self.opcode_names} "
                "(install or remove the opcode plugins the checkpoint was trained with)"
            )

    def get_extra_state(self) -> dict[str, object]:
        return {"opcode_table": self.opcode_names}

    def set_extra_state(self, state: object) -> None:
        if not isinstance(state, Mapping) or "opcode_table" not in state:
            raise CheckpointError("checkpoint does not record an opcode table")
        self.check_opcode_table(state["opcode_table"])

    # --- forward ------------------------------------------------------------------------------

    def teacher(self, batch: Mapping[str, torch.Tensor]) -> TeacherForcing:
        c = self.config.block
        return TeacherForcing.from_batch(batch, hashes=c.mem_hashes, buckets=c.mem_buckets,
                                         reg_slots=c.reg_slots, n_opcodes=len(self.opcodes))

    def forward(self, batch: Mapping[str, torch.Tensor], state: MosaicState | None = None) -> ModelOutput:
        ids = check_input_ids(batch)
        if state is not None and (state.batch_size != ids.shape[0] or len(state.layers) != len(self.blocks)):
            raise ModelError(
                f"state is for batch {state.batch_size} and {len(state.layers)} layers; "
                f"got batch {ids.shape[0]} and a {len(self.blocks)}-layer model"
            )
        teacher = self.teacher(batch)
        x = self.embed(ids)  # (B, T, D)
        per_layer, layer_states = [], []
        for i, block in enumerate(self.blocks):
            x, aux, block_state = block(x, teacher, None if state is None else state.layers[i])
            per_layer.append(aux)
            layer_states.append(block_state)
        logits, logit_targets = vocabulary_logits(
            self.head, self.norm(x), batch.get(TARGET_IDS), self.config.logits_at_labels_only
        )
        new_state = None if state is None else MosaicState(layer_states, state.position + ids.shape[1])
        loss = language_model_loss(logits, batch.get(TARGET_IDS), logit_targets)
        return ModelOutput(logits=logits, aux=stack_layer_aux(per_layer), logit_targets=logit_targets, state=new_state,
                           loss=loss)

    # --- streaming ----------------------------------------------------------------------------

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> MosaicState:
        weight = self.embed.weight
        device = weight.device if device is None else torch.device(device)
        return MosaicState([block.init_state(batch_size, device, weight.dtype) for block in self.block_list])

    def step(self, ids: torch.Tensor, state: MosaicState, *, opcodes: torch.Tensor | None = None,
             with_aux: bool = True) -> ModelOutput:
        """One token per sample: ``ids (B,)`` -> logits ``(B, V)``, aux ``(L, B, 1, ...)`` (empty
        without ``with_aux``), and ``state`` advanced **in place** (``out.state`` is ``state``; copy it
        first to keep the old one). ``opcodes (B,)`` forces each sample's opcode (negative: the head's own).

        Without autograd this is the direct recurrence of :mod:`mosaic.layers.recurrent_step`. With
        autograd enabled, a block memory other than ``memory.hashed``, or a forward hook on any module
        (the recurrence calls no submodule, so hooks would not see the token), it is the chunked
        forward on one token, which is differentiable and returns the same values (and updates
        ``state`` too)."""
        if ids.dim() != 1:
            raise ModelError(f"step: expected ids of shape (B,), got {tuple(ids.shape)}")
        self._check_state(state, ids.shape[0])
        if opcodes is not None:
            if opcodes.shape != ids.shape:
                raise ModelError(f"step: opcodes must have the shape of ids {tuple(ids.shape)}, got {tuple(opcodes.shape)}")
            if bool((opcodes >= len(self.opcodes)).any()):
                raise ModelError(f"step: opcodes must be < {len(self.opcodes)} (negative: the head's own choice), "
                                 f"got {opcodes.tolist()}")
            opcodes = torch.where(opcodes < 0, torch.full_like(opcodes, IGNORE_INDEX), opcodes)
        cache = None if torch.is_grad_enabled() else self._recurrent_steps()
        if cache is None:
            return self._chunked_step(ids, state, opcodes)
        steps, head_t, eps, embedding = cache
        inv_d = steps[-1].inv_d
        x = embedding.index_select(0, ids)  # (B, D)
        per_layer = []
        for block_step, layer in zip(steps, state.layers, strict=True):
            x, aux = recurrent_step.block_step(block_step, x, layer.contiguous_(), opcodes, with_aux)
            per_layer.append(aux)
        state.position += 1
        logits = torch.mm(x * recurrent_step.rms_scale(x, eps, inv_d), head_t)  # the final norm's weight is in head_t
        return ModelOutput(logits=logits, aux=stack_layer_aux(per_layer) if with_aux else {}, state=state)

    def _chunked_step(self, ids: torch.Tensor, state: MosaicState, opcodes: torch.Tensor | None) -> ModelOutput:
        batch = {INPUT_IDS: ids[:, None]}
        if opcodes is not None:
            batch[keys.TEACHER_OPCODE.name] = opcodes[:, None]
            batch[keys.TEACHER_FORCING.name] = torch.ones(ids.shape[0], device=ids.device)
        out = self.forward(batch, state)
        new_state = cast(MosaicState, out.state)
        state.layers, state.position = new_state.layers, new_state.position
        out.logits, out.state = out.logits[:, 0], state
        return out

    def _recurrent_steps(self) -> tuple[list[recurrent_step.BlockStep], torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The blocks' rearranged weights, the head's (times the final norm's) transposed, the
        final norm's eps (a 0-d tensor) and the embedding (detached: a gather from a parameter costs
        more under ``inference_mode``), rebuilt whenever a parameter changed (None when a block has
        no recurrent step)."""
        if self._step_params is None:
            self._step_params, self._step_modules = list(self.parameters()), _hook_dicts(list(self.modules()))
            # parameters made under torch.inference_mode keep no version counter (asking raises, and
            # an exception per token costs more than the step)
            self._step_versioned = [p for p in self._step_params if not p.is_inference()]
        if _hooked(self._step_modules):  # hooks see module calls: the chunked path makes them
            return None
        version = (*map(_VERSION, self._step_versioned), *map(torch.Tensor.data_ptr, self._step_params))
        if self._step_cache is None or self._step_cache[0] != version:
            blocks = self.block_list
            if not all(recurrent_step.has_recurrent_step(block) for block in blocks):
                return None
            weight = self.head.weight.detach()
            if self.norm.weight is not None:
                weight = weight * self.norm.weight.detach()
            eps = self.norm.eps if self.norm.eps is not None else torch.finfo(weight.dtype).eps
            with torch.no_grad():
                steps = [recurrent_step.BlockStep(block) for block in blocks]
            self._step_cache = (version, (steps, weight.T.contiguous(), weight.new_tensor(eps), self.embed.weight.detach()))
        return self._step_cache[1]

    def _check_state(self, state: MosaicState, batch: int) -> None:
        if not isinstance(state, MosaicState) or state.batch_size != batch or len(state.layers) != len(self.blocks):
            got = (f"batch {state.batch_size} and {len(state.layers)} layers" if isinstance(state, MosaicState)
                   else type(state).__name__)
            raise ModelError(f"state is for {got}; expected batch {batch} and a {len(self.blocks)}-layer MosaicState")

    def prefill(self, ids: torch.Tensor, state: MosaicState | None = None, chunk_tokens: int = 512) -> ModelOutput:
        """Consume ``ids (B, T)`` in pieces of ``chunk_tokens``; logits ``(B, T, V)`` and the final
        state (aux outputs of the last piece only)."""
        if chunk_tokens < 1:
            raise ModelError(f"prefill: chunk_tokens must be >= 1, got {chunk_tokens}")
        state = self.init_state(ids.shape[0], ids.device) if state is None else state
        logits = []
        out = None
        for start in range(0, ids.shape[1], chunk_tokens):
            out = self.forward({INPUT_IDS: ids[:, start : start + chunk_tokens]}, state)
            logits.append(out.logits)
            state = out.state
        if out is None:
            raise ModelError("prefill: ids has no tokens")
        out.logits = torch.cat(logits, dim=1)
        return out


    def recurrent_state_floats(self, context_length: int = 0) -> list[int]:
        """Floats each layer carries from token to token for one sample, whatever the context
        length: memory table (with its scratch row), all-bucket summary, state bank, conv tail and
        registers. The per-bucket write counters are integers and not counted."""
        state = self.init_state(1, device="cpu")
        return [sum(t.numel() for t in layer.tensors().values() if t.is_floating_point()) for layer in state.layers]

    # --- reading memory back ------------------------------------------------------------------

    def memory_cells(self, state: MosaicState) -> list[MemoryCellsView]:
        """Each layer's memory cells (keys, values, occupancy, bucket, slot, age, utility) as views
        of ``state``; see :class:`~mosaic.layers.memory_readback.MemoryCells`. Needs a memory with
        the contract's ``ReadableBlockMemory`` read-back (``memory.hashed`` has it)."""
        self._check_memory_state(state)
        return [self._readable(index).read_cells(layer.memory_state, index) for index, layer in enumerate(state.layers)]

    def replay_memory(self, state: MosaicState, cells: MemoryCells, select: torch.Tensor | None = None,
                      as_logits: bool = True) -> torch.Tensor:
        """Stored values turned back into the model's spaces through the read path, gradient-free.

        A query whose read bucket holds one occupied cell reads that cell's stored value (the softmax
        over the bucket's slots puts all weight on the occupied one), and the block adds
        ``memory.out(value)`` to the residual stream. That contribution ``(N, d_model)`` is the most
        faithful thing a cell means without the query that would read it; with ``as_logits`` it is
        passed through the final norm and vocabulary head, giving next-token logits ``(N, V)`` in the
        direction the cell pushes the prediction (the deeper blocks are skipped: they need a context).
        ``select`` (bool, shaped like ``cells.occupancy``) picks cells, in row-major order; default all.
        """
        self._check_memory_state(state)
        if not 0 <= cells.layer < len(self.blocks):
            raise ModelError(f"replay_memory: cells of layer {cells.layer}, the model has {len(self.blocks)} layers")
        values = cells.values if select is None else cells.values[self._check_select(cells, select)]
        with torch.no_grad():
            contribution = self._readable(cells.layer).replay_values(values.reshape(-1, values.shape[-1]))  # (N, D)
            return self.head(self.norm(contribution)) if as_logits else contribution

    def forget_memory_cells(self, state: MosaicState, cells: MemoryCells, select: torch.Tensor) -> int:
        """Clear (in place) the ``select``-ed cells of ``cells.layer`` in ``state``: key, value and
        occupancy become 0, as if never written (ring counts are kept, so the write order of the other
        slots is unchanged). Returns how many cells were cleared."""
        self._check_memory_state(state)
        mask = self._check_select(cells, select)
        return self._readable(cells.layer).forget_cells(state.layers[cells.layer].memory_state, cells, mask)

    def refresh_memory_cells(self, state: MosaicState, cells: MemoryCells, select: torch.Tensor) -> int:
        """Re-write (in place) the ``select``-ed cells of ``cells.layer`` as their buckets' newest
        writes, so the ring overwrites the other cells first (reads are unchanged). Returns how many."""
        self._check_memory_state(state)
        mask = self._check_select(cells, select)
        return self._readable(cells.layer).refresh_cells(state.layers[cells.layer].memory_state, cells, mask)

    def _readable(self, layer: int) -> ReadableBlockMemory:
        memory = self.block_list[layer].memory
        if not isinstance(memory, ReadableBlockMemory):
            raise ModelError(f"layer {layer}'s memory ({type(memory).__name__}) cannot be read back: it has no "
                             "read_cells/replay_values/forget_cells/refresh_cells "
                             "(mosaic.core.contract.protocols.ReadableBlockMemory)")
        return memory

    def _check_memory_state(self, state: MosaicState) -> None:
        if not isinstance(state, MosaicState) or len(state.layers) != len(self.blocks):
            raise ModelError(f"expected a MosaicState with {len(self.blocks)} layers, got {type(state).__name__}")

    @staticmethod
    def _check_select(cells: MemoryCells, select: torch.Tensor) -> torch.Tensor:
        if select.dtype != torch.bool or select.shape != cells.occupancy.shape:
            raise ModelError(f"select: expected a bool mask {tuple(cells.occupancy.shape)}, "
                             f"got {select.dtype} {tuple(select.shape)}")
        return select


def build_mosaic_lm(config: MosaicLMConfig, *, registry: Registry | None = None) -> MosaicLM:
    """``model.mosaic_lm`` factory; ``registry`` (passed by ``Registry.build``) builds its parts."""
    return MosaicLM(config, registry=registry)


def parameter_breakdown(model: MosaicLM) -> dict[str, int]:
    """Parameter count per component (embedding counted once when tied)."""
    groups = {"embedding": model.embed, "final_norm": model.norm}
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in groups.items()}
    if not model.config.tie_embeddings:
        counts["lm_head"] = model.head.weight.numel()
    parts = {"norm": "norm", "local_mixer": "mixer", "state_bank": "bank", "memory": "memory",
             "registers": "registers", "fusion": "fusion", "opcode_head": "opcode_head",
             "commitment_head": "commitment"}
    for label, attr in parts.items():
        counts[label] = sum(
            sum(p.numel() for p in getattr(block, attr).parameters()) for block in model.blocks
            if getattr(block, attr, None) is not None
        )
    counts["commitment_head"] += sum(block.commit_drive.numel() for block in model.block_list
                                     if block.config.commitment_head_enabled)
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
