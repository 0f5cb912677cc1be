"""mosaic-runtime's plugin: objectives, presets and tool builders, registered through the `mosaic` entry point."""

from __future__ import annotations

from mosaic.core.contract.protocols import Register
from mosaic.core.plugins import hookimpl
from mosaic.runtime.presets import BUILTIN_PRESETS

OBJECTIVE_FACTORY = "mosaic.runtime.training.objective:build_objective"
OBJECTIVE_CONFIG = "mosaic.runtime.training.objective_config:MosaicObjectiveConfig"


@hookimpl
def register_objectives(register: Register) -> None:
    summary = "next-token cross-entropy plus MOSAIC auxiliary terms (gates, routing bits, opcodes, commitment)"
    register("objective.mosaic_event_prediction", OBJECTIVE_FACTORY, config=OBJECTIVE_CONFIG, summary=summary)
    register("objective.mosaic_next_token_aux", OBJECTIVE_FACTORY, config=OBJECTIVE_CONFIG,
             summary="alias of objective.mosaic_event_prediction")


@hookimpl
def register_presets(register: Register) -> None:
    for name, summary in BUILTIN_PRESETS.items():
        register(f"preset.{name}", f"mosaic.runtime.presets:{name}", summary=summary)


@hookimpl
def register_tool_builders(register: Register) -> None:
    register(
        "tool_builder.python",
        "mosaic.runtime.tools.python_builder:build_python_builder",
        summary="Python tools from model-written source, run in a defence-in-depth OS sandbox",
        config="mosaic.runtime.tools.python_builder:PythonToolBuilderConfig",
    )
    register(
        "tool_builder.mcp",
        "mosaic.runtime.tools.mcp_builder:build_mcp_builder",
        summary="MCP endpoints (a stdio server under the sandbox's OS layers, or a URL) as tools; "
                "always approved by a human (pip install 'mosaic-runtime[mcp]')",
        config="mosaic.runtime.tools.mcp_builder:McpToolBuilderConfig",
    )


@hookimpl
def register_loggers(register: Register) -> None:
    module = "mosaic.runtime.training.loggers"
    register("logger.jsonl", f"{module}:JsonlLogger", summary="metrics.jsonl, the run's own record (always on)")
    register("logger.csv", f"{module}:CsvLogger", summary="one CSV per split (metrics_train.csv, metrics_eval.csv)")
    register("logger.tensorboard", f"{module}:TensorBoardLogger",
             summary="TensorBoard scalars under tensorboard/ (pip install 'mosaic-runtime[tensorboard]')")
