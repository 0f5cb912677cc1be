"""Data generation throughput.

Goal (issue #5): generating 100k MQAR samples of (seq_len 512, 64 pairs) takes under 10 s. The
vectorised generator is also measured against its per-row Python twin (``generate_reference``) in
the same run, and the per-item datasets' items/s are reported for scale.

Measured with one torch thread: generation is a chain of small memory-bound tensor ops, the setting
in which a DataLoader worker runs it (torch gives each worker one thread), and the figure that does
not collapse when other processes share the cores (OpenMP threads spin under oversubscription).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from harness import goal, rate
from mosaic.data.config import EventTraceConfig, MemoryCurriculumConfig, MQARConfig
from mosaic.data.event_traces import EventTraceDataset
from mosaic.data.memory_curriculum import MemoryCurriculumDataset
from mosaic.data.mqar import MQARDataset, generate_reference

CHUNK = 4096


def _mqar_seconds(dataset: MQARDataset, total: int) -> float:
    start = time.perf_counter()
    for first in range(0, total, CHUNK):
        dataset.generate(range(first, min(first + CHUNK, total)))
    return time.perf_counter() - start


def run(quick: bool) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(quick)
    finally:
        torch.set_num_threads(threads)


def _measure(quick: bool) -> dict[str, Any]:
    total = 10_000 if quick else 100_000
    config = MQARConfig(seq_len=512, num_kv_pairs=64, vocab_size=8192, num_samples=total)
    dataset = MQARDataset(config)
    dataset.generate(range(64))  # warm up
    elapsed = _mqar_seconds(dataset, total)
    vectorised = total / elapsed
    reference_rows = 20 if quick else 100
    reference = rate(
        lambda: [generate_reference(config, i, 64) for i in range(reference_rows)],
        items_per_call=reference_rows, min_seconds=0.5,
    )
    seconds_for_100k = 100_000 / vectorised
    memory = MemoryCurriculumDataset(MemoryCurriculumConfig(block_size=256, n_pairs=8, distractor_len=8))
    events = EventTraceDataset(EventTraceConfig(block_size=2048))
    return {
        "torch_threads": 1,
        "mqar_512x64": {
            "samples": total,
            "seconds": round(elapsed, 3),
            "samples_per_s": round(vectorised, 1),
            "seconds_for_100k": goal(seconds_for_100k, 10.0, at_least=False),
            "reference_samples_per_s": round(reference, 1),
            "speedup_vs_reference": goal(vectorised / reference, 10.0, at_least=True),
        },
        "memory_curriculum_items_per_s": round(rate(lambda: memory[7], min_seconds=0.3), 1),
        "event_traces_items_per_s": round(rate(lambda: events[7], min_seconds=0.3), 1),
    }


if __name__ == "__main__":
    from harness import main

    main(run, "data")
