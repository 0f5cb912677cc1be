"""Runs the tiny preset in a separate process (for kill/resume and torchrun tests).

Usage: python -m mosaic.runtime.testing.train_entry PRESET_FILE OUT_DIR [--resume RUN_DIR] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mosaic.runtime.testing.tiny_training import tiny_registry
from mosaic.runtime.training.run import run_preset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    parser.add_argument("out", type=Path)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    summary = run_preset(None if args.resume else args.preset, registry=tiny_registry(), out=args.out,
                         resume=args.resume, overrides=args.overrides, show_progress=False)
    if summary.get("run_dir"):
        print("SUMMARY " + json.dumps({"run_dir": summary["run_dir"], "final": summary["final"]}))


if __name__ == "__main__":
    main()
