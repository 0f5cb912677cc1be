"""The performance table, rendered from the benchmark JSON committed in ``docs/results/``:
``layers.json`` (``benchmarks/bench_layers.py``), ``layers_step.json`` (its one-token step rows,
``bench_layers.py --only step``), ``lm.json`` (``bench_lm.py``), ``chronomoe.json``
(``bench_chronomoe.py``) and ``plugins.json`` (``bench_plugins.py``). One row per figure, each with
the machine it was measured on and the load average recorded with it; a benchmark whose JSON is not
committed yet shows one row saying so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COLUMNS = ("benchmark", "figure", "value", "goal", "met", "machine", "load average")
SOURCES = ("layers", "layers_step", "lm", "chronomoe", "plugins")


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _figure(name: str, value: Any) -> tuple[str, str, str, str]:
    """(figure, value, goal, met) from a plain number or a harness ``goal(...)`` dict."""
    if isinstance(value, dict) and "value" in value:
        return name, _number(value["value"]), str(value.get("goal", "-")), _number(value.get("met"))
    return name, _number(value), "-", "-"


def _layers(results: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    training = results["training"]
    for length in ("T512", "T4096"):
        entry = training[length]
        batch = entry["batch"]
        for model, rate in entry["tokens_per_s"].items():
            yield f"training tokens/s, {length[1:]} tokens x batch {batch}: {model.replace('_', ' ')}", rate
        yield f"training ratio MOSAIC (control on) / same-width Transformer, {length[1:]} tokens (wall)", entry["ratio"]
        for key, label in (
            ("mosaic_control_off_over_transformer_wall", "MOSAIC (control off) / same-width Transformer (wall)"),
            ("mosaic_control_on_over_transformer_parameter_matched_wall",
             "MOSAIC (control on) / parameter-matched Transformer (wall)"),
            ("mosaic_control_off_over_transformer_parameter_matched_wall",
             "MOSAIC (control off) / parameter-matched Transformer (wall)"),
            ("mosaic_control_on_over_transformer_cpu", "MOSAIC (control on) / same-width Transformer (CPU time)"),
            ("mosaic_control_off_over_transformer_cpu", "MOSAIC (control off) / same-width Transformer (CPU time)"),
        ):
            yield f"training ratio {label}, {length[1:]} tokens", entry[key]
    yield "parameters: MosaicLM / same-width / parameter-matched Transformer", " / ".join(
        _number(training["parameters"][name])
        for name in ("mosaic_control_on", "transformer", "transformer_parameter_matched")
    )
    streaming = results["streaming"]
    yield "one-token step, context 128 (s)", streaming["step_s_context_128"]
    yield "one-token step, context 8192 (s)", streaming["step_s_context_8192"]
    yield "step time ratio context 8192 / 128", streaming["ratio"]


def _layers_step(results: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """MOSAIC's recurrent step against the Transformer's preallocated KV-cache step (inference mode,
    the way ``generate`` steps), best of interleaved rounds; goals by process CPU time (on the shared
    machine wall time mostly measures the scheduler), wall ratios beside them."""
    timed = results["step"]["inference_mode"]
    seconds = timed["seconds"]
    for context in (128, 8192, 32768):
        if f"transformer_ctx{context}" in seconds:
            yield f"Transformer KV-cache step, context {context} (CPU s)", seconds[f"transformer_ctx{context}"]["best_cpu_s"]
    for name in ("control_on", "control_off"):
        label = name.replace("_", " ")
        ratios = timed[name]
        yield f"MOSAIC step ({label}), context 128 (CPU s)", seconds[f"mosaic_{name}_ctx128"]["best_cpu_s"]
        for context in (128, 8192, 32768):
            if f"cpu_ratio_to_kv_ctx{context}" in ratios:
                yield (f"MOSAIC step ({label}) / KV-cache step, context {context} (CPU time)",
                       ratios[f"cpu_ratio_to_kv_ctx{context}"])
                yield (f"MOSAIC step ({label}) / KV-cache step, context {context} (wall)",
                       ratios[f"ratio_to_kv_ctx{context}"])
        if "forced_opcode_worst_cpu_ratio_to_kv_ctx128" in ratios:
            forced = ratios["forced_opcode_cpu_ratio_to_kv_ctx128"]
            worst = max(forced, key=forced.get)
            yield (f"MOSAIC step ({label}) / KV-cache step, context 128, every opcode forced in turn: "
                   f"the slowest ({worst}) (CPU time)", ratios["forced_opcode_worst_cpu_ratio_to_kv_ctx128"])
        yield f"MOSAIC step ({label}) context 8192 / context 128 (CPU time)", ratios["ctx8192_over_ctx128_cpu"]
        yield f"MOSAIC step ({label}), 64 streams at once: tokens per CPU second", ratios["streams64_tokens_per_s_cpu"]


def _lm(results: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, entry in sorted(results.items()):
        if not key.startswith("context_"):
            continue
        context, steps = entry["context"], entry["steps"]
        for model in ("transformer", "mosaic"):
            side = entry[model]
            yield f"context {context}, {steps} steps: {model} val loss at equal steps", side["val_loss_at_equal_steps"]
            yield (f"context {context}: {model} val loss at equal wall time ({entry['equal_wall_time_s']:.0f} s)",
                   side["val_loss_at_equal_wall_time"])
            yield f"context {context}: {model} training tokens/s", side["tokens_per_s"]
        yield f"context {context}: tokens/s MOSAIC / Transformer", entry["tokens_per_s_ratio"]
    if "transformer_reproduces_nanogpt" in results:
        yield "Transformer val loss at context 64 against nanoGPT's 1.88", results["transformer_reproduces_nanogpt"]


def _chronomoe(results: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    yield "router.chrono fwd+bwd / router.topk", results["chrono_overhead"]
    yield "router.chrono with role tracking / router.topk", results["chrono_with_roles_overhead"]
    yield "MoE top-2 of 8 (capacity dispatch) / FLOP-matched dense FFN", results["moe_vs_dense"]
    yield "MoE top-2 of 8 (dropless sorted dispatch) / FLOP-matched dense FFN", results["moe_sorted_vs_dense"]
    yield "coherence-buffer updates/s (64 experts)", results["coherence_updates"]["updates_per_s"]


def _plugins(results: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    yield f"mosaic plugins list wall time (s), median of {results['runs']} warm runs", results["plugins_list_s"]
    if "plugins_list_cpu_s" in results:
        yield "mosaic plugins list CPU time (s, user + system), median of the same runs", results["plugins_list_cpu_s"]
    yield "bare python -c pass (s), same runs", results["python_startup_s"]


FIGURES = {"layers": _layers, "layers_step": _layers_step, "lm": _lm, "chronomoe": _chronomoe, "plugins": _plugins}


def _load(results: dict[str, Any]) -> str:
    load = (results.get("load_average") or results.get("training", {}).get("load_average_start")
            or results.get("step", {}).get("load_average_start"))
    if isinstance(load, dict):  # bench_lm: at start and end
        load = load.get("start")
    return "-" if not load else " / ".join(f"{value:.1f}" for value in load)


def render(results_dir: Path) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for source in SOURCES:
        path = results_dir / f"{source}.json"
        if not path.is_file():
            lines.append(f"| {source} | not measured yet (no docs/results/{source}.json) | - | - | - | - | - |")
            continue
        data = json.loads(path.read_text())
        machine = data["machine"].get("name", f"{data['machine']['cpu_count']}-core CPU")
        load = _load(data["results"])
        for name, value in FIGURES[source](data["results"]):
            figure, shown, target, met = _figure(name, value)
            lines.append(f"| {source} | {figure} | {shown} | {target} | {met} | {machine} | {load} |")
    return "\n".join(lines) + "\n"
