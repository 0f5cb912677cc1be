"""A real ``phase8_moe`` ``chrono_lifecycle`` run through the installed ``mosaic`` in a subprocess,
with one of its keeper processes killed mid-run (the sovereign core's degradation test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import attrs

from mosaic.runtime.testing.subprocess_env import child_environment
from mosaic.runtime.testing.tiny_cli import mosaic_command

KEEPERS_FILE = "keepers.json"  # chronomoe.sovereign.KEEPERS_FILE


@attrs.frozen
class KilledKeeperRun:
    run_dir: Path
    returncode: int
    stdout: str
    stderr: str
    killed_pid: int | None  # None: the run ended before the kill step
    killed_at_step: int | None
    env: dict[str, str]

    def mosaic(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """The installed ``mosaic`` run on this run's files, with the run's environment (its key)."""
        return subprocess.run([*mosaic_command(), *map(str, args)], capture_output=True, text=True,
                              env=self.env, check=False, timeout=300)


def environment(key_dir: Path) -> dict[str, str]:
    """The environment of the run and of the commands that read it: the audit key in ``key_dir``."""
    return child_environment(MOSAIC_KEY_DIR=str(key_dir), OMP_NUM_THREADS="1")


def _last_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def run_killing_keeper(
    root: Path, overrides: list[str], *, clock: str = "mid", kill_after_step: int = 20, timeout: float = 900
) -> KilledKeeperRun:
    """Train ``phase8_moe --experiment chrono_lifecycle`` under ``root``; once the run has logged
    ``kill_after_step``, SIGKILL the ``clock`` keeper named in the run's ``keepers.json``."""
    env = environment(root / "keys")
    out = root / "runs"
    command = [
        *mosaic_command(),
        "run",
        "phase8_moe",
        "--experiment",
        "chrono_lifecycle",
        "--out",
        str(out),
        "--no-progress",
        *(arg for value in overrides for arg in ("--set", value)),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + timeout
    killed_pid = killed_at = None
    runs = out / "phase8_moe"
    while process.poll() is None and time.monotonic() < deadline:
        run_dirs = sorted(p for p in runs.glob("2*") if p.is_dir()) if runs.exists() else []
        if run_dirs and killed_pid is None and (run_dirs[-1] / KEEPERS_FILE).exists():
            step = _last_step(run_dirs[-1])
            if step >= kill_after_step:
                killed_pid = json.loads((run_dirs[-1] / KEEPERS_FILE).read_text())[clock]["pid"]
                os.kill(killed_pid, signal.SIGKILL)
                killed_at = step
        time.sleep(0.2)
    try:
        stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    run_dir = sorted(p for p in runs.glob("2*") if p.is_dir())[-1]
    return KilledKeeperRun(run_dir, process.returncode, stdout, stderr, killed_pid, killed_at, env)
