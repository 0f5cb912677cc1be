"""The medium timescale: LoRA-style adapters learned online from a bounded replay buffer.

Three timescales: fast — the model's memory and state are written at every token (no learning);
medium — adapters on selected Linear layers take a gradient step every ``update_every`` tokens on
event sequences sampled from a replay buffer of the latest ``buffer_size`` ones; slow — all weights,
offline, with ``mosaic run``. Installing adapters freezes every base parameter (``requires_grad``
False) and an update computes gradients for the adapter parameters only, so base weights never
change online. Adapters are saved and loaded on their own, apart from the base checkpoint (the
agent saves them with the session, ``sessions/NAME/adapters.pt``).

The guard: given held-out sequences of the training distribution (:meth:`OnlineLearner.guard_with`),
the learner measures their loss before any update, and after each update; an update that raises it
by more than ``max_heldout_rise`` (a fraction of the baseline) is rolled back (adapters and optimizer
state restored) and counted in ``rollbacks``. Guard sequences are scored whole: cut to their tail, a
trace loses the facts its questions ask about, and an update that breaks recall would pass.
With ``context_bytes`` set, each buffered sequence is the stream's tail up to the fed event rather
than the event alone, and the loss is the event's own tokens given that context: events that depend
on earlier ones (an answer on its facts) are learned in their context instead of being learned as
guesses.

Rehearsal: given sequences of the training distribution (:meth:`OnlineLearner.rehearse_with`), every
update adds ``anchor_weight`` x the KL divergence from the base model's next-byte predictions on
``rehearse`` of them (taken once, adapters off) to the adapted model's. Steps on a new event type
alone move the adapted layers' output on everything the model reads; measured per target set in
``benchmarks/bench_idle.py`` (``online.interference``), that damage is as large from layers no memory
router reads as from the local mixers, and adapters on the routers and keys alone change nothing:
it is interference at the output, and the rehearsal term is what pulls it back while the new
pattern is learned. (Its gradient is zero while the adapters change nothing, so it only acts once
they have moved.)

During consolidation the learner can take an :meth:`~OnlineLearner.idle_step` on replayed tokens,
labelled IDLE: the LM loss on the replay plus the opcode head's cross-entropy towards IDLE at every
replayed position (for a model whose output has opcode logits and an IDLE opcode).
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import math
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.atomic import atomic_write
from mosaic.core.contract import keys
from mosaic.core.contract.opcodes import V0_OPCODE_IDS
from mosaic.core.errors import CheckpointError, ConfigError, ConfigProblem
from mosaic.runtime.agent.config import OnlineConfig
from mosaic.runtime.training.checkpoint import load_payload

ADAPTER_FORMAT = "mosaic-adapters/1"


class LoRALinear(nn.Module):
    """``base(x) + scale * B(A(x))`` with ``A (r, in)`` random and ``B (out, r)`` zero, so a fresh
    adapter leaves the base layer's output unchanged."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base
        weight = base.weight
        a = torch.randn(rank, base.in_features, generator=generator) / math.sqrt(base.in_features)
        self.lora_a = nn.Parameter(a.to(device=weight.device, dtype=weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=weight.device, dtype=weight.dtype))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low_rank = (x @ self.lora_a.T) @ self.lora_b.T  # (..., in) -> (..., r) -> (..., out)
        return self.base(x) + self.scale * low_rank


def install_adapters(model: nn.Module, config: OnlineConfig) -> dict[str, LoRALinear]:
    """Wrap every ``nn.Linear`` whose qualified name matches a pattern of ``config.targets``."""
    linear_names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    chosen = [name for name in linear_names if any(fnmatch.fnmatchcase(name, p) for p in config.targets)]
    if not chosen:
        listed = ", ".join(linear_names[:12]) + (" ..." if len(linear_names) > 12 else "")
        raise ConfigError([ConfigProblem("online.targets", f"{list(config.targets)} match no Linear layer of "
                                         f"{type(model).__name__}; its Linear layers: {listed}")])
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(config.seed)
    adapters = {}
    for name in chosen:
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        adapter = LoRALinear(getattr(parent, attribute), config.rank, config.alpha, generator)
        setattr(parent, attribute, adapter)
        adapters[name] = adapter
    return adapters


