"""MOSAIC layers benchmark: MosaicLM against a same-width, same-depth Transformer in one run.

- training tokens/s (forward + backward) ratio MosaicLM / Transformer at T=512 (goal >= 1.0) and
  T=4096 (goal >= 3.0);
- streaming step time at context 8192 / at context 128 (goal <= 1.1);
- the chunked block against its step-by-step reference twin (speed-up, max abs difference);
- parameter count and share per component, and the state bank against the original 2*K*D^2.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from harness import goal, main, rate, seconds

from mosaic.layers.baseline import TransformerBaseline
from mosaic.layers.config import MosaicBlockConfig, MosaicLMConfig, TransformerBaselineConfig
from mosaic.layers.model import MosaicLM, parameter_breakdown
from mosaic.layers.reference import reference_block_forward

D_MODEL, N_LAYERS, VOCAB = 128, 2, 256


def training_rate(model: torch.nn.Module, batch: int, length: int, min_seconds: float) -> float:
    ids = torch.randint(0, VOCAB, (batch, length))

    def train_step() -> None:
        out = model({"input_ids": ids, "target_ids": ids})
        F.cross_entropy(out.logits.flatten(0, 1), ids.flatten()).backward()

    return rate(train_step, items_per_call=batch * length, min_seconds=min_seconds)


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
    torch.manual_seed(0)
    mosaic = MosaicLM(MosaicLMConfig(vocab_size=VOCAB, n_layers=N_LAYERS, block=MosaicBlockConfig(d_model=D_MODEL)))
    transformer = TransformerBaseline(TransformerBaselineConfig(
        vocab_size=VOCAB, d_model=D_MODEL, n_layers=N_LAYERS, n_heads=4, max_seq_len=4096))
    min_seconds = 0.5 if quick else 3.0
    training = {}
    for length, batch, target in ((512, 2 if quick else 8, 1.0), (4096, 1, 3.0)):
        mosaic_rate = training_rate(mosaic, batch, length, min_seconds)
        transformer_rate = training_rate(transformer, batch, length, min_seconds)
        training[f"T{length}"] = {
            "batch": batch,
            "mosaic_tokens_per_s": round(mosaic_rate, 1),
            "transformer_tokens_per_s": round(transformer_rate, 1),
            "ratio": goal(mosaic_rate / transformer_rate, target, at_least=True),
        }
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
