"""The agent runtimes: a trained model living on an event stream.

- :mod:`.loading` — the streaming methods the runtimes need of a model (runs load with
  :func:`mosaic.runtime.load_run`).
- :mod:`.responder` — one session: feed an event, generate a response event, validate it.
- :mod:`.session` — persistence of a session (streaming state, ledger, counters) across restarts.
- :mod:`.reactive` — ``mosaic events``: JSONL events in, JSONL events out.
- :mod:`.metrics` — live model metrics for homeostasis (memory, routing, confidence, commitments).
- :mod:`.consolidation` — idle-time replay, pruning and rehearsal on a copy of the live state.
- :mod:`.online` — medium-timescale LoRA-style adapters learned from a bounded replay buffer.
- :mod:`.autonomous` — ``mosaic live``: an asyncio loop with an event bus and a homeostatic loop.

Nothing here imports mosaic-layers: the model is found through the registry and used by duck typing.
"""
