"""Fixtures that install throwaway plugins as real distributions (dist-info + entry point)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mosaic.runtime.testing.subprocess_env import child_environment


class FakePlugins:
    """A directory on PYTHONPATH holding fake distributions with ``mosaic`` entry points."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, dist: str, source: str, *, version: str = "0.1") -> None:
        module = dist.replace("-", "_") + "_plugin"
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[mosaic]\n{dist} = {module}\n")

    def run(self, *args: str, env: dict[str, str] | None = None, code: str | None = None) -> subprocess.CompletedProcess:
        environment = child_environment(python_paths=[self.root], MOSAIC_LOG_FORMAT="json", **(env or {}))
        command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "mosaic.cli.main", *args]
        return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)


@pytest.fixture
def fake_plugins(tmp_path: Path) -> FakePlugins:
    return FakePlugins(tmp_path)
