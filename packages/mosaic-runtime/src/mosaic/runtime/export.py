"""Exporting a run's model as safetensors: weights any framework can read, with no pickle at all.

The file holds the newest checkpoint's model tensors; its string metadata holds the format tag, the
model's resolved config as JSON (``{"type": ID, ...fields}``, enough to rebuild the model through
the registry), the checkpoint step, the names of tied weights (stored once; safetensors refuses
shared tensors) and any non-tensor module state (e.g. MosaicLM's opcode table) as JSON.
:func:`read_safetensors_export` turns a file back into a ``state_dict`` and that config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mosaic.core.atomic import atomic_write_bytes
from mosaic.core.config import unstructure_config
from mosaic.core.errors import CheckpointError
from mosaic.runtime.loading import load_run

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry

EXPORT_FORMAT = "mosaic-export/1"
DEFAULT_EXPORT_NAME = "model.safetensors"


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:  # a declared dependency; only a broken install lacks it
        raise CheckpointError("exporting needs the safetensors package: pip install safetensors") from None
    return safetensors.torch


def _view_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tuple(tensor.stride()), tensor.dtype)


def split_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, Any]]:
    """``model.state_dict()`` as safetensors can hold it: ``(tensors, aliases, extra)`` — each
    storage once (a tied weight becomes an alias of its first name) and non-tensor entries apart."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    extra: dict[str, Any] = {}
    first_name: dict[tuple[Any, ...], str] = {}
    for name, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            extra[name] = value
            continue
        key = _view_key(value)
        if key in first_name:  # a tied weight (e.g. the head sharing the embedding)
            aliases[name] = first_name[key]
            continue
        first_name[key] = name
        tensors[name] = value.detach().to("cpu").contiguous().clone()  # clones share no storage
    return tensors, aliases, extra


def export_safetensors(run_dir: str | Path, out: str | Path | None = None, *, experiment: str | None = None,
                       registry: Registry | None = None) -> Path:
    """Write ``run_dir``'s model (newest checkpoint) to ``out`` (default ``RUN_DIR/model.safetensors``)
    atomically; returns the path."""
    loaded = load_run(run_dir, experiment, session=None, registry=registry)
    target = Path(out) if out is not None else loaded.run.path / DEFAULT_EXPORT_NAME
    check_export_target(target, loaded.run.path)
    tensors, aliases, extra = split_state(loaded.model)
    config = {"type": loaded.model_id, **(unstructure_config(loaded.config) if loaded.config is not None else {})}
    try:
        metadata = {"format": EXPORT_FORMAT, "model_config": json.dumps(config, sort_keys=True),
                    "step": str(loaded.step), "experiment": loaded.experiment,
                    "aliases": json.dumps(aliases, sort_keys=True), "extra_state": json.dumps(extra, sort_keys=True)}
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{loaded.model_id}: its config or module state is not JSON ({exc}); "
                              "it cannot be exported as safetensors") from None
    data = _safetensors().save(tensors, metadata=metadata)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(target, data)


def check_export_target(target: Path, run_path: Path) -> None:
    """Refuse an export that would replace one of the run's own files (a checkpoint, the metrics,
    the config...): inside the run directory an export may create a file or replace an earlier
    ``.safetensors`` export, nothing else."""
    inside = target.resolve().is_relative_to(Path(run_path).resolve())
    if inside and target.exists() and target.suffix != ".safetensors":
        raise CheckpointError(f"--out {target} is one of the run's own files; an export may not replace it "
                              f"(choose a new file, e.g. {Path(run_path) / DEFAULT_EXPORT_NAME})")


def read_safetensors_export(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state_dict, model_config)`` of an exported file: tied weights restored under each name,
    non-tensor module state included, so that ``model.load_state_dict(state_dict)`` works on a model
    built from ``model_config`` (``registry.build(config.pop("type"), config)``)."""
    path = Path(path)
    safetensors_torch = _safetensors()
    if path.exists() and not path.is_file():  # a FIFO would block the read for ever
        raise CheckpointError(f"export {path} is not a regular file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = safetensors_torch.load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"export {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise CheckpointError(f"export {path} is not a readable safetensors file: {exc}") from None
    if metadata.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path} is not a {EXPORT_FORMAT} file (format {metadata.get('format')!r})")
    try:
        config = json.loads(metadata["model_config"])
        aliases = json.loads(metadata["aliases"])
        extra = json.loads(metadata["extra_state"])
    except (KeyError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: damaged export metadata ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise CheckpointError(f"{path}: damaged export metadata (model_config is not an object with a 'type')")
    if not isinstance(aliases, dict) or not all(isinstance(o, str) and o in tensors for o in aliases.values()):
        raise CheckpointError(f"{path}: damaged export metadata (aliases must name stored tensors)")
    if not isinstance(extra, dict) or set(extra) & (set(tensors) | set(aliases)):
        raise CheckpointError(f"{path}: damaged export metadata (extra_state must be an object of non-tensor "
                              "entries)")
    state: dict[str, Any] = dict(tensors)
    for name, original in aliases.items():
        state[name] = tensors[original]
    state.update(extra)
    return state, config
