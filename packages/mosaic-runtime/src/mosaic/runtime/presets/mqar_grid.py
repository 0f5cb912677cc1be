"""The MQAR grid presets: ``mqar_<model>_<L>_<KV>`` for MOSAIC, the Transformer and the gated
delta-rule baseline at Zoology's points (128, 8), (256, 16) and (512, 64), V 8192, d 64, 2 layers.

One preset is a header made here (name, notes and the point's ``vars``) followed by the model's
shared body (``mqar_grid_<model>.body.yml``, which reads only ``${vars}``) and the shared trainer,
evaluation and budget section below, so the nine presets differ only in their ``vars``.

Every model at a point gets the same data stream (``dataset.mqar`` with the same seed and a
training stream longer than the budget draws, so no sample repeats), optimiser (AdamW at ``lr``,
50 warm-up steps, cosine) and budget (batch × steps). The memory geometry follows one rule,
:func:`memory_geometry`, the one that gives the (64, 4) preset's 2 buckets of 8 slots.
"""

from __future__ import annotations

from functools import partial
from importlib import resources

MODELS = ("mosaic", "transformer", "delta")
NAMES = {"mosaic": "MOSAIC", "transformer": "Transformer baseline", "delta": "gated delta-rule baseline"}
#: (seq_len, num_kv_pairs) -> (batch_size, steps): the CPU budgets of the grid
POINTS: dict[tuple[int, int], tuple[int, int]] = {(128, 8): (64, 2000), (256, 16): (32, 3000), (512, 64): (16, 3000)}
#: (64, 4) is mqar_mosaic / mqar_transformer's point; the delta baseline gets its preset here
SMALL_POINT = (64, 4)
BUDGETS = {SMALL_POINT: (64, 1500), **POINTS}
#: held-out samples, the same fixed set (split eval, seed 1) for every model at a point
EVAL_SAMPLES = 512
#: one learning rate for every model until the benchmark's sweep picks one per model and point
LR = 0.006

TAIL = """\
    trainer:
      steps: ${steps}
      batch_size: ${batch_size}
      threads: ${threads}
      lr: ${lr}
      warmup_steps: 50
      log_every: 25
      eval_every: 100
      checkpoint_every: 0
    eval:
      samples: @EVAL_SAMPLES@
      batch_size: 256
      dataset:
        split: eval
        seed: 1
        teacher_forcing: 0.0
    budget:
      memory_gib: 12
      batch_size: ${batch_size}
      precision: bf16
""".replace("@EVAL_SAMPLES@", str(EVAL_SAMPLES))


#: the most pairs a bucket holds on average: beyond it, buckets multiply instead of growing
PAIRS_PER_BUCKET = 8


