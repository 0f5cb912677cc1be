"""The tool-building table, rendered from ``docs/results/tools.json`` (written by
``benchmarks/bench_tools.py``): held-out requests played through ``mosaic events``, each rate with
the budget behind it, then the JSON's note on the machine."""

from __future__ import annotations

import json
from pathlib import Path

ROWS = (
    ("success_rate", "tool registers, the model's call and a probe call return the right values"),
    ("registered_rate", "the generated definition registers (active)"),
    ("call_rate", "the model's own ToolCall returns the right value"),
    ("probe_rate", "a probe call of the registered tool returns the right value"),
    ("eval_success_rate", "`mosaic eval`'s `eval.tools.success_rate` (in-process runtime path)"),
)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


def render(results: Path) -> str:
    table = json.loads((results / "tools.json").read_text())
    figures = table["results"]
    lines = ["| metric | value | what |", "|---|---|---|"]
    lines += [f"| `{key}` | {_cell(figures.get(key))} | {what} |" for key, what in ROWS]
    lines += [
        "",
        f"Held-out requests: {figures['requests']} through `mosaic events` "
        f"(`eval_success_rate` over {_cell(figures.get('eval_requests'))}); goal {figures['goal']}, "
        f"met: {'yes' if figures['met'] else 'no'}. Training: {figures['steps']} steps in "
        f"{figures['train_wall_seconds']} s; playing the requests took {figures['play_wall_seconds']} s.",
    ]
    per_task = figures.get("per_task")
    if per_task:
        lines += [
            "",
            "Per task (successes/requests): " + ", ".join(f"`{t}` {r}" for t, r in per_task.items()) + ".",
        ]
    ablation = figures.get("memory_off")
    if ablation:
        lines += [
            "",
            f"Memory off (every block's memory read zeroed, same run and requests, in-process): success "
            f"{_cell(ablation.get('success_rate'))}, registered {_cell(ablation.get('registered_rate'))}, "
            f"call {_cell(ablation.get('call_rate'))} over {ablation.get('requests')} requests.",
        ]
    retired = figures.get("deprecation")
    if retired and retired.get("tools"):
        lines += [
            "",
            f"Deprecation: the model's {retired['tools']} registered tools in one registry that retires a tool "
            f"unused for {retired['idle_calls']} calls; one called {retired['idle_calls']} times stays "
            f"`{retired['used_state']}`, {retired['deprecated']} of the {retired['unused']} unused ones are "
            f"deprecated and {retired['deprecated_refuse_calls']} refuse a later call.",
        ]
    if table.get("note"):
        lines += ["", f"Note: {table['note']}"]
    return "\n".join(lines) + "\n"
