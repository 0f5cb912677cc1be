"""Phrasings of the negotiation cycle: several per commitment class, so a model has to learn the
speech act (promise, progress, delivery) rather than one string.

Every template is plain ASCII without quotes or backslashes, so its bytes appear verbatim inside the
event's canonical JSON and the labelled byte span decodes back to exactly these words.
"""

from __future__ import annotations

#: commitment_delta +1: the agent takes on a task.
OPEN_TEMPLATES: tuple[str, ...] = (
    "I will look for that file",
    "I'll find the report for you",
    "Let me fetch those numbers for you",
    "I will check the logs and get back to you",
    "Leave it with me, I'll sort out the invoice",
    "Sure, I will draft the summary",
)

#: commitment_delta 0: progress on an open task.
WORK_TEMPLATES: tuple[str, ...] = (
    "Working on it",
    "Still searching the archive",
    "Halfway through the logs",
    "Reading the documents now",
    "Give me a moment, almost there",
)

#: commitment_delta -1: the task is delivered.
CLOSE_TEMPLATES: tuple[str, ...] = (
    "Here is the content",
    "Done, here are the results",
    "Found it, attached below",
    "All finished, the summary is ready",
    "The invoice is sorted",
)

#: (delta, templates) in the order of one cycle.
CYCLE: tuple[tuple[int, tuple[str, ...]], ...] = ((1, OPEN_TEMPLATES), (0, WORK_TEMPLATES), (-1, CLOSE_TEMPLATES))

TEMPLATES_BY_DELTA: dict[int, tuple[str, ...]] = dict(CYCLE)
