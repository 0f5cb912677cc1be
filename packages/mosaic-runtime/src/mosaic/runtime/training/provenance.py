"""Provenance: what produced a run (``provenance.json``), and whether today's install still matches.

Recorded when a run starts and again on each resume: the git commit of the working directory's
repository (if any, with a dirty flag), the versions of Python, torch, every installed ``mosaic-*``
distribution and every distribution that provides a ``mosaic`` plugin, the exact command line, the
seed, the host and the start time.
"""

from __future__ import annotations

import datetime
import json
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mosaic.core.errors import RunDirectoryError
from mosaic.runtime.training.run_dir import RunDir

PROVENANCE_FILE = "provenance.json"
_GIT_TIMEOUT_S = 5


def git_state(directory: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the repository holding ``directory``, or None outside one."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                timeout=_GIT_TIMEOUT_S, check=False)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                                capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None  # no git installed, or it hung: provenance records that it does not know
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def installed_packages() -> dict[str, str]:
    """``{distribution: version}`` of mosaic packages and of every ``mosaic`` plugin's distribution."""
    found: dict[str, str] = {}
    for distribution in metadata.distributions():
        name = distribution.metadata["Name"] or ""
        provides_plugin = any(entry.group == "mosaic" for entry in distribution.entry_points)
        if name.startswith("mosaic-") or name == "chronomoe" or provides_plugin:
            found[name] = distribution.version
    return dict(sorted(found.items()))


def collect(*, seed: int, argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    return {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": list(sys.argv if argv is None else argv),
        "cwd": str(Path.cwd()),
        "git": git_state(Path.cwd()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "packages": installed_packages(),
        "seed": seed,
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }


def record(run: RunDir, entry: dict[str, Any]) -> None:
    """Add ``entry`` to the run's provenance: the first start, then one entry per resume."""
    path = run.path / PROVENANCE_FILE
    history = read(run)
    history.append(entry)
    run.write_json(path, {"sessions": history})


def read(run: RunDir) -> list[dict[str, Any]]:
    path = run.path / PROVENANCE_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sessions = data["sessions"]
    except (ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise RunDirectoryError(f"{path} is unreadable ({exc}); the file is damaged") from None
    return [session for session in sessions if isinstance(session, dict)]


def plugin_drift(run: RunDir, today: dict[str, str] | None = None) -> list[str]:
    """One line per package whose version differs from the run's newest session (or that was added
    or removed since), naming what to reinstall or disable."""
    sessions = read(run)
    if not sessions:
        return []
    then: dict[str, str] = sessions[-1].get("packages") or {}
    now = installed_packages() if today is None else today
    lines = []
    for name in sorted(set(then) | set(now)):
        before, after = then.get(name), now.get(name)
        if before == after:
            continue
        if after is None:
            lines.append(f"{name} {before} trained this run but is not installed now: "
                         f"reinstall it (pip install '{name}=={before}')")
        elif before is None:
            lines.append(f"{name} {after} is installed now but was not when this run trained: disable it "
                         f"(MOSAIC_DISABLE_PLUGINS) or uninstall it if results differ")
        else:
            lines.append(f"{name} is {after} now but {before} trained this run: reinstall it "
                         f"(pip install '{name}=={before}') if results differ")
    return lines
