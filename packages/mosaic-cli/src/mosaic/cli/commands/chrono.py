"""``mosaic chrono report RUN_DIR``: clocks, β, Ψ and lifecycle decisions of a ChronoMoE run.

Reads only the run directory: ``config.yaml`` (the routers' clock retentions and lifecycle
intervals), ``metrics.jsonl`` (per-layer ``moe_psi_l<i>``, ``moe_beta_absmax_l<i>``,
``moe_max_vio_l<i>``, ``moe_active_experts_l<i>`` logged by the objective) and ``decisions.jsonl``
(written by the trainer from the model's lifecycle hooks). ``--plot PNG`` draws Ψ, |β| and MaxVio
per layer with the decisions marked (needs matplotlib).

With the sovereign core (``layer.chrono_lifecycle`` with ``kernel``), the report also lists the
identity events from the kernel's audit log ``chrono_audit.jsonl`` (scars with the trial's realised
Δloss, reflexes with β at crystallisation and now, epoch boundaries with their before/after
snapshots compared), the keepers' ``Degraded`` reports, refusals and scar blocks, and per layer the
Fisher–Rao disagreement between clean and biased routing (``moe_fisher_rao_l<i>``) and the geodesic
dimensionality of the load signatures (``chrono_signatures.jsonl``). The log's integrity is
``mosaic audit verify``'s business; the report reads it as it stands.

The report keeps no copy of ChronoMoE's edit kinds: a decision record says itself whether it is an
applied edit (``edit``) and how it changed the layer's live experts (``expert_delta``), both filled
from chronomoe's edit table.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mosaic.cli.commands.run import fmt, user_errors
from mosaic.cli.params import png_path
from mosaic.core.contract import keys
from mosaic.core.errors import MosaicError, install_hint

DECISIONS_FILE = "decisions.jsonl"
AUDIT_FILE = "chrono_audit.jsonl"  # chronomoe.sovereign.AUDIT_FILE
SIGNATURES_FILE = "chrono_signatures.jsonl"  # chronomoe.sovereign.SIGNATURES_FILE
FISHER_RAO = keys.MOE_FISHER_RAO.name
ACTIVE_EXPERTS = keys.MOE_ACTIVE_EXPERTS.name
SERIES = (keys.MOE_PSI.name, f"{keys.MOE_BETA.name}_absmax", keys.MOE_MAX_VIO.name, ACTIVE_EXPERTS, FISHER_RAO)
# ChronoConfig's defaults, shown when the run's config leaves a clock field unset
DEFAULT_CLOCKS = {"alpha_fast": 0.9, "alpha_mid": 0.99, "alpha_slow": 0.999}
DEFAULT_INTERVALS = {"mid_interval": 100, "slow_interval": 1000}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of one of the run's JSON-lines files (none when it is missing), read as the
    trainer reads its own: bounded lines, a damaged line named by its number."""
    from mosaic.runtime.training.run_dir import RunDir

    return RunDir(path.parent).read_jsonl(path)


def started_experiment(run: Path, requested: str | None = None) -> str | None:
    """The experiment that ran (``run.json``, else the ``start`` event); ``requested`` must match it."""
    from mosaic.runtime.training.run_dir import RunDir

    return RunDir(run).experiment_for(requested)


def ffn_config(run: Path, experiment: str | None = None) -> dict[str, Any]:
    """The ``ffn`` mapping of the experiment that ran (``{}`` without a layer.moe feed-forward)."""
    from mosaic.runtime.training.run_dir import RunDir
    from mosaic.runtime.training.yaml_source import load_yaml

    run_dir = RunDir(run)
    if not run_dir.config_path.exists():
        return {}
    source = str(run_dir.config_path)
    document = _mapping(load_yaml(run_dir.config_text(), source=source).data, source, "$")
    targets = document.get("targets") or []
    if not isinstance(targets, list):
        raise MosaicError(f"{source}: $.targets is not a list")
    targets = [_mapping(t, source, f"$.targets[{i}]") for i, t in enumerate(targets)]
    name = started_experiment(run, experiment)
    chosen = next((t for t in targets if t.get("name") == name), targets[0] if targets else {})
    model = _mapping(chosen.get("model"), source, "the model")
    return _mapping(_mapping(model.get("block"), source, "model.block").get("ffn") or model.get("ffn"), source,
                    "model.ffn")


