"""mosaic-data's plugin: datasets and curricula, registered through the `mosaic` entry point.

Factories and configs are import-path strings, so listing plugins imports neither torch nor the
dataset modules.
"""

from __future__ import annotations

from mosaic.core.contract.protocols import Register
from mosaic.core.plugins import hookimpl

_DATASETS = (
    (
        "dataset.mosaic_memory_curriculum",
        "mosaic.data.memory_curriculum:MemoryCurriculumDataset",
        "mosaic.data.config:MemoryCurriculumConfig",
        "SET k IS v writes with distractors, GET k Q IS v queries and sleep replay, with MOSAIC teacher signals",
    ),
    (
        "dataset.mosaic_control_curriculum",
        "mosaic.data.control_curriculum:ControlCurriculumDataset",
        "mosaic.data.config:ControlCurriculumConfig",
        "a priority vote among noise events (GATE_UP / GATE_DOWN) and a latest-fact query (SCAN)",
    ),
    (
        "dataset.mosaic_event_traces",
        "mosaic.data.event_traces:EventTraceDataset",
        "mosaic.data.config:EventTraceConfig",
        "byte-level EventEnvelope traces: memory writes/queries, negotiation commitments, idle replay",
    ),
    (
        "dataset.tool_building",
        "mosaic.data.tool_building:ToolBuildingDataset",
        "mosaic.data.config:ToolBuildingConfig",
        "tool requests answered by a ToolDefinition whose code holds the request's parameters, a call and its result",
    ),
    (
        "dataset.mqar",
        "mosaic.data.mqar:MQARDataset",
        "mosaic.data.config:MQARConfig",
        "Zoology multi-query associative recall, generated vectorised",
    ),
    (
        "dataset.text",
        "mosaic.data.text:TextDataset",
        "mosaic.data.config:TextConfig",
        "character- or byte-level language modelling on a text file",
    ),
)

_CURRICULA = (
    (
        "curriculum.teacher_forcing_decay",
        "mosaic.data.curricula:TeacherForcingDecay",
        "mosaic.data.curricula:TeacherForcingDecayConfig",
        "teacher-forcing probability from start to end (constant, linear or cosine; warmup, cooldown)",
    ),
    (
        "curriculum.difficulty_ramp",
        "mosaic.data.curricula:DifficultyRamp",
        "mosaic.data.curricula:DifficultyRampConfig",
        "raises a dataset's difficulty level (pairs, distractors, gap) over training",
    ),
)


@hookimpl
def register_datasets(register: Register) -> None:
    for component_id, factory, config, summary in _DATASETS:
        register(component_id, factory, config=config, summary=summary)


@hookimpl
def register_curricula(register: Register) -> None:
    for component_id, factory, config, summary in _CURRICULA:
        register(component_id, factory, config=config, summary=summary)
