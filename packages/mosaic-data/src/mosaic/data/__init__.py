"""mosaic-data: synthetic curricula with teacher signals (memory, event traces, MQAR), text, and
the curricula that adjust them over training.

Public names are imported on first use (PEP 562), so ``import mosaic.data`` does not import torch.
The item contract (keys, dtypes, ignore values, masks) is documented in ``mosaic.data.common``,
the curriculum protocol in ``mosaic.data.curricula``.
"""

from __future__ import annotations

from mosaic.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "collate": "mosaic.core.batching",
    "MemoryCurriculumDataset": "mosaic.data.memory_curriculum",
    "ControlCurriculumDataset": "mosaic.data.control_curriculum",
    "EventTraceDataset": "mosaic.data.event_traces",
    "TraceSpan": "mosaic.data.event_traces",
    "MQARDataset": "mosaic.data.mqar",
    "mqar_accuracy": "mosaic.data.mqar",
    "TextDataset": "mosaic.data.text",
    "TeacherForcingDecay": "mosaic.data.curricula",
    "DifficultyRamp": "mosaic.data.curricula",
    "recall_accuracy": "mosaic.data.metrics",
    "recall_exact_match": "mosaic.data.metrics",
    "commitment_accuracy": "mosaic.data.metrics",
    "commitment_span_accuracy": "mosaic.data.metrics",
}

__all__ = [
    "ControlCurriculumDataset",
    "DifficultyRamp",
    "EventTraceDataset",
    "MQARDataset",
    "MemoryCurriculumDataset",
    "TeacherForcingDecay",
    "TextDataset",
    "TraceSpan",
    "collate",
    "commitment_accuracy",
    "commitment_span_accuracy",
    "mqar_accuracy",
    "recall_accuracy",
    "recall_exact_match",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
