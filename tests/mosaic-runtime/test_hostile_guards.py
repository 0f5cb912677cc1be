"""Guards against damaged or planted files and wild settings in the runtime's readers and writers
(the CLI side is tests/mosaic-cli/test_cli_hostile_inputs.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from mosaic.core.audit import AuditLog
from mosaic.core.errors import (
    CheckpointError,
    ConfigError,
    MosaicError,
    RunDirectoryError,
    RuntimeStateError,
    ToolError,
)
from mosaic.runtime.agent.autonomous import serve_unix_socket
from mosaic.runtime.agent.config import ConsolidationConfig, GenerationConfig
from mosaic.runtime.agent.loading import check_byte_model
from mosaic.runtime.agent.session import SessionStore
from mosaic.runtime.testing.tiny_training import TINY_PRESET, tiny_registry
from mosaic.runtime.tools.registry import ToolRegistry, ToolRegistryConfig
from mosaic.runtime.training.checkpoint import FORMAT, check_fields, list_checkpoints, load_payload, rng_state
from mosaic.runtime.training.manifest import parse_manifest
from mosaic.runtime.training.plotting import plot_run
from mosaic.runtime.training.run_dir import RunDir, parse_jsonl
from mosaic.runtime.training.run_lock import acquire_run_lock
from mosaic.runtime.training.sizing import estimate_memory
from mosaic.runtime.training.sweep import SweepError, SweepParam, SweepSpec


def test_the_run_lock_and_logs_refuse_symlinks(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.path / ".lock").symlink_to(victim)
    with pytest.raises(RunDirectoryError, match="symbolic link"):
        acquire_run_lock(run.path)
    run.events_path.symlink_to(victim)
    with pytest.raises(RunDirectoryError, match="symbolic link"):
        run.log_event("start")
    assert victim.read_text() == "precious"


class BlockedForEver(Exception):
    """Not an OSError (as TimeoutError is), which the code under test may catch and carry on from."""


@contextlib.contextmanager
def fails_instead_of_hanging(seconds: int = 10) -> Any:
    """Opening a FIFO for writing waits for a reader for ever: turn a regression into a failure."""
    def give_up(*_: object) -> None:
        raise BlockedForEver("blocked opening a FIFO")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_logs_and_locks_planted_as_fifos_are_refused_without_waiting(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    os.mkfifo(run.path / ".lock")
    with fails_instead_of_hanging(), pytest.raises(RunDirectoryError, match="not a regular file"):
        acquire_run_lock(run.path)
    os.mkfifo(run.events_path)
    with fails_instead_of_hanging(), pytest.raises(RunDirectoryError, match="not a regular file"):
        run.log_event("start")
    sessions = SessionStore(run.path)
    sessions.directory("s1").mkdir(parents=True)
    os.mkfifo(sessions.events_path("s1"))
    with fails_instead_of_hanging(), pytest.raises(CheckpointError, match="not a regular file"):
        sessions.open_events_log("s1")
    registry_root = tmp_path / "tools"
    registry_root.mkdir()
    os.mkfifo(registry_root / ".lock")
    registry = ToolRegistry(registry_root, builders={}, audit=AuditLog(tmp_path / "audit.jsonl", key=b"k" * 32),
                            config=ToolRegistryConfig(), approval_key=b"a" * 32)
    with fails_instead_of_hanging(), pytest.raises(ToolError, match="not a regular file"):
        registry.sweep()


def test_only_regular_files_count_as_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "step_00000001.pt").write_bytes(b"x")
    os.mkfifo(tmp_path / "step_00000002.pt")  # opening it would block the resume for ever
    (tmp_path / "step_00000003.pt").mkdir()
    (tmp_path / "step_00000004.pt\n").write_bytes(b"x")  # not a checkpoint's name, though $ matched it
    assert [step for step, _ in list_checkpoints(tmp_path)] == [1]


def test_a_saved_file_planted_as_a_fifo_or_directory_is_refused_without_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "session.pt")  # torch.load opened it and waited for a writer for ever
    with fails_instead_of_hanging(), pytest.raises(CheckpointError, match="session file .*session.pt is not a "
                                                                          "regular file \\(it is a FIFO\\)"):
        load_payload(tmp_path / "session.pt", file_format=FORMAT, what="session file")
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(CheckpointError, match="checkpoint .*dir.pt is not a regular file \\(it is a directory\\)"):
        load_payload(tmp_path / "dir.pt", file_format=FORMAT, what="checkpoint")
    with pytest.raises(CheckpointError, match="no such session"):
        load_payload(tmp_path / "missing.pt", file_format=FORMAT, what="session file", missing="no such session")
    # a file that is only read may be a link to a real one
    torch.save({"format": FORMAT, "step": 1}, tmp_path / "real.pt")
    (tmp_path / "link.pt").symlink_to(tmp_path / "real.pt")
    assert load_payload(tmp_path / "link.pt", file_format=FORMAT, what="checkpoint")["step"] == 1


def test_checkpoint_fields_are_checked_before_anything_is_restored(tmp_path: Path) -> None:
    good = {"step": 4, "samples_seen": 32, "model": {}, "optimizer": {}, "scheduler": {}, "rng": rng_state()}
    check_fields(tmp_path / "c.pt", good, 4)
    for field, value, reason in [("step", 5, "its name says 4"), ("step", True, "records step True"),
                                 ("samples_seen", -1, "samples_seen"), ("optimizer", [1], "optimizer"),
                                 ("rng", {"python": 1, "torch": 2}, "random state"),
                                 ("rng", {"python": (3, (1, 2), None), "torch": torch.zeros(3)}, "random state")]:
        with pytest.raises(CheckpointError, match=reason):
            check_fields(tmp_path / "c.pt", {**good, field: value}, 4)


def test_a_checkpoint_compressed_to_expand_is_refused_before_torch_reads_it(tmp_path: Path) -> None:
    import zipfile

    honest = tmp_path / "honest.pt"
    torch.save({"format": FORMAT, "weights": torch.zeros(512, 512)}, honest)
    assert load_payload(honest, file_format=FORMAT, what="checkpoint")["weights"].shape == (512, 512)
    bomb = tmp_path / "bomb.pt"  # the same entries, deflated: a thousandth of the size
    with zipfile.ZipFile(honest) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
    assert bomb.stat().st_size * 50 < honest.stat().st_size
    with pytest.raises(CheckpointError, match="expand to 1,04.* bytes from a"):
        load_payload(bomb, file_format=FORMAT, what="checkpoint")


@pytest.mark.parametrize("line,problem", [("[" * 100_000, "not a JSON record"), ('{"step": "x"}', "not a step"),
                                          ('{"train_step": 1.5}', "not a step"), ("[1]", "not a JSON record")])
def test_damaged_jsonl_lines_are_named(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(RunDirectoryError, match=f"line 1.*{problem}"):
        parse_jsonl(tmp_path / "m.jsonl", line + "\n{}\n")


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.config_path.write_bytes(b"name: x\n\xff")
    with pytest.raises(ConfigError, match="not UTF-8: byte 0xff at offset 8"):
        run.config_text()


def test_plots_skip_values_that_are_not_numbers_and_take_only_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = RunDir(tmp_path)
    run.config_path.write_text("name: x\n")
    for step, loss in [(1, 2.0), (2, "abc"), (3, [1]), (4, 1.0)]:
        run.append_metrics({"step": step, "split": "train", "loss_total": loss})
    run.append_metrics({"step": 4, "split": "eval", "metrics": 5})
    assert plot_run(tmp_path).stat().st_size > 0
    with pytest.raises(MosaicError, match="NAME.png"):
        plot_run(tmp_path, tmp_path / "curves.yaml")


def test_a_model_too_large_for_the_machine_is_refused_before_it_is_built() -> None:
    text = TINY_PRESET.replace("  d_model: 16\n", "  d_model: 100000000\n", 1)
    experiment = parse_manifest(text, tiny_registry()).experiments[0]
    with pytest.raises(ConfigError, match="parameters need .* GiB .* more than this machine's"):
        estimate_memory(experiment, tiny_registry())


def test_sweeps_name_their_study_safely_and_report_a_bad_storage(tmp_path: Path) -> None:
    grid = (SweepParam.grid("trainer.lr=0.1"),)
    for name in ("../x", "/abs", "", "a/b", "x\n", "x" * 65):  # "x\n" passed a $-anchored pattern
        with pytest.raises(SweepError, match="not a study name"):
            SweepSpec(preset="p", params=grid, study_name=name)
    with pytest.raises(SweepError, match="trainer.lr: swept twice"):
        SweepSpec(preset="p", params=(*grid, SweepParam.grid("trainer.lr=0.2")))
    pytest.importorskip("optuna")
    from mosaic.runtime.training.sweep import run_sweep

    preset = tmp_path / "tiny.yml"
    preset.write_text(TINY_PRESET)
    for storage in ("bogus://x", "notaurl", f"sqlite:///{tmp_path}/missing/dir/x.db"):
        spec = SweepSpec(preset=str(preset), params=grid, storage=storage)
        with pytest.raises(SweepError, match="cannot open the study's storage"):
            run_sweep(spec, out=tmp_path / "out", registry=tiny_registry(), run_one=lambda overrides: {})


class ScoresIds(torch.nn.Module):
    """A streaming model whose step scores ``width`` ids (all the check reads of it)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(1, width)

    def init_state(self, batch_size: int, device: Any = None) -> None:
        return None

    def step(self, ids: torch.Tensor, state: None) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(torch.ones(ids.shape[0], 1)))


