"""The hooks a MOSAIC plugin may implement.

Every registration hook is handed a ``register`` callable bound to one component kind::

    register(component_id, factory, *, config=None, summary)

(its type is :class:`mosaic.core.contract.protocols.Register`)

- ``component_id``: a semantic ID ``<kind>.<name>`` whose kind matches the hook
  (``register_models`` accepts only ``model.*``), ``name`` matching ``[A-Za-z_][A-Za-z0-9_]*``.
- ``factory``: a callable, or an import path ``"package.module:attribute"`` resolved only when the
  component is built — use the string form so that listing plugins never imports torch.
- ``config``: an attrs class (or an import path to one) describing the component's configuration;
  ``registry.build`` structures a mapping into it and calls ``factory(config)``. ``None`` means the
  factory takes no arguments.
- ``summary``: one line saying what the component is.

The host owns the registry and its conflict policy: a hook must not keep ``register`` or call it
after returning. A hook that raises rolls back everything its plugin registered.
"""

from __future__ import annotations

from typing import Any

import pluggy

from mosaic.core.contract.protocols import Register

PROJECT_NAME = "mosaic"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_models(register: Register) -> None:
    """Called once when the registry is populated. Register ``model.*`` components: factories that
    take a model config and return a ``torch.nn.Module`` whose forward takes a batch dict."""


@hookspec
def register_layers(register: Register) -> None:
    """Called once when the registry is populated. Register ``layer.*`` components: reusable blocks
    that models and presets compose (``layer.mosaic_block``, ``layer.moe``)."""


@hookspec
def register_memories(register: Register) -> None:
    """Called once when the registry is populated. Register ``memory.*`` components: block memories
    behind the ``BlockMemory`` protocol (``mosaic.core.contract.protocols``) that a MOSAIC block
    builds when its config names them (``memory: {type: memory.hashed, ...}``), so a new memory needs
    no change to the block."""


@hookspec
def register_routers(register: Register) -> None:
    """Called once when the registry is populated. Register ``router.*`` components: token-to-expert
    routers usable by any mixture-of-experts layer."""


@hookspec
def register_datasets(register: Register) -> None:
    """Called once when the registry is populated. Register ``dataset.*`` components: factories
    returning map-style datasets whose items are dicts of tensors (``input_ids``, ``target_ids``,
    teacher signals)."""


@hookspec
def register_curricula(register: Register) -> None:
    """Called once when the registry is populated. Register ``curriculum.*`` components: schedules
    over training steps (difficulty ramps, teacher-forcing decay) that adjust a dataset."""


@hookspec
def register_objectives(register: Register) -> None:
    """Called once when the registry is populated. Register ``objective.*`` components: callables
    turning a model's outputs and a batch into a loss and named metrics."""


@hookspec
def register_opcodes(register: Register) -> None:
    """Called once when the registry is populated. Register ``opcode.*`` components: VM
    instructions and the effect each has on a MOSAIC block's control surfaces. The ten v0 opcodes
    keep ids 0-9; plugin opcodes receive stable ids after them."""


@hookspec
def register_drives(register: Register) -> None:
    """Called once when the registry is populated. Register ``drive.*`` components: intrinsic
    drives that a homeostatic loop turns into ``Impulse`` events when a metric leaves its band."""


@hookspec
def register_tool_builders(register: Register) -> None:
    """Called once when the registry is populated. Register ``tool_builder.*`` components: turn a
    validated ``ToolDefinition`` into a runnable tool."""


@hookspec
def register_presets(register: Register) -> None:
    """Called once when the registry is populated. Register ``preset.*`` components: factories that
    return the text of a YAML training manifest."""


@hookspec
def register_loggers(register: Register) -> None:
    """Called once when the registry is populated. Register ``logger.*`` components: metric sinks
    for training runs (``logger.jsonl``, ``logger.csv``, ``logger.tensorboard``). The factory takes
    no arguments and returns an object with ``open(run_path, *, resume_step)``, ``log(record)`` and
    ``close()``; presets pick them with ``trainer.loggers``. A logger that raises is disabled with a
    warning and the run continues."""


@hookspec
def register_commands(cli: Any) -> None:
    """Called by ``mosaic`` when it builds its command group. Add commands with
    ``cli.add_command(...)`` or the ``@cli.command()`` decorator. A plugin whose hook raises keeps a
    placeholder command that explains the failure."""


#: Registration hooks in the order they are called, with the component kind each accepts.
REGISTRATION_HOOKS: dict[str, str] = {
    "register_models": "model",
    "register_layers": "layer",
    "register_memories": "memory",
    "register_routers": "router",
    "register_datasets": "dataset",
    "register_curricula": "curriculum",
    "register_objectives": "objective",
    "register_opcodes": "opcode",
    "register_drives": "drive",
    "register_tool_builders": "tool_builder",
    "register_presets": "preset",
    "register_loggers": "logger",
}

COMPONENT_KINDS: tuple[str, ...] = tuple(REGISTRATION_HOOKS.values())