def sequence_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-byte cross-entropy of one sequence ``(L,)`` from a fresh state."""
    out = model({keys.INPUT_IDS.name: ids[None, :-1]})
    return F.cross_entropy(out.logits[0].float(), ids[1:])  # logits (L - 1, V)


def tail_loss(model: nn.Module, ids: torch.Tensor, scored: int) -> torch.Tensor:
    """Mean next-byte cross-entropy of the last ``scored`` tokens of ``ids`` ``(L,)`` from a fresh
    state: the tokens before them are read as context only."""
    out = model({keys.INPUT_IDS.name: ids[None, :-1]})
    scored = max(1, min(scored, ids.shape[0] - 1))
    return F.cross_entropy(out.logits[0, -scored:].float(), ids[-scored:])  # logits (L - 1, V)


def anchor_loss(model: nn.Module, ids: torch.Tensor, base_log_probs: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence from the base model's next-byte distribution ``base_log_probs``
    ``(L - 1, V)`` (log-probabilities) to the adapted model's, over sequence ``ids`` ``(L,)`` read
    from a fresh state: zero while the adapters leave every prediction of it as the base made it."""
    out = model({keys.INPUT_IDS.name: ids[None, :-1]})
    log_probs = F.log_softmax(out.logits[0].float(), dim=-1)  # (L - 1, V)
    return F.kl_div(log_probs, base_log_probs, log_target=True, reduction="batchmean")


def idle_sequence_loss(model: nn.Module, ids: torch.Tensor, idle: int) -> torch.Tensor:
    """:func:`sequence_loss` plus the opcode head's cross-entropy towards opcode ``idle`` at every
    position (averaged over layers); the model stays silent while it consolidates."""
    out = model({keys.INPUT_IDS.name: ids[None, :-1]})
    loss = F.cross_entropy(out.logits[0].float(), ids[1:])
    opcodes = (out.aux or {}).get(keys.OPCODE_LOGITS.name)  # (L, 1, T, n_ops)
    if opcodes is not None:
        flat = opcodes.float().reshape(-1, opcodes.shape[-1])
        loss = loss + F.cross_entropy(flat, torch.full((flat.shape[0],), idle, device=flat.device))
    return loss


def mean_loss(model: nn.Module, sequences: Sequence[torch.Tensor], device: torch.device) -> float:
    """Mean :func:`sequence_loss` of ``sequences`` without gradients."""
    with torch.no_grad():
        return float(torch.stack([sequence_loss(model, ids.to(device)) for ids in sequences]).mean())