def _mapping(value: Any, source: str, where: str) -> dict[str, Any]:
    """``value`` if it is a mapping, ``{}`` if it is absent; anything else names the damaged place."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MosaicError(f"{source}: {where} is not a mapping ({type(value).__name__})")
    return value


def clock_lines(router: dict[str, Any] | None) -> list[str]:
    if router is None:
        return ["router: none (no layer.moe feed-forward in config.yaml)"]
    lines = [f"router: {router.get('type')}"]
    if router.get("type") != "router.chrono":
        return lines
    chrono = router.get("chrono") or {}
    clocks = {**DEFAULT_CLOCKS, **(chrono.get("clocks") or {})}
    for name in ("fast", "mid", "slow"):
        alpha = float(clocks[f"alpha_{name}"])
        lines.append(f"  {name:<4} clock: retention {alpha:g}, half-life {math.log(0.5) / math.log(alpha):.1f} steps")
    lifecycle = {**DEFAULT_INTERVALS, **(chrono.get("lifecycle") or {})}
    lines.append(f"  mid evaluation every {lifecycle['mid_interval']} steps, "
                 f"slow (lifecycle) every {lifecycle['slow_interval']} steps")
    return lines


def layer_count(train: list[dict[str, Any]]) -> int:
    layers = 0
    while any(f"{ACTIVE_EXPERTS}_l{layers}" in record for record in train):
        layers += 1
    return layers


def series_lines(train: list[dict[str, Any]], layers: int) -> list[str]:
    """First, middle and last logged value of each per-layer series."""
    if not train:
        return ["no training records with MoE metrics"]
    picks = sorted({0, len(train) // 2, len(train) - 1})
    steps = [train[i]["step"] for i in picks]
    lines = [f"{'metric':<22}" + "".join(f"{'step ' + str(s):>12}" for s in steps)]
    for name in SERIES:
        for layer in range(layers):
            key = f"{name}_l{layer}"
            if any(key in train[i] for i in picks):
                values = "".join(f"{fmt(train[i].get(key)):>12}" for i in picks)
                lines.append(f"{key:<22}{values}")
    return lines


def decision_lines(decisions: list[dict[str, Any]]) -> list[str]:
    if not decisions:
        return ["no lifecycle decisions (no decisions.jsonl: the run had no lifecycle)"]
    counts = Counter(d.get("action") for d in decisions)
    lines = ["by action: " + ", ".join(f"{action} {count}" for action, count in sorted(counts.items()))]
    shown = [d for d in decisions if d.get("action") not in ("none",)]
    for d in shown[-20:]:
        free = d.get("free_energy") or {}
        f_text = ""
        if "before" in free:
            f_text = f" F {free['before']:.4f}" + (f" -> {free['predicted']:.4f}" if "predicted" in free else "")
        expert = "" if d.get("expert") is None else f" expert {d['expert']}"
        lines.append(f"  step {d.get('train_step', d.get('step'))} [{d.get('clock')}] layer {d.get('layer')}: "
                     f"{d.get('action')}{expert}{f_text} ({d.get('trigger', '')})")
    if len(shown) > 20:
        lines.insert(1, f"  (last 20 of {len(shown)} decisions other than 'none')")
    return lines


def is_edit(decision: dict[str, Any]) -> bool:
    """An applied lifecycle edit, as the record says (chronomoe's edit table fills the flag)."""
    return decision.get("edit") is True


def live_experts(decisions: list[dict[str, Any]], start: float, layers: int) -> list[int]:
    live = [int(start)] * layers
    for d in decisions:
        if is_edit(d) and isinstance(d.get("layer"), int) and d["layer"] < layers:
            live[d["layer"]] += int(d.get("expert_delta", 0))
    return live


def _f(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "?"


def identity_lines(audit: list[dict[str, Any]], signatures: list[dict[str, Any]]) -> list[str]:
    """The identity events of the kernel's audit log, each with its effect."""
    if not audit:
        return ["no kernel audit log (the lifecycle ran without `kernel`)"]
    last_k = {r["layer"]: r.get("k") for r in signatures}  # each layer's β coefficients at its last signature
    snapshots = {r["data"]["key"]: r["data"] for r in audit if r.get("kind") == "identity.epoch.snapshots"}
    frozen = {r["data"]["key"]: r["data"].get("k") for r in audit if r.get("kind") == "identity.reflex.frozen"}
    counts = Counter(r.get("kind") for r in audit)
    lines = [f"audit records: {len(audit)}; " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))]
    for record in audit:
        kind, data = record.get("kind", ""), record.get("data") or {}
        payload = data.get("payload") or {}
        where = f"layer {payload.get('layer')}"
        if kind == "identity.scar":
            lines.append(f"  scar   {data.get('key')}: {payload.get('action')} of expert {payload.get('expert')} in "
                         f"{where} forbidden for good (trial dloss {_f(payload.get('delta_loss'))} at step "
                         f"{payload.get('trial_step')})")
        elif kind == "identity.reflex":
            expert, now = payload.get("expert"), (last_k.get(payload.get("layer")) or [])
            k_now = now[expert] if isinstance(expert, int) and expert < len(now) else None
            lines.append(f"  reflex {data.get('key')}: beta of expert {expert} in {where} frozen at k "
                         f"{_f(frozen.get(data.get('key')))} (k at the last signature {_f(k_now)})")
        elif kind == "identity.epoch":
            snap = snapshots.get(data.get("key")) or {}
            before, after = snap.get("before") or {}, snap.get("after") or {}
            lines.append(f"  epoch  {data.get('key')}: psi_slow {_f((before.get('psi') or {}).get('slow'))} -> "
                         f"{_f((after.get('psi') or {}).get('slow'))}, live {len(before.get('live', []))} -> "
                         f"{len(after.get('live', []))}, Fisher-Rao between slow shares "
                         f"{_f(snap.get('fisher_rao_share'))} (steps {before.get('step')} -> {after.get('step')})")
        elif kind == "identity.revert":
            lines.append(f"  REVERTED {data.get('key')} by {data.get('authority')}: {data.get('reason')}")
        elif kind == "keeper.degraded":
            lines.append(f"  Degraded at step {data.get('step')}: {data.get('component')} {data.get('reason')} "
                         f"({data.get('action')})")
    return lines


