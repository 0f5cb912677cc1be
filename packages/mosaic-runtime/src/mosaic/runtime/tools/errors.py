"""Typed errors of the tool system (all ``ToolError``/``SandboxError`` subclasses)."""

from __future__ import annotations

from collections.abc import Sequence

from mosaic.core.errors import SandboxError, ToolError
from mosaic.runtime.tools.display import escape_control


class ToolRejectedError(ToolError):
    """A tool definition or its source failed validation; carries every reason."""

    def __init__(self, name: str, problems: Sequence[str]) -> None:
        self.name = name
        self.problems = tuple(problems)
        lines = [
            f"tool {name!r} rejected ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}):"
        ]
        lines += [f"  {escape_control(problem)}" for problem in self.problems]
        super().__init__("\n".join(lines))


class ToolStateError(ToolError):
    """The tool exists but may not be used now (not active, approval missing or void, unknown)."""


class ToolFailedError(ToolError):
    """The tool ran, confined, and raised an exception; ``error_type`` and ``detail`` say which."""

    def __init__(self, name: str, error_type: str, detail: str, stdout: str = "") -> None:
        self.name = name
        self.error_type = error_type
        self.detail = detail
        self.stdout = stdout
        super().__init__(f"tool {name!r} failed: {escape_control(error_type)}: {escape_control(detail)}")


class SandboxUnavailableError(SandboxError):
    """A required confinement layer is not available here; nothing was run."""

    def __init__(self, layer: str, detail: str, layers: dict | None = None) -> None:
        self.layer = layer
        self.detail = detail
        #: what the child verified before it refused (``{}`` when it did not get that far)
        self.layers = dict(layers or {})
        super().__init__(f"sandbox layer {layer!r} is required but unavailable: {escape_control(detail)}")


class SandboxLimitError(SandboxError):
    """The tool exceeded a limit (wall clock, CPU, output) or died by a signal, and was killed."""

    def __init__(self, limit: str, detail: str) -> None:
        self.limit = limit
        self.detail = detail
        super().__init__(f"tool stopped by the sandbox ({limit}): {escape_control(detail)}")


class ToolOutputError(ToolError):
    """The tool's output cannot be parsed or represented (too deep, too large, a number wider than
    64 bits, invalid Unicode, not JSON, or not the framing the sandbox child writes)."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        self.detail = detail
        super().__init__(f"tool {name!r} returned output that cannot be used: {escape_control(detail)}")
