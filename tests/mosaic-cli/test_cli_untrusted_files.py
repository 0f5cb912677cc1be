"""Loading a run directory never runs code: a pickle planted where a checkpoint or a session file
belongs is refused by name, and the code it carries never executes (installed ``mosaic``)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

from mosaic.runtime.testing.installed_mosaic import InstalledMosaic

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


# --- an oversized input line ----------------------------------------------------------------------


def _events_peak_rss(mosaic: InstalledMosaic, run: Path, line_bytes: int) -> tuple[int, int, bytes]:
    """(exit status, peak RSS in KiB, stdout) of ``mosaic events`` fed one line of ``line_bytes``
    followed by a good event, streamed through a pipe."""
    import os
    import subprocess
    import threading

    process = subprocess.Popen([str(mosaic.script), "events", str(run), "--fresh", "--max-new-bytes", "4"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env=mosaic.environment())

    def feed() -> None:
        block = b"x" * (1 << 20)
        left = line_bytes
        try:
            while left > 0:
                piece = block[: min(left, len(block))]
                process.stdin.write(piece)
                left -= len(piece)
            process.stdin.write(b"\n" + GOOD_EVENT)
        finally:
            process.stdin.close()

    writer = threading.Thread(target=feed)
    writer.start()
    stdout = process.stdout.read()
    writer.join()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss, stdout


def test_an_oversized_events_line_is_refused_without_being_held(mosaic: InstalledMosaic, run_dir: Path,
                                                                tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    _, baseline_kib, _ = _events_peak_rss(mosaic, run, 16)
    status, peak_kib, stdout = _events_peak_rss(mosaic, run, 256 * 2**20)
    lines = [line for line in stdout.decode().splitlines()]
    assert "exceeds the limit" in lines[0] and '"line":1' in lines[0]
    assert lines[-1].startswith("{") and '"LedgerSummary"' in lines[-1]  # the stream went on
    assert status == 1
    # Reading the 256 MiB line whole would add at least 256 MiB; the reader holds at most 4 MiB of it.
    assert peak_kib - baseline_kib < 64 * 1024, (baseline_kib, peak_kib)
