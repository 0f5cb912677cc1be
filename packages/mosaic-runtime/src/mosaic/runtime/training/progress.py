"""A one-line progress bar on a terminal; structured log events otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import structlog

log = structlog.get_logger("mosaic.runtime.train")


class Progress:
    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.started = time.perf_counter()

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self.tty:
            fields = {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}
            fields.update(step=step, total=self.total)  # the record may carry its own "step"
            log.info("train_step", **fields)
            return
        elapsed = time.perf_counter() - self.started
        width = 24
        filled = int(width * step / max(self.total, 1))
        eta = elapsed / max(step, 1) * (self.total - step)
        loss = metrics.get("loss_total")
        text = (f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{self.total} "
                f"loss {loss:.4f} " if isinstance(loss, float) else f"\r{step}/{self.total} ")
        text += f"{metrics.get('tokens_per_s', 0):.0f} tok/s eta {eta:.0f}s"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
