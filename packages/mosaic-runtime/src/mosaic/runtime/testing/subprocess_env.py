"""The environment a test gives a ``mosaic`` subprocess.

One rule for every helper that starts the CLI in a child process: the user's ``MOSAIC_*`` settings
stay out, so a developer's shell cannot change what a test sees; ``MOSAIC_KEY_DIR`` stays in, so a
test session that isolates its keys (``tests/conftest.py``) isolates the child's keys too. A helper
that dropped it would let the child sign with, or create, the user's real audit key."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

KEPT_MOSAIC_VARIABLES = frozenset({"MOSAIC_KEY_DIR"})


def child_environment(*, python_paths: Iterable[str | Path] = (), **extra: str) -> dict[str, str]:
    """``os.environ`` without the user's ``MOSAIC_*`` settings, ``python_paths`` prepended to
    ``PYTHONPATH``, then ``extra`` set on top."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MOSAIC_") or name in KEPT_MOSAIC_VARIABLES
    }
    paths = [*map(str, python_paths), environment.get("PYTHONPATH", "")]
    joined = os.pathsep.join(path for path in paths if path)
    if joined:
        environment["PYTHONPATH"] = joined
    environment.update(extra)
    return environment
