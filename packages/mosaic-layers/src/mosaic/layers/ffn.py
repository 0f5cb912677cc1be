"""Feed-forward layers chosen by configuration, and the training-hook protocol that drives them.

A block's ``ffn`` mapping names a registry layer (``{type: layer.moe, n_experts: 8, router: {...}}``);
it is built through the registry, so mosaic-layers never imports the package that provides it
(``layer.moe`` comes from chronomoe; if that is not installed the registry says so and how to install
it). The layer maps ``(B, T, D) → (B, T, D)`` and may expose ``aux_outputs() -> {name: tensor}``,
the auxiliary losses and metrics of its last forward; the model stacks them per layer into
``ModelOutput.aux`` (leading layer axis), e.g. ``moe_aux_loss (L,)``, ``moe_beta (L, E)``.

Training-hook protocol (``mosaic.core.contract.protocols.TrainingHooks``; the runtime imports neither
this module nor chronomoe). A model may define:

- ``after_optimizer_step(step: int, optimizer, probe=None) -> list[dict]``: called by the trainer
  after every optimizer step, with its ``TrainingProbe`` (held-out trial losses, total steps) that
  the controller receives at attach; returns the decisions taken (JSON-able dicts), which the trainer appends to the
  run's ``decisions.jsonl`` and counts in the ``lifecycle_decisions`` metric;
- ``lifecycle_state_dict() -> dict | None`` and ``load_lifecycle_state_dict(state)``: the
  controller's state, stored in and restored from checkpoints.

The controller is the registry component named by the model's ``lifecycle`` mapping (e.g.
``layer.chrono_lifecycle``). Its factory returns a ``LifecycleController`` (``attach(layers,
optimizer)``, ``step() -> list[dict]``, ``state_dict()``, ``load_state_dict(state)``); it is
attached lazily at the first optimizer step because the optimizer is built after the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mosaic.core.contract.protocols import (
    LifecycleController,
    RaisesRunEvents,
    ReportsAux,
    StepsAfterOptimizer,
    TrainingProbe,
    missing_members,
)
from mosaic.core.errors import ModelError

if TYPE_CHECKING:
    from mosaic.core.registry import Registry


def model_registry(registry: Registry | None) -> Registry:
    """The registry a model builds its parts from: the one its factory was given; the process-wide
    one only for a model constructed directly (tests, notebooks)."""
    if registry is not None:
        return registry
    from mosaic.core.plugins import get_registry

    return get_registry()


def build_ffn(spec: Mapping[str, Any], d_model: int, registry: Registry, path: str = "$.ffn") -> nn.Module:
    """The registry layer named by ``spec['type']``, configured by the rest of ``spec`` and ``d_model``."""
    mapping = {key: value for key, value in spec.items() if key != "type"}
    mapping["d_model"] = d_model
    return registry.build(spec["type"], mapping, path=path)


def ffn_aux(ffn: nn.Module) -> dict[str, torch.Tensor]:
    """The feed-forward's aux outputs of its last forward (empty for layers that have none)."""
    return dict(ffn.aux_outputs()) if isinstance(ffn, ReportsAux) else {}


class LifecycleHooks:
    """The model side of the training-hook protocol: owns the lazily attached controller."""

    def __init__(self, spec: Mapping[str, Any] | None, registry: Registry) -> None:
        self.spec = spec
        self.registry = registry
        self.controller: LifecycleController | None = None
        self.pending_state: dict | None = None

    def after_optimizer_step(
        self, layers: Sequence[nn.Module], step: int, optimizer: Any, probe: TrainingProbe | None = None
    ) -> list[dict]:
        if self.spec is None:
            return []
        if self.controller is None:
            mapping = {key: value for key, value in self.spec.items() if key != "type"}
            controller = self.registry.build(self.spec["type"], mapping, path="$.lifecycle")
            if not isinstance(controller, LifecycleController):
                raise ModelError(
                    f"{self.spec['type']} is not a lifecycle controller: it lacks "
                    f"{', '.join(missing_members(controller, LifecycleController))}"
                )
            self.controller = controller
            controller.attach(list(layers), optimizer, probe)
            if self.pending_state is not None:
                self.controller.load_state_dict(self.pending_state)
                self.pending_state = None
        # decisions carry the trainer's step beside the controller's own clock
        return [{**decision, "train_step": step} for decision in self.controller.step()]

    def state_dict(self) -> dict | None:
        if self.controller is not None:
            return self.controller.state_dict()
        return self.pending_state

    def load_state_dict(self, state: dict | None) -> None:
        if state is None:
            return
        if self.controller is not None:
            self.controller.load_state_dict(state)
        else:
            self.pending_state = state


class TrainingHooksMixin:
    """The training-hook protocol for a model that holds ``self.lifecycle`` (:class:`LifecycleHooks`)
    and lists its feed-forward layers in ``ffn_layers()``."""

    lifecycle: LifecycleHooks

    def ffn_layers(self) -> list[nn.Module]:
        raise NotImplementedError

    def after_optimizer_step(
        self, step: int, optimizer: torch.optim.Optimizer, probe: TrainingProbe | None = None
    ) -> list[dict]:
        raised: list[dict] = []
        for layer, ffn in enumerate(self.ffn_layers()):
            if isinstance(ffn, StepsAfterOptimizer):  # per-step balancers (router.loss_free's bias)
                ffn.after_optimizer_step()
            if isinstance(ffn, RaisesRunEvents):  # e.g. remote experts unreachable / back
                raised.extend({**event, "layer": layer, "train_step": step} for event in ffn.drain_run_events())
        return raised + self.lifecycle.after_optimizer_step(self.ffn_layers(), step, optimizer, probe)

    def lifecycle_state_dict(self) -> dict | None:
        return self.lifecycle.state_dict()

    def load_lifecycle_state_dict(self, state: dict | None) -> None:
        self.lifecycle.load_state_dict(state)
