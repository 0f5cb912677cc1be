"""An agent: a run's model, one named session on it, its optional online learner, and the event log.

Shared by ``mosaic events`` and ``mosaic live``: the session is restored from
``RUN_DIR/sessions/NAME/`` when it exists (unless ``fresh``), every emitted event is written to the
output stream and appended to the session's ``events.jsonl``, and :meth:`Agent.save` persists the
session state and the adapters (``adapters.pt``, apart from the base checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.agent.config import GenerationConfig, OnlineConfig
from mosaic.runtime.agent.loading import check_byte_model, check_streaming_model
from mosaic.runtime.agent.online import OnlineLearner
from mosaic.runtime.agent.responder import EventSession
from mosaic.runtime.agent.session import SessionStore
from mosaic.runtime.loading import LoadedRun, load_run

if TYPE_CHECKING:  # the registry module must be imported after mosaic.core.plugins
    from mosaic.core.registry import Registry

ADAPTERS_FILE = "adapters.pt"


class Agent:
    def __init__(self, loaded: LoadedRun, *, session_name: str = "default", fresh: bool = False,
                 generation: GenerationConfig | None = None, online: OnlineConfig | None = None,
                 output: IO[str] | None = None) -> None:
        self.loaded = loaded
        self.store = SessionStore(loaded.run.path)
        self.session_name = session_name
        self.directory = self.store.directory(session_name)
        self.output = output
        self.output_closed = False  # the reader of the output went away (a closed pipe)
        self.online = OnlineLearner(loaded.model, online) if online is not None else None
        self.session = EventSession(loaded.model, config=generation,
                                    on_tokens=None if self.online is None else self.online.observe)
        self.resumed = False
        saved = self.store.exists(session_name)  # refuses anything but a file in its place, --fresh or not
        if not fresh and saved:
            self.store.restore(session_name, self.session, config_fingerprint=loaded.config_fingerprint)
            adapters = self.directory / ADAPTERS_FILE
            if self.online is not None and adapters.is_file():
                self.online.load(adapters)
            self.resumed = True
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = self.store.open_events_log(session_name)

    def emit(self, event: EventEnvelope) -> None:
        """Write ``event`` as one JSON line to the session log and the output (flushed, for pipes).
        When the output's reader has gone (``| head``), ``output_closed`` is set and only the log is
        written from then on; the runtimes stop at their next step."""
        line = event.to_json() + "\n"
        self._log.write(line)
        self._log.flush()
        if self.output is not None:
            try:
                self.output.write(line)
                self.output.flush()
            except BrokenPipeError:
                self.output = None
                self.output_closed = True

    def metrics(self) -> dict[str, float]:
        metrics = self.session.metrics()
        if self.online is not None:
            metrics.update(self.online.metrics())
        return metrics

    def reported_metrics(self) -> set[str]:
        """The names :meth:`metrics` reports (see ``EventSession.reported_metrics``)."""
        names = self.session.reported_metrics()
        if self.online is not None:
            names |= {"online_updates", "online_buffer", "online_rollbacks", "online_loss"}
        return names

    def save(self) -> Path:
        path = self.store.save(self.session_name, self.session, config_fingerprint=self.loaded.config_fingerprint,
                               checkpoint_step=self.loaded.step)
        if self.online is not None:
            self.online.save(self.directory / ADAPTERS_FILE)
        return path

    def close(self) -> None:
        self._log.close()


def open_agent(run_dir: Path, *, registry: Registry | None = None, device: str | None = None,
               experiment: str | None = None, **options: Any) -> Agent:
    """Load ``run_dir``'s newest checkpoint and open a session on it (see :class:`Agent`)."""
    # The session's state is restored by the agent itself (with its ledger and counters).
    loaded = load_run(run_dir, experiment, session=None, registry=registry, device=device)
    check_streaming_model(loaded.model, loaded.model_id)
    check_byte_model(loaded.model, loaded.model_id)
    return Agent(loaded, **options)
