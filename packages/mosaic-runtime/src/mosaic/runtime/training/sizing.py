"""Memory estimates for a preset: parameters and bytes by component.

- weights, gradients and AdamW state (fp32 master weights: 4 + 4 + 8 bytes per parameter);
- MOSAIC memory tables and streaming state: the bytes of ``model.init_state(batch)`` when the model
  has one;
- activations: the peak of tensor bytes allocated during a real training step, measured on CPU at
  two small probe batches and extrapolated linearly to the batch (minus gradients and optimizer
  state); halved for bf16 autocast. The probe measures what the code allocates, including the
  per-sample memory tables, rather than trusting a formula.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mosaic.core.contract.protocols import StreamingModel
from mosaic.core.errors import ConfigError, ConfigProblem
from mosaic.runtime.training.batching import collate_for
from mosaic.runtime.training.manifest import Experiment
from mosaic.runtime.training.preflight import build_on_meta

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry

GIB = 1024 ** 3
#: Bytes per trainable parameter before any activation: fp32 weights, gradients and AdamW's two moments.
TRAINING_BYTES_PER_PARAMETER = 16


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def build_model(experiment: Experiment, registry: Registry) -> Any:
    """``experiment``'s model, built for real: an allocation the machine refuses (a width typed one
    digit too long) becomes a :class:`ConfigError` at ``model`` with the parameter count, not
    torch's allocator traceback."""
    try:
        return experiment.model.build(registry)
    except RuntimeError as exc:  # torch's CPU allocator raises a plain RuntimeError
        if "allocate" not in str(exc):
            raise
        parameters = parameters_on_meta(experiment, registry)
        size = f"{parameters:,} parameters" if parameters is not None else "the model"
        raise ConfigError([ConfigProblem("model", f"{size} do not fit in this machine's memory "
                                                  f"({physical_memory_bytes() / GIB:.1f} GiB)")]) from None


def parameters_on_meta(experiment: Experiment, registry: Registry) -> int | None:
    """The model's parameter count, from a build on the meta device (no memory); None for a model
    whose construction reads tensor values."""
    model = build_on_meta(experiment, registry)
    return None if model is None else sum(p.numel() for p in model.parameters())


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


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of CPU tensor storages alive while it is active, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def _free(self, key: int, size: int) -> None:
        self.live -= size
        self._sizes.pop(key, None)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor) and value.device.type == "cpu":
                storage = value.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._sizes:
                    size = storage.nbytes()
                    self._sizes[key] = size
                    self.live += size
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key, size)
        return out


def training_step_peak_bytes(model: torch.nn.Module, objective: Any, batch: dict[str, Any],
                             optimizer: torch.optim.Optimizer) -> int:
    """Peak bytes of tensors allocated during one forward, backward and optimizer step (weights,
    which exist before the step, not included)."""
    with LiveTensorBytes() as tracker:
        output = model(batch)
        loss, _ = objective(output, batch)
        loss.backward()
        optimizer.step()
        del output, loss
    optimizer.zero_grad(set_to_none=True)
    return tracker.peak


PROBE_BATCHES = (2, 4)


def estimate_memory(experiment: Experiment, registry: Registry, *, batch_size: int | None = None,
                    precision: str | None = None) -> MemoryEstimate:
    """Weights, gradients and optimizer state from the parameter count; activations extrapolated
    linearly from the measured peak of training steps at two small probe batches on CPU."""
    from mosaic.runtime.training.optim import build_optimizer

    batch_size = batch_size or experiment.trainer.batch_size
    precision = precision or experiment.trainer.precision
    counted_on_meta = parameters_on_meta(experiment, registry)
    available = physical_memory_bytes()
    if counted_on_meta is not None and TRAINING_BYTES_PER_PARAMETER * counted_on_meta > available:
        raise ConfigError([ConfigProblem("model", f"{counted_on_meta:,} parameters need "
                                                  f"{TRAINING_BYTES_PER_PARAMETER * counted_on_meta / GIB:,.1f} GiB for "
                                                  "weights, gradients and optimizer state alone, more than this "
                                                  f"machine's {available / GIB:.1f} GiB: the estimate measures "
                                                  "activations with real training steps, so it cannot run here")])
    torch.manual_seed(0)
    model = build_model(experiment, registry)
    by_component: dict[str, int] = {}
    counted: set[int] = set()  # tied weights (embedding = head) count once, under the first owner
    for name, child in [*model.named_children(), ("(top level)", None)]:
        owned = child.parameters() if child is not None else model.parameters(recurse=False)
        fresh = [p for p in owned if id(p) not in counted]
        counted.update(id(p) for p in fresh)
        if fresh:
            by_component[name] = sum(p.numel() for p in fresh)
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    dataset = experiment.dataset.build(registry)
    objective = experiment.objective.build(registry)
    collate = collate_for(dataset)
    peaks = []
    for probe in PROBE_BATCHES:
        optimizer = build_optimizer(model, experiment.trainer)
        batch = collate([dataset[i % len(dataset)] for i in range(probe)])
        peaks.append(training_step_peak_bytes(model, objective, batch, optimizer))
    per_sample = max(peaks[1] - peaks[0], 0) / (PROBE_BATCHES[1] - PROBE_BATCHES[0])
    step_peak = peaks[0] + per_sample * (batch_size - PROBE_BATCHES[0])
    gradient_bytes, optimizer_bytes = 4 * trainable, 8 * trainable
    state_bytes = 0
    if isinstance(model, StreamingModel):
        # a stream's state is per sample: one sample's bytes times the batch, never allocated whole
        state_bytes = _tensor_bytes(model.init_state(1)) * batch_size
    # The step peak already holds the memory tables the forward builds; count them once, as state.
    activations = max(int(step_peak) - gradient_bytes - optimizer_bytes - state_bytes, 0)
    if precision == "bf16":
        activations //= 2
    return MemoryEstimate(
        parameters=parameters, parameters_by_component=by_component, weights_bytes=4 * parameters,
        gradient_bytes=gradient_bytes, optimizer_bytes=optimizer_bytes, state_bytes=state_bytes,
        activation_bytes=activations, batch_size=batch_size, precision=precision,
    )
