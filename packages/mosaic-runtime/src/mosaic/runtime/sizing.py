"""Memory estimates for a preset: parameters and bytes by component.

- weights, gradients and AdamW state (fp32 master weights: 4 + 4 + 8 bytes per parameter);
- MOSAIC memory tables and streaming state: the bytes of ``model.init_state(batch)`` when the model
  has one;
- activations: the bytes autograd saves for backward, measured on a one-sample probe forward on CPU
  (unique storages only) and scaled linearly to the batch; halved for bf16 autocast.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from mosaic.core.registry import Registry
from mosaic.runtime.batching import collate_for
from mosaic.runtime.manifest import Experiment

GIB = 1024 ** 3


@attrs.frozen
class MemoryEstimate:
    parameters: int
    parameters_by_component: dict[str, int]
    weights_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    state_bytes: int
    activation_bytes: int
    batch_size: int
    precision: str

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.gradient_bytes + self.optimizer_bytes + self.state_bytes
                + self.activation_bytes)

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "total_bytes": self.total_bytes, "total_gib": self.total_bytes / GIB}


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    if attrs.has(type(value)):
        return sum(_tensor_bytes(getattr(value, f.name)) for f in attrs.fields(type(value)))
    return sum(_tensor_bytes(v) for v in getattr(value, "__dict__", {}).values()) if hasattr(value, "__dict__") else 0


def saved_activation_bytes(model: torch.nn.Module, objective: Any, batch: dict[str, Any]) -> int:
    """Bytes of the unique storages autograd keeps for backward during one forward + objective."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in parameters:
            storages[pointer] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(batch)
        loss, _ = objective(output, batch)
    del output, loss
    return sum(storages.values())


def estimate_memory(experiment: Experiment, registry: Registry, *, batch_size: int | None = None,
                    precision: str | None = None) -> MemoryEstimate:
    batch_size = batch_size or experiment.trainer.batch_size
    precision = precision or experiment.trainer.precision
    torch.manual_seed(0)
    model = experiment.model.build(registry)
    by_component: dict[str, int] = {}
    for name, child in model.named_children():
        by_component[name] = sum(p.numel() for p in child.parameters())
    own = sum(p.numel() for p in model.parameters(recurse=False))
    if own:
        by_component["(top level)"] = own
    parameters = sum(p.numel() for p in model.parameters())
    dataset = experiment.dataset.build(registry)
    objective = experiment.objective.build(registry)
    probe = collate_for(dataset)([dataset[0]])
    activations = saved_activation_bytes(model, objective, probe) * batch_size
    if precision == "bf16":
        activations //= 2
    state_bytes = 0
    init_state = getattr(model, "init_state", None)
    if callable(init_state):
        state_bytes = _tensor_bytes(init_state(batch_size))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return MemoryEstimate(
        parameters=parameters, parameters_by_component=by_component, weights_bytes=4 * parameters,
        gradient_bytes=4 * trainable, optimizer_bytes=8 * trainable, state_bytes=state_bytes,
        activation_bytes=activations, batch_size=batch_size, precision=precision,
    )
