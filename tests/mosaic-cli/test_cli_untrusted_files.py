"""Loading a run directory never runs code: a pickle planted where a checkpoint or a session file
belongs is refused by name, and the code it carries never executes (installed ``mosaic``)."""

from __future__ import annotations

import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from installed_mosaic import InstalledMosaic

GOOD_EVENT = b'{"type": "Message", "sender": "user", "payload": {"text": "hi"}}\n'


class Planted:
    """Unpickling this runs ``exec``, which writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


def plant(path: Path, marker: Path, *, file_format: str, as_torch_file: bool) -> None:
    """A file that looks like ours (a ``{"format": ...}`` dict) but carries the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": file_format, "step": 99, "model": Planted(marker)}
    if as_torch_file:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> InstalledMosaic:
    return InstalledMosaic(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="module")
def run_dir(mosaic: InstalledMosaic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mosaic.train(tmp_path_factory.mktemp("trained"))


def output(done) -> str:
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


@pytest.mark.parametrize("as_torch_file", [True, False], ids=["torch-zip", "raw-pickle"])
@pytest.mark.parametrize("command", [["eval"], ["run", "--resume"]], ids=["eval", "resume"])
def test_planted_checkpoint_does_not_run(mosaic: InstalledMosaic, run_dir: Path, tmp_path: Path,
                                         command: list[str], as_torch_file: bool) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    for checkpoint in (run / "checkpoints").glob("*.pt"):
        checkpoint.unlink()
    planted = run / "checkpoints" / "step_00000099.pt"
    marker = tmp_path / "marker"
    plant(planted, marker, file_format="mosaic-checkpoint/1", as_torch_file=as_torch_file)
    done = mosaic(*command, run, stdin=b"")
    assert not marker.exists(), "unpickling the planted checkpoint ran its code"
    assert done.returncode == 1, output(done)
    assert str(planted) in output(done) and "Traceback" not in output(done)


@pytest.mark.parametrize("as_torch_file", [True, False], ids=["torch-zip", "raw-pickle"])
def test_planted_session_file_does_not_run(mosaic: InstalledMosaic, run_dir: Path, tmp_path: Path,
                                           as_torch_file: bool) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    planted = run / "sessions" / "X" / "session.pt"
    marker = tmp_path / "marker"
    plant(planted, marker, file_format="mosaic-session/1", as_torch_file=as_torch_file)
    done = mosaic("events", run, "--session", "X", stdin=GOOD_EVENT)
    assert not marker.exists(), "unpickling the planted session file ran its code"
    assert done.returncode == 1, output(done)
    assert str(planted) in output(done) and "Traceback" not in output(done)
