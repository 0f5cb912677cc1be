"""What a run prints while it trains.

- On a terminal: a one-line bar redrawn every step (at most ten times a second).
- Off a terminal (piped to a file or a CI log), or with ``--no-progress``: one plain line per
  logged step, so a long run is never silent.
- Quiet (``-q``): nothing until the final summary; errors still reach stderr.

Notes (a clipped warmup, a fallback checkpoint) are printed in every mode but quiet. Each logged step
is also a structured ``train_step`` log event, shown at ``-v``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import structlog

log = structlog.get_logger("mosaic.runtime.train")

MODES = ("auto", "lines", "quiet")
_REDRAW_S = 0.1


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """``mode``: ``auto`` (a bar on a terminal, lines elsewhere), ``lines`` or ``quiet``."""

    def __init__(self, total: int, *, mode: str = "auto", stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.mode = mode if enabled else "quiet"
        self.bar = self.mode == "auto" and bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.perf_counter()
        self.last_draw = 0.0
        self.loss: float | None = None
        self.drawn = False

    def note(self, text: str) -> None:
        if self.mode == "quiet":
            return
        self._clear_bar()
        self.stream.write(f"note: {text}\n")
        self.stream.flush()

    def step(self, step: int, record: dict[str, Any] | None = None) -> None:
        """Called after every optimizer step; ``record`` is the metrics record when the step was logged."""
        if record is not None:
            fields = {k: round(v, 5) if isinstance(v, float) else v for k, v in record.items()}
            fields.update(step=step, total=self.total)  # the record may carry its own "step"
            log.info("train_step", **fields)
            loss = record.get("loss_total")
            self.loss = loss if isinstance(loss, float) else self.loss
        if self.mode == "quiet":
            return
        if self.bar:
            now = time.perf_counter()
            if now - self.last_draw >= _REDRAW_S or step == self.total:
                self.last_draw = now
                self._draw(step, record)
        elif record is not None:
            self._line(step, record)

    def _line(self, step: int, record: dict[str, Any]) -> None:
        shown = [f"{name} {_fmt(record[name])}" for name in ("loss_total", "lr", "tokens_per_s") if name in record]
        elapsed = time.perf_counter() - self.started
        self.stream.write(f"step {step}/{self.total} " + " ".join(shown) + f" elapsed {elapsed:.0f}s\n")
        self.stream.flush()

    def _draw(self, step: int, record: dict[str, Any] | None) -> None:
        elapsed = time.perf_counter() - self.started
        width = 24
        filled = int(width * step / max(self.total, 1))
        eta = elapsed / max(step, 1) * (self.total - step)
        loss = f" loss {self.loss:.4f}" if self.loss is not None else ""
        speed = f" {record['tokens_per_s']:.0f} tok/s" if record and "tokens_per_s" in record else ""
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{self.total}{loss}{speed} "
                          f"eta {eta:.0f}s\033[K")
        self.stream.flush()
        self.drawn = True

    def _clear_bar(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.drawn = False

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False
