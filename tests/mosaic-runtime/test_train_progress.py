"""Progress reporting off a terminal: one structured log event per update, whatever the record holds."""

from __future__ import annotations

import io

import structlog

from mosaic.runtime.training.progress import Progress


def test_structured_progress_accepts_records_that_carry_their_own_step() -> None:
    structlog.reset_defaults()  # an earlier in-process CLI call may have filtered info events out
    with structlog.testing.capture_logs() as logs:
        progress = Progress(total=10, stream=io.StringIO())  # not a terminal
        progress.update(3, {"step": 3, "loss_total": 1.234567891, "lr": 0.01})
    assert logs == [
        {"event": "train_step", "log_level": "info", "step": 3, "total": 10, "loss_total": 1.23457, "lr": 0.01}
    ]
