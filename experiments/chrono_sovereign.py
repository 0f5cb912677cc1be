"""The sovereign core on a real phase-8 run: identity events, a killed keeper, the report and the
audit check, as docs/chronomoe.md shows them.

Trains ``mosaic run phase8_moe --experiment chrono_lifecycle`` (the preset's kernel, keepers and
identity thresholds) in a subprocess, SIGKILLs the mid keeper once step ``--kill-after`` is logged,
then runs ``mosaic chrono report`` and ``mosaic audit verify`` on the run directory and writes their
output (run directory replaced by ``RUN``) with the audit record counts to ``--out``.
Run: ``python -m experiments.chrono_sovereign --out docs/results/chrono_sovereign.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from mosaic.runtime.testing.chrono_run import run_killing_keeper
from mosaic.runtime.testing.tiny_cli import mosaic_command


def _section(text: str, title: str) -> list[str]:
    """The lines of the report section that starts with ``title`` (up to the next blank line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--kill-after", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("chrono_sovereign.json"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = run_killing_keeper(
            Path(tmp), [f"vars.steps={args.steps}"], clock="mid", kill_after_step=args.kill_after
        )
        seconds = time.perf_counter() - started
        if run.returncode != 0:
            raise SystemExit(f"the run failed:\n{run.stderr[-3000:]}")
        report = subprocess.run(
            [*mosaic_command(), "chrono", "report", str(run.run_dir)],
            capture_output=True,
            text=True,
            env=run.env,
            check=True,
        ).stdout.replace(str(run.run_dir), "RUN")
        verify = subprocess.run(
            [*mosaic_command(), "audit", "verify", str(run.run_dir / "chrono_audit.jsonl")],
            capture_output=True,
            text=True,
            env=run.env,
            check=False,
        )
        audit = [json.loads(line) for line in (run.run_dir / "chrono_audit.jsonl").read_text().splitlines()]
        keepers = json.loads((run.run_dir / "keepers.json").read_text())
    result = {
        "setup": {
            "preset": "phase8_moe",
            "experiment": "chrono_lifecycle",
            "steps": args.steps,
            "killed": "mid",
            "kill_after_step": args.kill_after,
            "killed_at_step": run.killed_at_step,
            "machine": f"2-core CPU dev machine, shared ({platform.machine()}), load average {load:.2f} at start",
            "wall_seconds": round(seconds, 1),
        },
        "audit_counts": dict(sorted(Counter(r["kind"] for r in audit).items())),
        "keepers": {
            clock: {"restarts": k["restarts"], "may_propose": k["may_propose"]}
            for clock, k in keepers.items()
        },
        "identity": _section(report, "identity events"),
        "geometry": _section(report, "geometry per layer"),
        "audit_verify": {
            "exit": verify.returncode,
            "output": verify.stdout.strip().replace(str(run.run_dir), "RUN"),
        },
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["setup"]))


if __name__ == "__main__":
    main()
