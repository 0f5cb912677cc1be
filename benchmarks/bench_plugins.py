"""Wall time of ``mosaic plugins list`` (goal <= 0.3 s), against a bare ``python -c pass`` start-up
measured in the same run, so the JSON also shows how much of it is the interpreter itself."""

from __future__ import annotations

import subprocess
import sys

from harness import goal, main, seconds


def run(quick: bool) -> dict:
    repeats = 3 if quick else 9

    def interpreter() -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def plugins_list() -> None:
        subprocess.run([sys.executable, "-m", "mosaic.cli.main", "plugins", "list", "--all"], check=True, capture_output=True)

    bare = seconds(interpreter, repeats=repeats)
    listing = seconds(plugins_list, repeats=repeats)
    return {
        "python_startup_s": round(bare, 4),
        "plugins_list_s": goal(listing, 0.3, at_least=False),
        "plugins_list_over_startup": round(listing / bare, 2),
    }


if __name__ == "__main__":
    main(run, "plugins")
