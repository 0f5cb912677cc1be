"""Rewrite the command outputs shown in the docs from the real commands.

A block to keep true looks like::

    <!-- mosaic-output -->
    ```console
    $ mosaic plugins list
    ...output...
    ```
    <!-- /mosaic-output -->

``python docs/regenerate.py`` rewrites every such block in docs/*.md;
``tests/integration/test_docs_output.py`` fails when one is out of date.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).parent
BLOCK = re.compile(
    r"(?P<head><!-- mosaic-output -->\n```console\n\$ (?P<command>[^\n]+)\n)(?P<output>.*?)(?P<tail>```\n<!-- /mosaic-output -->)",
    re.DOTALL,
)


def run_command(command: str) -> str:
    args = shlex.split(command)
    if args[0] != "mosaic":
        raise ValueError(f"only mosaic commands can be regenerated, got {command!r}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSAIC_")}
    env["COLUMNS"] = "100"
    result = subprocess.run(
        [sys.executable, "-m", "mosaic.cli.main", *args[1:]], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout


def blocks(text: str) -> list[tuple[str, str]]:
    """``(command, shown output)`` for every output block in ``text``."""
    return [(m["command"], m["output"]) for m in BLOCK.finditer(text)]


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: m["head"] + run_command(m["command"]) + m["tail"], text)


def main() -> None:
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text()
        updated = regenerate(text)
        if updated != text:
            path.write_text(updated)
            print(f"updated {path}")


if __name__ == "__main__":
    main()
