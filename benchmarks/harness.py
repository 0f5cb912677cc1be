"""Shared helpers for the benchmark scripts (``benchmarks/bench_*.py``).

Each benchmark script defines ``run(quick: bool) -> dict`` returning JSON-ready results whose
targets are *ratios against a baseline measured in the same run*, and ends with
``if __name__ == "__main__": main(run, "<name>")``. The nox ``benchmarks`` session runs them all and
collects ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rate(fn: Callable[[], Any], *, items_per_call: float = 1.0, min_seconds: float = 0.5, warmup: int = 1) -> float:
    """Items per second of ``fn``: repeated until ``min_seconds`` have passed, best of three rounds."""
    for _ in range(warmup):
        fn()
    best = 0.0
    for _ in range(3):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, calls * items_per_call / elapsed)
    return best


def seconds(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of one call of ``fn``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def goal(value: float, target: float, *, at_least: bool) -> dict[str, Any]:
    """A measured ratio with its goal and whether it was met."""
    met = value >= target if at_least else value <= target
    return {"value": round(value, 4), "goal": f"{'>=' if at_least else '<='} {target}", "met": met}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info.read(1 << 20).splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the docs name a measurement's machine by: CPU, cores, threads used, and the load when it
    started (the development machine is shared, so load explains noisy wall times)."""
    import torch

    return {
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "cpu": cpu_model(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        # the machine in words, for the docs ("2-core CPU dev machine, shared")
        "name": os.environ.get("MOSAIC_BENCH_MACHINE", f"{os.cpu_count()}-core CPU"),
    }


def main(run: Callable[..., dict[str, Any]], name: str,
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Run ``run(quick)`` (``run(quick, args)`` when the script adds its own arguments) and write
    its JSON."""
    parser = argparse.ArgumentParser(description=f"benchmark: {name}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for smoke runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / f"{name}.json")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    torch_threads = os.environ.get("MOSAIC_BENCH_THREADS")
    if torch_threads:
        import torch

        torch.set_num_threads(int(torch_threads))
    results = {
        "benchmark": name,
        "quick": args.quick,
        "machine": machine(),
        "results": run(args.quick, args) if add_arguments is not None else run(args.quick),
    }
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))
