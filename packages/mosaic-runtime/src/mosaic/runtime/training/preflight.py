"""What a run needs beyond a valid preset, checked before its run directory exists.

``parse_manifest`` checks a preset as text: every config, nested component and cross-component
requirement. Some things can only be known by trying: whether the device exists on this machine,
whether a dataset's longest sample fits its block, how many characters a text file's vocabulary
has. :func:`preflight` tries them (datasets and objective for real, the model on the ``meta``
device, which allocates nothing) and reports every failure as a ``ConfigError`` at the preset path
it belongs to, so ``mosaic run`` of a preset that cannot run writes nothing and ``mosaic presets
validate`` rejects it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import attrs

from mosaic.core.contract.compat import Capability, Provided, check_compatibility
from mosaic.core.errors import ConfigError, ConfigProblem, MosaicError

if TYPE_CHECKING:
    from mosaic.core.registry import Registry
    from mosaic.runtime.training.manifest import Experiment, Manifest

DEVICE_FORM = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")


def device_problems(name: str, path: str) -> list[ConfigProblem]:
    """Why ``name`` cannot be used on this machine (empty when it can)."""
    if not DEVICE_FORM.fullmatch(name):
        return [ConfigProblem(path, f"must be one of auto, cpu, cuda, cuda:N, mps, got {name!r}")]
    if name in ("auto", "cpu"):
        return []
    import torch

    if name == "mps":
        if not torch.backends.mps.is_available():
            return [ConfigProblem(path, "mps requested but this machine has no MPS device", hint="use cpu or auto")]
        return []
    if not torch.cuda.is_available():
        return [ConfigProblem(path, f"{name} requested but no CUDA GPU is available", hint="use cpu or auto")]
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return [ConfigProblem(path, f"{name} requested but this machine has {torch.cuda.device_count()} GPU(s)")]
    return []


def preflight(manifest: Manifest, registry: Registry, *, experiment: str | None = None,
              device: str | None = None) -> None:
    """Raise one ``ConfigError`` listing everything that would stop ``experiment`` (default: every
    experiment of ``manifest``) from starting on this machine. ``device`` overrides
    ``trainer.device`` as ``mosaic run --device`` does."""
    experiments = [manifest.experiment(experiment)] if experiment is not None else list(manifest.experiments)
    problems: list[ConfigProblem] = []
    for index, chosen in enumerate(manifest.experiments):
        if any(chosen is wanted for wanted in experiments):
            problems += _experiment_problems(chosen, registry, f"$.targets[{index}]", device)
    if problems:
        located = [attrs.evolve(p, line=manifest.line_of(p.path)) if p.line is None else p for p in problems]
        raise ConfigError(located, source=manifest.source)


def _experiment_problems(experiment: Experiment, registry: Registry, path: str,
                         device: str | None) -> list[ConfigProblem]:
    device_path = "--device" if device is not None else f"{path}.trainer.device"
    problems = device_problems(device or experiment.trainer.device, device_path)
    built: dict[str, Any] = {}
    specs = {f"{path}.dataset": experiment.dataset, f"{path}.eval.dataset": experiment.eval_dataset,
             f"{path}.objective": experiment.objective}
    specs.update({f"{path}.curriculum[{i}]": spec for i, spec in enumerate(experiment.curricula)})
    for where, spec in specs.items():
        if spec is not None:
            problems += _try(lambda spec=spec: spec.build(registry), where, built)
    problems += _try(lambda: build_on_meta(experiment, registry), f"{path}.model", built)
    # a text dataset's character vocabulary is known only now that the file was read
    parts: dict[str, Any] = {f"{path}.model": experiment.model.config}
    for where in (f"{path}.dataset", f"{path}.eval.dataset"):
        vocab = getattr(built.get(where), "vocab_size", None)
        if isinstance(vocab, int) and not isinstance(vocab, bool):
            parts[where] = _Built((Provided(Capability.VOCAB_SIZE, vocab, "path"),))
    return problems + check_compatibility(parts)


class _Built:
    """What a built dataset provides, in the compat vocabulary."""

    def __init__(self, offers: tuple[Provided, ...]) -> None:
        self.offers = offers

    def provides(self) -> tuple[Provided, ...]:
        return self.offers


def build_on_meta(experiment: Experiment, registry: Registry) -> Any:
    """``experiment``'s model on the meta device (shapes, no memory); None for a model whose
    construction reads tensor values."""
    import torch

    try:
        with torch.device("meta"):
            return experiment.model.build(registry)
    except (NotImplementedError, RuntimeError):
        # A model whose construction reads tensor values cannot be built on meta. That says nothing
        # about the preset: every config and requirement is already checked, and the trainer builds
        # the model for real. MosaicErrors (the model refusing its config) still propagate.
        return None


def _try(build: Any, where: str, built: dict[str, Any]) -> list[ConfigProblem]:
    try:
        built[where] = build()
    except ConfigError as exc:
        return list(exc.problems)
    except MosaicError as exc:
        # a dataset whose sample cannot fit names the parameter to raise (SampleTooLongError)
        parameter = getattr(exc, "parameter", None)
        return [ConfigProblem(f"{where}.{parameter}" if isinstance(parameter, str) else where, str(exc))]
    return []