def test_the_event_runtimes_refuse_a_model_narrower_than_a_byte() -> None:
    check_byte_model(ScoresIds(256))
    with pytest.raises(RuntimeStateError, match="vocabulary of 128 ids; the event runtimes need a byte-level"):
        check_byte_model(ScoresIds(128))


def test_the_live_socket_never_replaces_a_file_that_is_not_a_socket(tmp_path: Path) -> None:
    in_the_way = tmp_path / "notes"
    in_the_way.write_text("precious")
    with pytest.raises(RuntimeStateError, match="not a socket is in the way"):
        asyncio.run(serve_unix_socket(str(in_the_way), runtime=None))  # type: ignore[arg-type]
    with pytest.raises(RuntimeStateError, match="cannot listen there"):
        asyncio.run(serve_unix_socket(str(tmp_path / "missing" / "sock"), runtime=None))  # type: ignore[arg-type]
    assert in_the_way.read_text() == "precious"


def test_generation_and_consolidation_settings_refuse_non_finite_numbers() -> None:
    for settings in ({"temperature": float("nan")}, {"temperature": float("inf")}, {"seed": 2**64}):
        with pytest.raises(ValueError):
            GenerationConfig(**settings)
    for settings in ({"prune_below": float("nan")}, {"refresh_above": float("nan")}):
        with pytest.raises(ValueError, match="finite"):
            ConsolidationConfig(**settings)