def geometry_lines(train: list[dict[str, Any]], signatures: list[dict[str, Any]], layers: int) -> list[str]:
    """Per layer: Fisher–Rao disagreement (mean over the logged steps, last) and the geodesic
    dimensionality of the load signatures."""
    lines = [f"{'layer':<7}{'Fisher-Rao mean':>16}{'last':>10}{'geodesic dim':>14}{'signatures':>12}"]
    for layer in range(layers):
        series = [r[f"{FISHER_RAO}_l{layer}"] for r in train if f"{FISHER_RAO}_l{layer}" in r]
        rows = [r for r in signatures if r.get("layer") == layer]
        mean = sum(series) / len(series) if series else None
        lines.append(f"{layer:<7}{_f(mean):>16}{_f(series[-1] if series else None):>10}"
                     f"{_f(rows[-1]['geodesic_dimensionality'] if rows else None, 3):>14}"
                     f"{(rows[-1]['signatures'] if rows else 0):>12}")
    return lines


#: what a well-formed file's record of the wrong type raises while its section is rendered
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError, OverflowError)


def _section(sources: tuple[Path, ...], render: Callable[..., list[str]], *args: Any) -> list[str]:
    """``render(*args)``; a record of the wrong shape or type in ``sources`` (JSON that parses but is
    not what the trainer writes) is one error naming the files, not a traceback."""
    try:
        return render(*args)
    except _MALFORMED as exc:
        names = " or ".join(str(path) for path in sources)
        raise MosaicError(f"{names}: a value is not what the trainer writes "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None


def build_report(run: Path, experiment: str | None = None) -> str:
    metrics = read_jsonl(run / "metrics.jsonl")
    if not metrics and not (run / "config.yaml").exists():
        raise MosaicError(f"{run} is not a run directory (no metrics.jsonl or config.yaml)")
    config, metrics_path, decisions_path = run / "config.yaml", run / "metrics.jsonl", run / DECISIONS_FILE
    signatures_path, audit_path = run / SIGNATURES_FILE, run / AUDIT_FILE
    train = [r for r in metrics if r.get("split") == "train" and ACTIVE_EXPERTS in r]
    decisions = read_jsonl(decisions_path)
    layers = layer_count(train)
    ffn = ffn_config(run, experiment)
    router = ffn.get("router")
    sections = [f"ChronoMoE report: {run}", "", "clocks", *_section((config,), clock_lines, router), ""]
    sections += ["per layer (Ψ coherence, |β| max, MaxVio, active experts)",
                 *_section((metrics_path,), series_lines, train, layers), ""]
    sections += ["decisions", *_section((decisions_path,), decision_lines, decisions)]
    if decisions and router is not None and layers:
        experts = ffn.get("n_experts", 8)  # layer.moe's default
        live = _section((decisions_path, config), lambda: [str(live_experts(decisions, experts, layers))])[0]
        sections.append(f"live experts per layer after edits: {live}")
    signatures = read_jsonl(signatures_path)
    sections += ["", "identity events (kernel audit log)",
                 *_section((audit_path, signatures_path), identity_lines, read_jsonl(audit_path), signatures)]
    if layers:
        sections += ["", "geometry per layer (Fisher-Rao disagreement clean vs biased routing; geodesic "
                         "dimensionality of the load signatures)",
                     *_section((metrics_path, signatures_path), geometry_lines, train, signatures, layers)]
    return "\n".join(sections)


def plot_report(run: Path, out: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MosaicError(f"plotting needs matplotlib: {install_hint('mosaic-runtime', 'plot')}") from None
    train = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("split") == "train"]
    layers = layer_count(train)
    if not layers:
        raise MosaicError(f"{run / 'metrics.jsonl'} has no MoE metrics to plot")
    edits = [d for d in read_jsonl(run / DECISIONS_FILE) if is_edit(d)]
    names = [n for n in SERIES[:3] if any(f"{n}_l0" in r for r in train)]
    figure, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True, squeeze=False)
    for axis, name in zip(axes[:, 0], names, strict=True):
        for layer in range(layers):
            points = [(r["step"], r[f"{name}_l{layer}"]) for r in train if f"{name}_l{layer}" in r]
            axis.plot([p[0] for p in points], [p[1] for p in points], label=f"layer {layer}")
        for edit in edits:
            axis.axvline(edit.get("train_step", edit.get("step")), color="grey", linestyle=":", linewidth=0.8)
        axis.set_ylabel(name, fontsize=8)
        axis.legend(fontsize=7)
    axes[-1, 0].set_xlabel("step (dotted: lifecycle edits)")
    figure.tight_layout()
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


@click.group("chrono")
def chrono() -> None:
    """ChronoMoE runs: clocks, β, Ψ and lifecycle decisions."""


@chrono.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False), callback=png_path,
              help="Also draw Ψ, |β|, MaxVio to this PNG.")
@click.option("--experiment", help="The experiment of a multi-experiment run (default: the one that ran).")
def report(run_dir: Path, plot_path: Path | None, experiment: str | None) -> None:
    """Print RUN_DIR's ChronoMoE clocks, per-layer Ψ/β/MaxVio and lifecycle decisions."""
    with user_errors():
        click.echo(build_report(run_dir, experiment))
        if plot_path is not None:
            click.echo(f"wrote {plot_report(run_dir, plot_path)}")
