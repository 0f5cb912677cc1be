"""Ctrl-C and SIGTERM end a run cleanly: the loop finishes its step, checkpoints and writes a summary
marked ``interrupted``, so a resume loses nothing.

The handlers only set a flag (a signal can arrive mid-write; the loop checks the flag between
steps). A second Ctrl-C while the run is saving raises ``KeyboardInterrupt`` at once, for a user who
would rather lose the checkpoint than wait for it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Which signal asked the run to stop, if any."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def signal_name(self) -> str | None:
        return None if self.signal_number is None else signal.Signals(self.signal_number).name

    def request(self, signal_number: int) -> None:
        self.signal_number = signal_number


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Install the flag-setting handlers for the duration of a run (only possible on the main thread;
    elsewhere, e.g. a run embedded in a worker thread, signals keep their default behaviour)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signal_number: int, _frame: FrameType | None) -> None:
        if stop.requested and signal_number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        stop.request(signal_number)

    previous: dict[int, Any] = {number: signal.signal(number, handle) for number in HANDLED}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