def test_the_estimate_scales_a_streams_state_without_allocating_the_batch() -> None:
    from mosaic.runtime.testing.installed_mosaic import TINY_PRESET as STREAM_PRESET
    from mosaic.runtime.testing.tiny_agent import agent_registry

    registry = agent_registry()
    experiment = parse_manifest(STREAM_PRESET, registry).experiments[0]
    small = estimate_memory(experiment, registry, batch_size=4)
    assert small.state_bytes > 0
    huge = estimate_memory(experiment, registry, batch_size=10**14)  # its state alone would be petabytes
    assert huge.state_bytes == small.state_bytes // 4 * 10**14


@pytest.mark.parametrize("field,value", [
    ("aliases", '{"head": "missing"}'), ("aliases", '["a"]'), ("aliases", '{"head": ["w"]}'),
    ("extra_state", "[1, 2, 3]"), ("extra_state", '"abc"'), ("extra_state", '{"w": "replaced"}'),
    ("model_config", "[1, 2]"), ("model_config", '{"d": 1}'),
])
def test_an_export_with_metadata_of_the_wrong_shape_is_a_checkpoint_error(tmp_path: Path, field: str,
                                                                           value: str) -> None:
    from safetensors.torch import save_file

    from mosaic.runtime.export import EXPORT_FORMAT, read_safetensors_export

    metadata = {"format": EXPORT_FORMAT, "model_config": '{"type": "model.x"}', "aliases": "{}", "extra_state": "{}"}
    path = tmp_path / "e.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata=metadata)
    assert read_safetensors_export(path)[1] == {"type": "model.x"}
    save_file({"w": torch.zeros(2)}, str(path), metadata={**metadata, field: value})
    with pytest.raises(CheckpointError, match="damaged export metadata"):
        read_safetensors_export(path)
    os.mkfifo(tmp_path / "fifo")  # reading it blocked for ever
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_safetensors_export(tmp_path / "fifo")
