"""Run the installed ``mosaic`` command in a subprocess with the tiny test components installed as a
real plugin distribution (a dist-info whose entry point names the tiny components' plugin)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mosaic.runtime.testing.subprocess_env import child_environment


def mosaic_command() -> list[str]:
    installed = Path(sys.executable).with_name("mosaic")
    return [str(installed)] if installed.exists() else [shutil.which("mosaic") or "mosaic"]


class TinyCli:
    def __init__(self, root: Path) -> None:
        self.site = root / "tiny-site"
        info = self.site / "tiny_test-0.1.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-test\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("[mosaic]\ntiny-test = mosaic.runtime.testing.tiny_training:TinyPlugin\n")

    def env(self, **extra: str) -> dict[str, str]:
        return child_environment(python_paths=[self.site], OMP_NUM_THREADS="1", **extra)

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([*mosaic_command(), *args], capture_output=True, text=True, env=self.env(),
                              timeout=timeout, check=False)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*mosaic_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env())


def wait_for(predicate: Callable[[], bool], timeout: float = 90) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def interrupt(process: subprocess.Popen, signal_number: int = signal.SIGTERM) -> tuple[str, str]:
    process.send_signal(signal_number)
    return process.communicate(timeout=120)
