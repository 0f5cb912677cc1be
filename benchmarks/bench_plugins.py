"""Wall time of ``mosaic plugins list`` (goal <= 0.3 s, median of 10 warm runs), against a bare
``python -c pass`` start-up measured in the same run, so the JSON also shows how much of it is the
interpreter itself. Warm: bytecode is cached (a first run writes it even where the environment sets
``PYTHONDONTWRITEBYTECODE``, as an installed package would have it), and the two commands alternate."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

from harness import goal, main


def run(quick: bool) -> dict:
    repeats = 3 if quick else 10
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    bare_command = [sys.executable, "-c", "pass"]
    listing_command = [sys.executable, "-m", "mosaic.cli.main", "plugins", "list"]

    cpu: list[float] = []

    def wall(command: list[str]) -> float:
        # CPU seconds (user + system) of the child are recorded beside its wall time: on a shared
        # machine the wall time mostly measures the other jobs, the CPU time far less so
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if command is listing_command:
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return elapsed

    wall(listing_command)  # warm: writes the bytecode, fills the page cache
    cpu.clear()
    bare, listing = [], []
    for _ in range(repeats):  # interleaved, so load drift hits both alike
        bare.append(wall(bare_command))
        listing.append(wall(listing_command))
    bare.sort()
    listing.sort()
    median_bare, median_listing = bare[len(bare) // 2], listing[len(listing) // 2]
    return {
        "runs": repeats,
        "python_startup_s": round(median_bare, 4),
        "plugins_list_s": goal(median_listing, 0.3, at_least=False),
        "plugins_list_all_runs_s": [round(value, 4) for value in listing],
        "plugins_list_over_startup": round(median_listing / median_bare, 2),
        "plugins_list_cpu_s": round(sorted(cpu)[len(cpu) // 2], 4),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


if __name__ == "__main__":
    main(run, "plugins")
