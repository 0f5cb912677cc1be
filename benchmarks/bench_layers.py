"""MOSAIC layers benchmark: MosaicLM against a same-width, same-depth Transformer in one run.

- training tokens/s (forward + backward) ratio MosaicLM / Transformer at T=512 (goal >= 1.0) and
  T=4096 (goal >= 3.0), opcode control on (the goal) and off, and against a parameter-matched
  Transformer; every model timed in turn within each round and the ratios taken per round (median),
  by wall time and by process CPU time, because the machine is shared;
- streaming step time at context 8192 / at context 128 (goal <= 1.1);
- the chunked block against its step-by-step reference twin (speed-up, max abs difference);
- parameter count and share per component, and the state bank against the original 2*K*D^2.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from harness import goal, main, seconds

from mosaic.layers.baseline import TransformerBaseline
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig, TransformerBaselineConfig
from mosaic.layers.model import MosaicLM, parameter_breakdown
from mosaic.layers.reference import reference_block_forward

D_MODEL, N_LAYERS, VOCAB = 128, 2, 256


def training_step(model: torch.nn.Module, ids: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    out = model({"input_ids": ids, "target_ids": ids})
    F.cross_entropy(out.logits.flatten(0, 1), ids.flatten()).backward()


def mosaic_model(control: bool) -> MosaicLM:
    torch.manual_seed(0)
    block = MosaicBlockConfig(d_model=D_MODEL, opcodes_control_enabled=control)
    return MosaicLM(MosaicLMConfig(vocab_size=VOCAB, n_layers=N_LAYERS, block=block))


def transformer_model(width: int) -> TransformerBaseline:
    torch.manual_seed(0)
    return TransformerBaseline(TransformerBaselineConfig(
        vocab_size=VOCAB, d_model=width, n_layers=N_LAYERS, n_heads=4, max_seq_len=4096))


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_width(target: int) -> int:
    """The Transformer width (a multiple of its 4 heads) whose parameter count is nearest ``target``."""
    return min(range(8, 4 * D_MODEL + 1, 4), key=lambda width: abs(parameters(transformer_model(width)) - target))


def paired_training(models: dict[str, torch.nn.Module], batch: int, length: int, rounds: int
                    ) -> dict[str, dict[str, list[float]]]:
    """Seconds (wall and process CPU) of one training step of each model, all models in turn in each round."""
    ids = torch.randint(0, VOCAB, (batch, length))
    for model in models.values():
        training_step(model, ids)  # warm-up
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            wall, cpu = time.perf_counter(), time.process_time()
            training_step(model, ids)
            times[name]["wall"].append(time.perf_counter() - wall)
            times[name]["cpu"].append(time.process_time() - cpu)
    return times


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def training_comparison(quick: bool) -> dict[str, Any]:
    """Training tokens/s of MosaicLM (opcode control on and off) against the same-width and a
    parameter-matched Transformer: per-round ratios (throughput MOSAIC / Transformer), medians."""
    models: dict[str, torch.nn.Module] = {"mosaic_control_on": mosaic_model(True), "mosaic_control_off": mosaic_model(False),
                                          "transformer": transformer_model(D_MODEL)}
    width = matched_width(parameters(models["mosaic_control_on"]))
    models["transformer_parameter_matched"] = transformer_model(width)
    rounds = 2 if quick else 5
    results: dict[str, Any] = {
        "parameters": {name: parameters(model) for name, model in models.items()},
        "parameter_matched_width": width, "rounds": rounds, "load_average_start": list(os.getloadavg()),
    }
    for length, batch, target in ((512, 2 if quick else 8, 1.0), (4096, 1, 3.0)):
        times = paired_training(models, batch, length, rounds)
        entry: dict[str, Any] = {"batch": batch, "tokens_per_s": {
            name: round(batch * length / median(value["wall"]), 1) for name, value in times.items()}}
        for clock in ("wall", "cpu"):
            for mosaic in ("mosaic_control_on", "mosaic_control_off"):
                for baseline in ("transformer", "transformer_parameter_matched"):
                    ratio = median([b / m for m, b in zip(times[mosaic][clock], times[baseline][clock], strict=True)])
                    key = f"{mosaic}_over_{baseline}_{clock}"
                    entry[key] = (goal(ratio, target, at_least=True)
                                  if (mosaic, baseline, clock) == ("mosaic_control_on", "transformer", "wall")
                                  else round(ratio, 4))
        entry["ratio"] = entry["mosaic_control_on_over_transformer_wall"]  # the goal
        results[f"T{length}"] = entry
    results["load_average_end"] = list(os.getloadavg())
    return results


def step_seconds(model: MosaicLM, context: int, repeats: int) -> float:
    with torch.no_grad():
        state = model.prefill(torch.randint(0, VOCAB, (1, context)), chunk_tokens=1024).state
        token = torch.tensor([7])
        return seconds(lambda: model.step(token, state), repeats=repeats, warmup=3)


def twin_comparison(length: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = MosaicLM(MosaicLMConfig(vocab_size=VOCAB, n_layers=1, block=MosaicBlockConfig(d_model=D_MODEL)))
    block = model.blocks[0]
    x = torch.randn(1, length, D_MODEL)
    with torch.no_grad():
        fast = seconds(lambda: block(x), repeats=3)
        reference = seconds(lambda: reference_block_forward(block, x), repeats=1, warmup=0)
        difference = (block(x)[0] - reference_block_forward(block, x)[0]).abs().max().item()
    return {"tokens": length, "fast_s": round(fast, 4), "reference_s": round(reference, 4),
            "speedup": round(reference / fast, 1), "max_abs_diff": difference}


def run(quick: bool) -> dict[str, Any]:
    torch.set_num_threads(1)  # both sides on one thread, as the goals are stated
    training = training_comparison(quick)
    torch.manual_seed(0)
    mosaic = MosaicLM(MosaicLMConfig(vocab_size=VOCAB, n_layers=N_LAYERS, block=MosaicBlockConfig(d_model=D_MODEL)))
    transformer = transformer_model(D_MODEL)
    mosaic.eval()
    repeats = 20 if quick else 100
    short, long = step_seconds(mosaic, 128, repeats), step_seconds(mosaic, 8192, repeats)
    counts = parameter_breakdown(mosaic)
    block = mosaic.config.block
    original_bank = 2 * block.state_k * block.d_model**2 * N_LAYERS
    return {
        "config": {"d_model": D_MODEL, "n_layers": N_LAYERS, "vocab": VOCAB, "chunk_size": block.chunk_size,
                   "threads": torch.get_num_threads()},
        "training": training,
        "streaming": {"step_s_context_128": round(short, 6), "step_s_context_8192": round(long, 6),
                      "ratio": goal(long / short, 1.1, at_least=False)},
        "reference_twin": twin_comparison(256 if quick else 1024),
        "parameters": {
            "count": counts,
            "share": {name: round(n / counts["total"], 4) for name, n in counts.items() if name != "total"},
            "state_bank_vs_original_2KD2": round(counts["state_bank"] / original_bank, 4),
            "transformer_total": sum(p.numel() for p in transformer.parameters()),
        },
    }


if __name__ == "__main__":
    main(run, "layers")
