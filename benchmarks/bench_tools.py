"""Tools the model writes: a ``mosaic_tools`` model builds tools for held-out requests, end to end.

``tool_building_benchmark(quick)`` trains the ``mosaic_tools`` preset with its CPU defaults (``quick``:
a few steps, a smoke run) by running the installed ``mosaic run``, or takes a finished run
(``--from-run``), then feeds each held-out ``ToolRequest`` of ``dataset.tool_building`` (split eval:
(task, parameter) combinations never seen in training) to the installed ``mosaic events RUN_DIR
--tools DIR --fresh`` in a process of its own, with a fresh tool registry. The runtime validates the
model's ``ToolDefinition``, registers it, runs the model's ``ToolCall`` in the sandbox and returns the
results as events; the benchmark reads them from stdout. A request succeeds when its tool registered
``active``, the model's own call returned the right value, and a probe call of the registered tool
(made here through the same registry and sandbox) returned the right value too.

Keys: ``success_rate`` (the goal: >= 0.8 at the preset's full CPU budget), ``registered_rate``,
``call_rate``, ``probe_rate``, ``requests``, the run's ``steps`` and ``train_wall_seconds``, the
in-process evaluation's ``eval_success_rate`` (``mosaic eval``'s ``eval.tools.success_rate``),
``per_task`` (successes/requests by task), ``deprecation`` (the model's registered tools in one
registry that retires a tool unused for ``DEPRECATE_AFTER`` calls; one is used, the rest are not:
``used_state``, ``deprecated`` of ``unused``, ``deprecated_refuse_calls``), ``memory_off`` (the same
requests in-process with every block's memory read zeroed: the ablation) and ``examples``. ``bench_idle.py`` imports ``tool_building_benchmark`` for its ``tools.success_rate``.

    python benchmarks/bench_tools.py [--quick] [--from-run RUN_DIR] [--requests N] [--out docs/results/tools.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).parent.parent / "docs" / "results" / "tools.json"
QUICK_OVERRIDES = ["vars.steps=20", "trainer.checkpoint_every=20", "eval.samples=2"]
FULL_REQUESTS, QUICK_REQUESTS = 24, 3
#: The deprecation figure's registry retires a tool unused for this many calls.
DEPRECATE_AFTER = 3


def _mosaic() -> str:
    script = Path(sys.executable).parent / "mosaic"
    return str(script) if script.exists() else "mosaic"


def train(root: Path, quick: bool) -> Path:
    """Train the preset with the installed ``mosaic run``; the run directory."""
    overrides = [arg for item in (QUICK_OVERRIDES if quick else []) for arg in ("--set", item)]
    subprocess.run(
        [_mosaic(), "run", "mosaic_tools", "--out", str(root), "--no-progress", "-q", *overrides], check=True
    )
    return (root / "mosaic_tools" / "latest").resolve()


def play(run_dir: Path, episode: Any, root: Path) -> dict[str, Any]:
    """One held-out request through ``mosaic events`` with a fresh registry; what came out."""
    from mosaic.core.errors import MosaicError
    from mosaic.core.keys import APPROVAL_KEY_NAME, AUDIT_KEY_NAME
    from mosaic.runtime.tools.registry import open_registry

    root.mkdir(parents=True)
    keys = root / "keys"  # the CLI's key directory (MOSAIC_KEY_DIR), never the user's
    env = {**os.environ, "MOSAIC_KEY_DIR": str(keys)}
    request = episode.request.to_json() + "\n"
    done = subprocess.run(
        [
            _mosaic(),
            "events",
            str(run_dir),
            "--tools",
            str(root / "tools"),
            "--fresh",
            "--no-save",
            "--no-summary",
            "--commitments",
            "event",
            "--max-new-bytes",
            "384",
        ],
        input=request.encode(),
        capture_output=True,
        env=env,
        check=False,
    )
    registry = open_registry(
        root / "tools", key_file=keys / AUDIT_KEY_NAME, approval_key_file=keys / APPROVAL_KEY_NAME
    )
    emitted = [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]
    registered = [
        e["payload"]["name"]
        for e in emitted
        if e["type"] == "ToolRegistered" and e["payload"].get("state") == "active"
    ]
    calls = {e["id"]: e["payload"] for e in emitted if e["type"] == "ToolCall"}
    call_ok = any(
        e["type"] == "ToolResult"
        and e["payload"].get("tool") in registered
        and e["payload"].get("value") == episode.expected
        and calls.get(e["payload"].get("in_reply_to"), {}).get("arguments") == episode.arguments
        for e in emitted
    )
    probe_ok = False
    definition = None
    if registered:
        definition = registry.get(registered[0]).definition
        try:
            probe_ok = registry.call(registered[0], episode.probe_arguments).value == episode.probe_expected
        except MosaicError:  # a tool that fails its probe is a failed request
            probe_ok = False
    return {
        "definition": definition,
        "request": episode.request.payload,
        "emitted": [e["type"] for e in emitted],
        "exit_status": done.returncode,
        "tool": registered[0] if registered else None,
        "registered": bool(registered),
        "call_ok": call_ok,
        "probe_ok": probe_ok,
        "success": bool(registered) and call_ok and probe_ok,
    }


def deprecation(
    built: list[tuple[Any, dict[str, Any]]], root: Path, idle_calls: int = DEPRECATE_AFTER
) -> dict[str, Any]:
    """The model's own registered tools (definition, arguments of its call) submitted to one registry
    that deprecates a tool unused for ``idle_calls`` calls; the first is then called ``idle_calls``
    times, the others never. What became of each: the used one must stay active, the rest be
    deprecated (and refuse calls)."""
    from mosaic.core.errors import MosaicError
    from mosaic.runtime.tools.registry import ToolRegistryConfig, ToolState, open_registry

    registry = open_registry(
        root / "tools",
        key_file=root / "audit.key",
        approval_key_file=root / "approval.key",
        config=ToolRegistryConfig(deprecate_after_idle_calls=idle_calls, max_creations_per_window=1000),
    )
    active = [(d, a) for d, a in built if registry.submit(d).state is ToolState.ACTIVE]
    if not active:
        return {"tools": 0, "idle_calls": idle_calls}
    (used, arguments), unused = active[0], active[1:]
    for _ in range(idle_calls):
        registry.call(used.name, arguments)
    refused = 0
    for definition, args in unused:
        try:
            registry.call(definition.name, args)
        except MosaicError:
            refused += 1
    states = {d.name: registry.get(d.name).state.value for d, _ in active}
    return {
        "tools": len(active),
        "idle_calls": idle_calls,
        "used_state": states[used.name],
        "deprecated": sum(1 for d, _ in unused if states[d.name] == ToolState.DEPRECATED.value),
        "unused": len(unused),
        "deprecated_refuse_calls": refused,
    }


def memory_off_figure(run_dir: Path, count: int) -> dict[str, Any]:
    """The ablation: the run's model with every block's memory read zeroed plays the same held-out
    requests in-process (``mosaic eval``'s runtime path); its rates."""
    from mosaic.core.plugins import get_registry
    from mosaic.runtime.training.eval_organism import memory_off
    from mosaic.runtime.training.eval_tools import tool_building_report
    from mosaic.runtime.training.loading import load_trained_model

    loaded = load_trained_model(run_dir, registry=get_registry())
    dataset = get_registry().build("dataset.tool_building", {"split": "eval", "seed": 1})
    with memory_off(loaded.model):
        figures = tool_building_report(loaded.model, dataset, samples=count)["tools"]
    return {
        key: figures[key]
        for key in ("success_rate", "registered_rate", "call_rate", "probe_rate", "requests")
    }


def _summary_from_metrics(run_dir: Path) -> dict[str, Any]:
    """Steps and training seconds from ``metrics.jsonl`` (a run stopped during its final evaluation
    has no ``summary.json``)."""
    last = [
        json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()
    ][-1]
    return {"steps": last["step"], "wall_seconds": last["elapsed_s"]}


def tool_building_benchmark(
    quick: bool, *, run_dir: Path | None = None, requests: int | None = None
) -> dict[str, Any]:
    """Train (or take ``run_dir``), then play held-out requests through ``mosaic events``."""
    from mosaic.core.plugins import get_registry
    from mosaic.runtime.training.run_dir import RunDir

    count = requests or (QUICK_REQUESTS if quick else FULL_REQUESTS)
    with tempfile.TemporaryDirectory(prefix="mosaic-bench-tools-") as tmp:
        if run_dir is None:
            run_dir = train(Path(tmp) / "runs", quick)
        config = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
        episodes = get_registry().build("dataset.tool_building", {"split": "eval", "seed": 1}).episodes(count)
        started = time.perf_counter()
        outcomes = [
            play(run_dir, episode, Path(tmp) / f"request{index}") for index, episode in enumerate(episodes)
        ]
        play_seconds = time.perf_counter() - started
        built = [
            (outcome["definition"], episode.arguments)
            for outcome, episode in zip(outcomes, episodes, strict=True)
            if outcome["definition"] is not None
        ]
        retired = deprecation(built, Path(tmp) / "deprecation")
        ablation = memory_off_figure(run_dir, count)
        for outcome in outcomes:
            outcome.pop("definition")
        run = RunDir.existing(run_dir)
        summary = run.read_summary() if run.summary_path.exists() else _summary_from_metrics(run_dir)

    def rate(key: str) -> float:
        return sum(1 for outcome in outcomes if outcome[key]) / max(len(outcomes), 1)

    def rate_of(chosen: list[dict[str, Any]]) -> str:
        return f"{sum(1 for outcome in chosen if outcome['success'])}/{len(chosen)}"

    tools_eval = (summary.get("eval") or {}).get("tools") or {}
    return {
        "success_rate": rate("success"),
        "registered_rate": rate("registered"),
        "call_rate": rate("call_ok"),
        "probe_rate": rate("probe_ok"),
        "requests": len(outcomes),
        "goal": ">= 0.8",
        "met": rate("success") >= 0.8,
        "steps": summary.get("steps"),
        "train_wall_seconds": round(float(summary.get("wall_seconds", 0.0)), 1),
        "play_wall_seconds": round(play_seconds, 1),
        "eval_success_rate": tools_eval.get("success_rate"),
        "eval_requests": tools_eval.get("requests"),
        "preset": config.get("preset", "mosaic_tools"),
        "per_task": {
            task: rate_of([o for o in outcomes if o["request"]["task"] == task])
            for task in sorted({o["request"]["task"] for o in outcomes})
        },
        "deprecation": retired,
        "memory_off": ablation,
        "examples": outcomes[:6],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="benchmark: tools the model writes (mosaic_tools)")
    parser.add_argument("--quick", action="store_true", help="a few training steps and requests (smoke run)")
    parser.add_argument(
        "--from-run", type=Path, help="a finished mosaic_tools run directory instead of training"
    )
    parser.add_argument("--requests", type=int, help="held-out requests to play")
    parser.add_argument("--note", default="", help="how loaded the machine was (kept with the results)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    results = {
        "benchmark": "tools",
        "quick": args.quick,
        "note": args.note,
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": tool_building_benchmark(args.quick, run_dir=args.from_run, requests=args.requests),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(
        json.dumps({k: v for k, v in results["results"].items() if k != "examples"}, indent=2, sort_keys=True)
    )


if __name__ == "__main__":
    main()
