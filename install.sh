#!/usr/bin/env bash
# Create .venv with every MOSAIC package installed (editable) for development.
# torch is pinned first through the constraints file so that no step resolves a newer (CUDA) build.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c requirements/constraints.txt torch
.venv/bin/python -m pip install -q -c requirements/constraints.txt \
  -e packages/mosaic-core -e packages/mosaic-layers -e packages/mosaic-data \
  -e "packages/chronomoe[remote]" -e "packages/mosaic-runtime[plot,sweep]" -e packages/mosaic-cli \
  -r requirements/test.txt
echo "installed into .venv — activate with: source .venv/bin/activate"