class OnlineLearner:
    """Adapters, their optimizer and the replay buffer; ``observe`` is the session's token hook."""

    def __init__(self, model: nn.Module, config: OnlineConfig | None = None) -> None:
        self.model = model
        self.config = config or OnlineConfig()
        self.adapters = install_adapters(model, self.config)
        self.adapter_parameters = [p for adapter in self.adapters.values() for p in (adapter.lora_a, adapter.lora_b)]
        self.optimizer = torch.optim.AdamW(self.adapter_parameters, lr=self.config.lr, weight_decay=0.0)
        self.buffer: deque[torch.Tensor] = deque(maxlen=self.config.buffer_size)
        # per buffered sequence, how many of its last tokens are the fed event (the loss is theirs)
        self.scored: deque[int] = deque(maxlen=self.config.buffer_size)
        self.rng = random.Random(self.config.seed)
        self.device = next(model.parameters()).device
        self.tokens_since_update = 0
        self.stream_tail = torch.zeros(0, dtype=torch.long)  # the last context_bytes tokens fed
        self.updates = 0
        self.rollbacks = 0
        self.last_loss: float | None = None
        self.rehearsal: list[tuple[torch.Tensor, torch.Tensor]] = []  # (ids (L,), base log-probs (L - 1, V))
        self.heldout: list[torch.Tensor] = []
        self.heldout_baseline: float | None = None
        self.last_heldout: float | None = None

    def guard_with(self, sequences: Sequence[torch.Tensor]) -> float:
        """Guard every later update with held-out ``sequences``: their loss now is the baseline. Each
        is scored whole (see :class:`OnlineConfig`), so one longer than ``max_guard_bytes`` is refused."""
        too_long = [index for index, ids in enumerate(sequences) if ids.shape[0] > self.config.max_guard_bytes]
        if too_long:
            raise ConfigError([ConfigProblem(f"online.heldout[{index}]", f"{sequences[index].shape[0]} tokens, more "
                                             f"than max_guard_bytes ({self.config.max_guard_bytes})")
                               for index in too_long])
        self.heldout = [ids for ids in sequences if ids.shape[0] >= 2]
        if not self.heldout:
            raise ConfigError([ConfigProblem("online.heldout", "the guard needs at least one held-out sequence "
                                             "of two or more tokens")])
        self.heldout_baseline = self.last_heldout = mean_loss(self.model, self.heldout, self.device)
        return self.heldout_baseline

    def rehearse_with(self, sequences: Sequence[torch.Tensor]) -> int:
        """Rehearse ``sequences`` of the training distribution in every update (see
        :attr:`OnlineConfig.anchor_weight`): the base model's predictions on them, taken now with the
        adapters switched off, are what each update is pulled back towards. Each is read whole, so
        one longer than ``max_guard_bytes`` is refused. Returns how many are kept."""
        too_long = [index for index, ids in enumerate(sequences) if ids.shape[0] > self.config.max_guard_bytes]
        if too_long:
            raise ConfigError([ConfigProblem(f"online.rehearsal[{index}]", f"{sequences[index].shape[0]} tokens, "
                                             f"more than max_guard_bytes ({self.config.max_guard_bytes})")
                               for index in too_long])
        kept = [ids.to(self.device) for ids in sequences if ids.shape[0] >= 2]
        if not kept:
            raise ConfigError([ConfigProblem("online.rehearsal", "rehearsal needs at least one sequence of two "
                                             "or more tokens")])
        with torch.no_grad(), self.adapters_off():
            self.rehearsal = [
                (ids, F.log_softmax(self.model({keys.INPUT_IDS.name: ids[None, :-1]}).logits[0].float(), dim=-1))
                for ids in kept
            ]
        return len(self.rehearsal)

    @contextlib.contextmanager
    def adapters_off(self) -> Iterator[None]:
        """Within the block the model is its base: every adapter adds nothing."""
        scales = {name: adapter.scale for name, adapter in self.adapters.items()}
        for adapter in self.adapters.values():
            adapter.scale = 0.0
        try:
            yield
        finally:
            for name, adapter in self.adapters.items():
                adapter.scale = scales[name]

    def observe(self, ids: torch.Tensor) -> None:
        """Add one fed event sequence ``(L,)``; update once ``update_every`` tokens have arrived."""
        self.tokens_since_update += ids.shape[0]
        event_tokens = ids.shape[0]
        if self.config.context_bytes:
            self.stream_tail = torch.cat([self.stream_tail, ids.to(self.stream_tail.device)])[
                -self.config.context_bytes :
            ]
            ids = self.stream_tail
        if ids.shape[0] >= 2:
            self.buffer.append(ids[-self.config.max_sequence_bytes :])
            self.scored.append(event_tokens)
        if self.tokens_since_update >= self.config.update_every and self.buffer:
            self.tokens_since_update = 0
            self.update()

    def update(self) -> float:
        """One adapter step on up to ``batch`` sequences sampled from the buffer; the mean loss."""
        picked = self.rng.sample(range(len(self.buffer)), min(self.config.batch, len(self.buffer)))
        batch = [(self.buffer[index], self.scored[index]) for index in picked]
        rehearsed = (self.rng.sample(self.rehearsal, min(self.config.rehearse, len(self.rehearsal)))
                     if self.config.anchor_weight > 0 else [])

        def loss_of() -> torch.Tensor:
            loss = torch.stack([tail_loss(self.model, ids.to(self.device), scored) for ids, scored in batch]).mean()
            if rehearsed:
                anchor = torch.stack([anchor_loss(self.model, ids, base) for ids, base in rehearsed]).mean()
                loss = loss + self.config.anchor_weight * anchor
            return loss

        return self._guarded_step(loss_of)

    def idle_step(self, ids: torch.Tensor) -> float:
        """One adapter step on replayed tokens ``(L,)`` labelled IDLE (see :func:`idle_sequence_loss`;
        every opcode table starts with the contract's v0 opcodes, so IDLE's id is the same for all)."""
        ids = ids.to(self.device)
        return self._guarded_step(lambda: idle_sequence_loss(self.model, ids, V0_OPCODE_IDS["IDLE"]))

    def _guarded_step(self, loss_of: Callable[[], torch.Tensor]) -> float:
        snapshot = ([p.detach().clone() for p in self.adapter_parameters], copy.deepcopy(self.optimizer.state_dict()))
        with torch.enable_grad():
            loss = loss_of()
            gradients = torch.autograd.grad(loss, self.adapter_parameters)
        for parameter, gradient in zip(self.adapter_parameters, gradients, strict=True):
            parameter.grad = gradient
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.last_loss = float(loss.detach())
        if self.heldout_baseline is not None:
            heldout = mean_loss(self.model, self.heldout, self.device)
            if heldout > self.heldout_baseline * (1 + self.config.max_heldout_rise):
                with torch.no_grad():
                    for parameter, saved in zip(self.adapter_parameters, snapshot[0], strict=True):
                        parameter.copy_(saved)
                self.optimizer.load_state_dict(snapshot[1])
                self.rollbacks += 1
                return self.last_loss
            self.last_heldout = heldout
        self.updates += 1
        return self.last_loss

    def metrics(self) -> dict[str, float]:
        metrics = {"online_updates": float(self.updates), "online_buffer": float(len(self.buffer)),
                   "online_rollbacks": float(self.rollbacks)}
        if self.last_loss is not None:
            metrics["online_loss"] = self.last_loss
        return metrics

    # --- persistence (apart from the base checkpoint) --------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": ADAPTER_FORMAT,
            "config": attrs.asdict(self.config),
            "adapters": {name: {"lora_a": a.lora_a.detach().cpu().clone(), "lora_b": a.lora_b.detach().cpu().clone()}
                         for name, a in self.adapters.items()},
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "rollbacks": self.rollbacks,
            "tokens_since_update": self.tokens_since_update,
            "rehearsal_sequences": len(self.rehearsal),  # a record: rehearsal is given anew each session
        }

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        return atomic_write(path, lambda file: torch.save(state, file))

    def load(self, path: Path) -> None:
        data = load_payload(Path(path), file_format=ADAPTER_FORMAT, what="adapter file")
        saved = data["adapters"]
        if sorted(saved) != sorted(self.adapters):
            raise CheckpointError(f"{path} holds adapters for {sorted(saved)}, this session has {sorted(self.adapters)}")
        for name, adapter in self.adapters.items():
            for key in ("lora_a", "lora_b"):
                tensor = saved[name][key]
                target = getattr(adapter, key)
                if tensor.shape != target.shape:
                    raise CheckpointError(f"{path}: {name}.{key} has shape {tuple(tensor.shape)}, "
                                          f"expected {tuple(target.shape)} (different rank?)")
                with torch.no_grad():
                    target.copy_(tensor)
        self.optimizer.load_state_dict(data["optimizer"])
        self.updates = int(data["updates"])
        self.rollbacks = int(data.get("rollbacks", 0))  # adapter files written before the guard have none
        self.tokens_since_update = int(data["tokens_since_update"])
