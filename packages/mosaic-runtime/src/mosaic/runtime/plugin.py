"""mosaic-runtime's plugin: objectives, presets and tool builders, registered through the `mosaic` entry point."""

from mosaic.core.plugins import hookimpl


@hookimpl
def register_tool_builders(register):
    register(
        "tool_builder.python",
        "mosaic.runtime.tools.python_builder:build_python_builder",
        summary="Python tools from model-written source, run in a defence-in-depth OS sandbox",
        config="mosaic.runtime.tools.python_builder:PythonToolBuilderConfig",
    )
