"""docs/chronomoe.md's sovereign-core run, from ``docs/results/chrono_sovereign.json``
(``python -m experiments.chrono_sovereign``): the report's identity and geometry sections and the
audit check, as the commands printed them."""

from __future__ import annotations

import json
from pathlib import Path


def render(results: Path) -> str:
    data = json.loads((results / "chrono_sovereign.json").read_text(encoding="utf-8"))
    setup = data["setup"]
    restarts = ", ".join(f"{clock} {k['restarts']}" for clock, k in data["keepers"].items())
    lines = [
        f"`{setup['preset']}` `{setup['experiment']}`, {setup['steps']} steps; the {setup['killed']} keeper "
        f"SIGKILLed once step {setup['killed_at_step']} was logged; keeper restarts: {restarts}. "
        f"{setup['wall_seconds']} s on the {setup['machine']}.",
        "",
        "```text",
        "$ mosaic chrono report RUN",
        "...",
        *data["identity"],
        "",
        *data["geometry"],
        "",
        "$ mosaic audit verify RUN/chrono_audit.jsonl",
        data["audit_verify"]["output"],
        "```",
    ]
    return "\n".join(lines) + "\n"
