"""``mosaic export RUN_DIR --safetensors`` through the installed script."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import safetensors

from mosaic.runtime.testing.installed_mosaic import InstalledMosaic


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> InstalledMosaic:
    return InstalledMosaic(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="module")
def run_dir(mosaic: InstalledMosaic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mosaic.train(tmp_path_factory.mktemp("trained"))


def test_export_writes_safetensors_with_the_model_config(mosaic: InstalledMosaic, run_dir: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "exported" / "tiny.safetensors"
    done = mosaic("export", run_dir, "--safetensors", "--out", out)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == str(out)
    with safetensors.safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata()
        names = set(handle.keys())
    assert metadata["format"] == "mosaic-export/1" and metadata["step"] == "2"
    assert json.loads(metadata["model_config"])["type"] == "model.agent_tiny_stream"
    assert {"embed.weight", "head.weight", "mix.weight"} <= names


def test_export_failures_exit_non_zero(mosaic: InstalledMosaic, run_dir: Path, tmp_path: Path) -> None:
    assert mosaic("export", run_dir).returncode == 2  # no format chosen
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    for checkpoint in (run / "checkpoints").glob("*.pt"):
        checkpoint.write_bytes(b"damaged")
    done = mosaic("export", run, "--safetensors")
    assert done.returncode == 1 and "corrupt" in done.stderr.decode() and "Traceback" not in done.stderr.decode()
    assert not (run / "model.safetensors").exists()
