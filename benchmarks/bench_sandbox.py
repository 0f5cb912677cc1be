"""Sandboxed tool-call overhead against a bare ``python3 -I -S -c pass`` measured in the same run.

The sandboxed call includes everything a registry call pays: AST gate, child start, namespaces,
two forks, tmpfs scratch mount, rlimits, privilege drop, Landlock, seccomp, the restricted runtime,
JSON result parsing and the survivor check. Goal: median overhead <= 100 ms.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import goal, main

TRIVIAL = "def run(x):\n    return x + 1\n"


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def run(quick: bool) -> dict[str, Any]:
    from mosaic.runtime.tools.sandbox import Sandbox, SandboxPolicy

    repeats = 8 if quick else 40
    python = os.path.realpath(sys.executable)

    def bare() -> None:
        subprocess.run([python, "-I", "-S", "-c", "pass"], env={}, close_fds=True, check=True)

    sandbox = Sandbox(SandboxPolicy())
    no_language = Sandbox(SandboxPolicy(language_layers=False))
    bare_ms = _median_ms(bare, repeats)
    sandboxed_ms = _median_ms(lambda: sandbox.run(TRIVIAL, {"x": 1}), repeats)
    os_only_ms = _median_ms(lambda: no_language.run(TRIVIAL, {"x": 1}), repeats)
    overhead = sandboxed_ms - bare_ms
    return {
        "bare_python_ms": round(bare_ms, 2),
        "sandboxed_call_ms": round(sandboxed_ms, 2),
        "sandboxed_call_os_layers_only_ms": round(os_only_ms, 2),
        "overhead_ms": goal(overhead, 100.0, at_least=False),
        "overhead_ratio": round(sandboxed_ms / bare_ms, 3),
        "repeats": repeats,
        "layers_required": sorted(sandbox.policy.required_layers),
    }


if __name__ == "__main__":
    main(run, "sandbox")
