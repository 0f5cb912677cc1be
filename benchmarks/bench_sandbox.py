"""Sandboxed tool-call overhead against a bare ``python3 -I -S -c pass`` measured in the same run.

The sandboxed call includes everything a registry call pays: AST gate, child start, namespaces,
two forks, tmpfs scratch mount, rlimits, privilege drop, Landlock, seccomp, the restricted runtime,
JSON result parsing and the survivor check. Goal: median overhead <= 100 ms.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from harness import goal, main, seconds

TRIVIAL = "def run(x):\n    return x + 1\n"


def run(quick: bool) -> dict[str, Any]:
    from mosaic.runtime.tools.sandbox import Sandbox, SandboxPolicy

    repeats = 8 if quick else 40
    python = os.path.realpath(sys.executable)

    def bare() -> None:
        subprocess.run([python, "-I", "-S", "-c", "pass"], env={}, close_fds=True, check=True)

    sandbox = Sandbox(SandboxPolicy())
    no_language = Sandbox(SandboxPolicy(language_layers=False))
    bare_ms = seconds(bare, repeats=repeats) * 1000.0
    sandboxed_ms = seconds(lambda: sandbox.run(TRIVIAL, {"x": 1}), repeats=repeats) * 1000.0
    os_only_ms = seconds(lambda: no_language.run(TRIVIAL, {"x": 1}), repeats=repeats) * 1000.0
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
