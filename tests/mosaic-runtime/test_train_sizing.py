"""The memory estimate against tensor memory actually allocated by a real CPU training step."""

from __future__ import annotations

import torch

from mosaic.runtime.testing.tiny_training import TINY_PRESET, tiny_registry
from mosaic.runtime.training.batching import collate
from mosaic.runtime.training.manifest import parse_manifest
from mosaic.runtime.training.optim import build_optimizer
from mosaic.runtime.training.sizing import estimate_memory, training_step_peak_bytes

BATCH = 24


def experiment():
    text = (TINY_PRESET.replace("      size: 64", "      size: 64\n      seq_len: 128\n      vocab_size: 64", 1)
            .replace("d_model: 16\n", "d_model: 128\n", 1)
            .replace("n_layers: 2\n", "n_layers: 2\n      vocab_size: 64\n", 1))
    return parse_manifest(text, tiny_registry()).experiments[0]


def test_estimate_within_25_percent_of_allocated_cpu_memory() -> None:
    registry = tiny_registry()
    chosen = experiment()
    estimate = estimate_memory(chosen, registry, batch_size=BATCH, precision="fp32")
    torch.manual_seed(1)
    model = chosen.model.build(registry)
    dataset = chosen.dataset.build(registry)
    batch = collate([dataset[i] for i in range(BATCH)])
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    actual = weights + training_step_peak_bytes(model, chosen.objective.build(registry), batch,
                                                build_optimizer(model, chosen.trainer))
    assert abs(estimate.total_bytes - actual) <= 0.25 * actual, (estimate.to_json(), actual)
    assert estimate.parameters == sum(p.numel() for p in model.parameters())
    assert sum(estimate.parameters_by_component.values()) == estimate.parameters
    assert estimate.activation_bytes > estimate.weights_bytes  # activations dominate at this size


def test_estimate_grows_with_batch_and_shrinks_with_bf16() -> None:
    registry = tiny_registry()
    chosen = experiment()
    small = estimate_memory(chosen, registry, batch_size=4, precision="fp32")
    large = estimate_memory(chosen, registry, batch_size=32, precision="fp32")
    half = estimate_memory(chosen, registry, batch_size=32, precision="bf16")
    assert large.activation_bytes > 4 * small.activation_bytes
    assert half.activation_bytes < large.activation_bytes
    assert large.optimizer_bytes == 2 * large.weights_bytes


def test_a_device_name_is_matched_whole() -> None:
    from mosaic.runtime.training.preflight import device_problems

    assert device_problems("cpu", "$.trainer.device") == []
    for bad in ("cpu\n", "cuda:0\n", "gpu", "cuda:1234"):  # "cpu\n" passed a $-anchored pattern
        problems = device_problems(bad, "$.trainer.device")
        assert [p.path for p in problems] == ["$.trainer.device"] and "must be one of" in problems[0].message
