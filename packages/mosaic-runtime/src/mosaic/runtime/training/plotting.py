"""PNG curves of a run's loss and auxiliary metrics (needs the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path

from mosaic.core.errors import MosaicError, install_hint
from mosaic.runtime.training.run_dir import RunDir


class PlottingUnavailable(MosaicError):
    """matplotlib is not installed."""


def plot_run(run_path: Path, out: Path | None = None) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlottingUnavailable(
            f"plotting needs matplotlib: {install_hint('mosaic-runtime', 'plot')}"
        ) from None
    if out is not None and Path(out).suffix.lower() != ".png":
        raise MosaicError(f"--out {out}: the curves are a PNG; name the file NAME.png")
    run = RunDir.existing(run_path)
    records = run.read_metrics()
    train = [r for r in records if r.get("split") == "train"]
    if not train:
        raise MosaicError(f"{run.metrics_path} has no training records to plot")
    names = ["loss_total", "lm_ce"] + sorted(
        {k for r in train for k in r if k.startswith("aux_") and not k.endswith("_weighted")}
    )
    names = [n for n in names if any(n in r for r in train)]
    figure, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True, squeeze=False)
    for axis, name in zip(axes[:, 0], names, strict=False):
        # a value that is not a number (a damaged or hand-edited record) is left out, not plotted
        points = [(r["step"], r[name]) for r in train if _is_number(r.get(name))]
        axis.plot([p[0] for p in points], [p[1] for p in points], label="train")
        evals = [(r["step"], r["metrics"][name]) for r in records
                 if r.get("split") == "eval" and isinstance(r.get("metrics"), dict)
                 and _is_number(r["metrics"].get(name))]
        if evals:
            axis.plot([p[0] for p in evals], [p[1] for p in evals], "o", label="eval")
        axis.set_ylabel(name, fontsize=8)
        axis.set_yscale("log" if all(p[1] > 0 for p in points) else "linear")
        axis.legend(fontsize=7)
    axes[-1, 0].set_xlabel("step")
    figure.tight_layout()
    target = out or run.path / "curves.png"
    figure.savefig(target, dpi=90)
    plt.close(figure)
    return target


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
