"""Keep the docs true: rewrite command outputs and result tables from their sources.

Two kinds of block are kept true in docs/*.md.

A command's output, produced by running the real ``mosaic`` command::

    <!-- mosaic-output -->
    ```console
    $ mosaic plugins list
    ...output...
    ```
    <!-- /mosaic-output -->

A table of measured results, rendered from benchmark JSON committed under ``docs/results/``
(benchmarks write JSON; copy the run you quote there) by ``docs/renderers/<NAME>.py``, a module
with ``render(results_dir: Path) -> str``::

    <!-- mosaic-table: NAME -->
    ...table...
    <!-- /mosaic-table -->

The pages are docs/*.md, README.md and packages/*/README.md. ``python docs/regenerate.py`` rewrites
every block; ``python docs/regenerate.py --check`` rewrites
nothing and exits 1 naming each stale block, which is what CI runs (through
``tests/integration/test_docs_output.py``). Neither reruns a benchmark.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).parent
ROOT = DOCS.parent
RESULTS = DOCS / "results"
RENDERERS = DOCS / "renderers"
OUTPUT_BLOCK = re.compile(
    r"(?P<head><!-- mosaic-output -->\n```console\n\$ (?P<command>[^\n]+)\n)(?P<output>.*?)(?P<tail>```\n<!-- /mosaic-output -->)",
    re.DOTALL,
)
TABLE_BLOCK = re.compile(
    r"(?P<head><!-- mosaic-table: (?P<name>[a-z0-9_]+) -->\n)(?P<output>.*?)(?P<tail><!-- /mosaic-table -->)",
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


def render_table(name: str) -> str:
    """The table ``docs/renderers/<name>.py`` renders from ``docs/results/``."""
    path = RENDERERS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no renderer for table {name!r}: expected {path}")
    spec = importlib.util.spec_from_file_location(f"docs_renderer_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.render(RESULTS)
    return text if text.endswith("\n") else text + "\n"


def blocks(text: str) -> list[tuple[str, str]]:
    """``(command, shown output)`` for every command-output block in ``text``."""
    return [(m["command"], m["output"]) for m in OUTPUT_BLOCK.finditer(text)]


def tables(text: str) -> list[tuple[str, str]]:
    """``(renderer name, shown table)`` for every table block in ``text``."""
    return [(m["name"], m["output"]) for m in TABLE_BLOCK.finditer(text)]


def regenerate(text: str) -> str:
    text = OUTPUT_BLOCK.sub(lambda m: m["head"] + run_command(m["command"]) + m["tail"], text)
    return TABLE_BLOCK.sub(lambda m: m["head"] + render_table(m["name"]) + m["tail"], text)


def stale_blocks(path: Path) -> list[str]:
    """What in ``path`` differs from its sources (empty when the page is true)."""
    text = path.read_text()
    stale = [f"{path.name}: output of `{command}`" for command, shown in blocks(text) if run_command(command) != shown]
    stale += [f"{path.name}: table {name}" for name, shown in tables(text) if render_table(name) != shown]
    return stale


def pages() -> list[Path]:
    """Every page whose blocks are kept true: docs/*.md, the README and the package READMEs."""
    readmes = [ROOT / "README.md", *sorted((ROOT / "packages").glob("*/README.md"))]
    return sorted(DOCS.glob("*.md")) + [path for path in readmes if path.is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any block is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = [entry for path in pages() for entry in stale_blocks(path)]
        for entry in stale:
            print(f"stale: {entry}", file=sys.stderr)
        if stale:
            print("run: python docs/regenerate.py", file=sys.stderr)
        return 1 if stale else 0
    for path in pages():
        text = path.read_text()
        updated = regenerate(text)
        if updated != text:
            path.write_text(updated)
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
