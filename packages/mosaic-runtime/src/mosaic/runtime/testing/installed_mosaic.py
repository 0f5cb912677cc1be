"""Running the installed ``mosaic`` console script as a user would, with a tiny streaming model
installed as a real (throwaway) plugin distribution.

Exit codes are only what they are through the console entry point (``main()``), never through
click's ``CliRunner``, so every exit-status test goes through :class:`InstalledMosaic`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from mosaic.runtime.testing.subprocess_env import child_environment

#: A tiny streaming model (mosaic.runtime.testing.tiny_agent) trained for two steps, with an
#: eval section so that ``mosaic eval`` has something to do.
TINY_PRESET = """\
version: 2
name: exit_tiny
targets:
  - type: experiment
    name: agent
    backend: torch
    model:
      type: model.agent_tiny_stream
    objective:
      type: objective.mosaic_event_prediction
    dataset:
      type: dataset.agent_tiny_events
    trainer:
      steps: 2
      batch_size: 4
      lr: 0.001
      warmup_steps: 1
      log_every: 1
      checkpoint_every: 2
      threads: 1
    eval:
      samples: 4
      batch_size: 2
"""


def installed_mosaic_script() -> Path:
    """The ``mosaic`` console script of the interpreter running the tests (its venv's bin)."""
    beside = Path(sys.executable).with_name("mosaic")
    if beside.is_file():
        return beside
    found = shutil.which("mosaic")
    if found is None:
        raise RuntimeError(f"no installed `mosaic` script next to {sys.executable} or on PATH")
    return Path(found)


class InstalledMosaic:
    """The console script, with a plugin directory on ``PYTHONPATH`` providing the tiny model."""

    def __init__(self, plugin_root: Path) -> None:
        self.script = installed_mosaic_script()
        self.plugin_root = plugin_root
        plugin_root.mkdir(parents=True, exist_ok=True)
        module = plugin_root / "exit_tiny_plugin.py"
        module.write_text(textwrap.dedent("""\
            from mosaic.runtime.testing.tiny_agent import AgentTinyPlugin

            register_models = AgentTinyPlugin.register_models
            register_datasets = AgentTinyPlugin.register_datasets
        """))
        info = plugin_root / "exit_tiny-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exit-tiny\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text("[mosaic]\nexit-tiny = exit_tiny_plugin\n")

    def environment(self) -> dict[str, str]:
        return child_environment(python_paths=[self.plugin_root], MOSAIC_LOG_FORMAT="json")

    def __call__(self, *args: str | Path, stdin: bytes | None = None, cwd: Path | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
        command = [str(self.script), *map(str, args)]
        return subprocess.run(command, input=stdin, capture_output=True, env=self.environment(), cwd=cwd,
                              timeout=timeout)

    def train(self, root: Path) -> Path:
        """Train the tiny preset into ``root/runs``; the run directory."""
        preset = root / "exit_tiny.yml"
        preset.write_text(TINY_PRESET)
        done = self("run", preset, "--out", root / "runs", "--no-progress")
        if done.returncode != 0:
            raise RuntimeError(f"training the tiny preset failed: {done.stderr.decode()[-3000:]}")
        return Path(done.stdout.decode().rsplit("run directory:", 1)[1].strip())