def memory_geometry(num_kv_pairs: int) -> tuple[int, int]:
    """``(mem_buckets, mem_assoc)`` for ``num_kv_pairs`` pairs: 4 slots per pair, in
    ``max(2, pairs / 8)`` buckets, so a bucket's expected load is at most 8 pairs and a quarter of
    its slots. Routing is one learned bit up to 16 pairs (``key mod buckets`` from the teacher, then
    the model's own), more bits beyond. At (64, 4) this is ``mqar_mosaic``'s 2 × 8; (128, 8) and
    (256, 16) get 2 × 16 and 2 × 32, (512, 64) 8 × 32.

    Why buckets multiply: with 2 buckets of 128 slots at (512, 64), 32 pairs per bucket, the read's
    key matching never started (chance after 1,700 steps), while 8 buckets of 32 slots (the same
    table) reached 0.84 held-out at step 200; at (512, 32), 2 × 64 was at chance at step 200 and
    8 × 16 at 0.77 (docs/mqar.md)."""
    buckets = max(2, num_kv_pairs // PAIRS_PER_BUCKET)
    return buckets, 4 * num_kv_pairs // buckets


def ring_advance_at(num_kv_pairs: int) -> float:
    """``mem_ring_advance_at`` for ``num_kv_pairs`` pairs: from 16 pairs on, only a write whose gate is
    above one half moves its bucket's ring. With every soft write moving it (0), weak stray writes
    walked the ring over stored pairs: (256, 16) reached 0.9879 in its whole 3000-step budget,
    against 0.99 at step 2100 with 0.5 (docs/mqar.md). The smaller points reached 0.99 with 0 and
    keep it (their rows were measured so)."""
    return 0.5 if num_kv_pairs >= 16 else 0.0


def grid_vars(model: str, seq_len: int, num_kv_pairs: int) -> dict[str, object]:
    batch_size, steps = BUDGETS[(seq_len, num_kv_pairs)]
    shared: dict[str, object] = {
        "threads": 1, "d_model": 64, "n_layers": 2, "vocab_size": 8192, "seq_len": seq_len,
        "num_kv_pairs": num_kv_pairs, "batch_size": batch_size, "steps": steps, "lr": LR,
        # a fresh stream: more samples than the budget draws (plus the learning-rate sweep's)
        "train_samples": 2 * batch_size * steps,
    }
    if model == "mosaic":
        buckets, assoc = memory_geometry(num_kv_pairs)
        shared.update(mem_buckets=buckets, mem_assoc=assoc, memory="memory.hashed", aux_gate_weight=0.1,
                      aux_bits_weight=1.0, tf_warmup=100, tf_cooldown=900,
                      ring_advance_at=ring_advance_at(num_kv_pairs))
    elif model == "delta":
        shared["delta_heads"] = 2
    return shared


def grid_preset(model: str, seq_len: int, num_kv_pairs: int) -> str:
    """The text of preset ``mqar_<model>_<seq_len>_<num_kv_pairs>``."""
    variables = grid_vars(model, seq_len, num_kv_pairs)
    header = [
        "version: 2",
        f"name: mqar_{model}_{seq_len}_{num_kv_pairs}",
        "notes: >",
        f"  MQAR({seq_len}, {num_kv_pairs}, V 8192), d 64, 2 layers, model {model}: the grid point with the same",
        "  data stream, optimiser and budget as the other models there; the vocabulary head runs only at",
        "  labelled (query) positions. MOSAIC's memory has 4 slots per pair, at most 8 pairs per bucket (mqar_grid.memory_geometry).",
        "vars:",
        *(f"  {name}: {value}" for name, value in variables.items()),
    ]
    body = resources.files(__package__).joinpath(f"mqar_grid_{model}.body.yml").read_text(encoding="utf-8")
    return "\n".join(header) + "\n" + body + TAIL


def grid_names() -> dict[str, str]:
    """Every grid preset's name -> its one-line summary."""
    points = [SMALL_POINT, *POINTS]
    return {f"mqar_{model}_{L}_{KV}": summary(model, L, KV) for model in MODELS for L, KV in points
            if (L, KV) != SMALL_POINT or model == "delta"}


def summary(model: str, seq_len: int, num_kv_pairs: int) -> str:
    return f"{NAMES[model]} on MQAR({seq_len}, {num_kv_pairs}, V 8192), d 64, 2 layers"


mqar_mosaic_128_8 = partial(grid_preset, "mosaic", 128, 8)
mqar_mosaic_256_16 = partial(grid_preset, "mosaic", 256, 16)
mqar_mosaic_512_64 = partial(grid_preset, "mosaic", 512, 64)
mqar_transformer_128_8 = partial(grid_preset, "transformer", 128, 8)
mqar_transformer_256_16 = partial(grid_preset, "transformer", 256, 16)
mqar_transformer_512_64 = partial(grid_preset, "transformer", 512, 64)
mqar_delta_64_4 = partial(grid_preset, "delta", 64, 4)
mqar_delta_128_8 = partial(grid_preset, "delta", 128, 8)
mqar_delta_256_16 = partial(grid_preset, "delta", 256, 16)
mqar_delta_512_64 = partial(grid_preset, "delta", 512, 64)
