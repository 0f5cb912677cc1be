"""``mosaic generate RUN_DIR`` through the installed script, for both model kinds (MosaicLM and the
Transformer baseline), in text and event mode, and its exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mosaic.core.events.envelope import EventEnvelope
from mosaic.runtime.testing.installed_mosaic import InstalledMosaic

PRESET = """\
version: 2
name: generate_{kind}
targets:
  - type: experiment
    name: lm
    backend: torch
    model:
{model}
    objective:
      type: objective.mosaic_event_prediction
    dataset:
      type: dataset.agent_tiny_events
    trainer:
      steps: 1
      batch_size: 2
      lr: 0.001
      warmup_steps: 1
      log_every: 1
      checkpoint_every: 1
      threads: 1
"""
MODELS = {
    "mosaic": """\
      type: model.mosaic_lm
      vocab_size: 256
      n_layers: 1
      block: {d_model: 16, mem_buckets: 4, mem_assoc: 2, mem_key_dim: 8, mem_dim: 8, reg_slots: 2, reg_dim: 4}""",
    "transformer": """\
      type: model.transformer_baseline
      vocab_size: 256
      d_model: 16
      n_layers: 1
      n_heads: 2
      max_seq_len: 512""",
}
NOTE = EventEnvelope("Note", {"n": 1}, "user", id="e1", ts=1.0)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> InstalledMosaic:
    return InstalledMosaic(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="module", params=sorted(MODELS))
def run_dir(request: pytest.FixtureRequest, mosaic: InstalledMosaic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(request.param)
    preset = root / f"generate_{request.param}.yml"
    preset.write_text(PRESET.format(kind=request.param, model=MODELS[request.param]))
    done = mosaic("run", preset, "--out", root / "runs", "--no-progress")
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return Path(done.stdout.decode().rsplit("run directory:", 1)[1].strip())


def test_text_mode_streams_seeded_bytes(mosaic: InstalledMosaic, run_dir: Path) -> None:
    first = mosaic("generate", run_dir, "--prompt", "hello", "--max-new-tokens", "12", "--seed", "3", "--top-k", "5")
    assert first.returncode == 0, first.stderr.decode()
    assert len(first.stdout) == 13 and first.stdout.endswith(b"\n")  # 12 bytes and a newline
    again = mosaic("generate", run_dir, "--max-new-tokens", "12", "--seed", "3", "--top-k", "5", stdin=b"hello")
    assert again.returncode == 0 and again.stdout == first.stdout  # stdin prompt, same seed: same bytes
    greedy = mosaic("generate", run_dir, "--prompt", "hello", "--max-new-tokens", "12", "--temperature", "0")
    assert greedy.returncode == 0 and len(greedy.stdout) == 13


def test_event_mode_decodes_the_events_it_emits(mosaic: InstalledMosaic, run_dir: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(NOTE.to_bytes() + b"\n" + NOTE.to_bytes() + b"\n")
    done = mosaic("generate", run_dir, "--events", events, "--max-new-tokens", "200", "--temperature", "0")
    assert done.returncode == 0, done.stderr.decode()
    for line in done.stdout.decode().splitlines():  # every line printed is a valid event
        assert EventEnvelope.from_json_dict(json.loads(line))
    assert "Traceback" not in done.stderr.decode()


def test_bad_input_exits_with_a_message(mosaic: InstalledMosaic, run_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"not": "an event"}\n')
    done = mosaic("generate", run_dir, "--events", bad)
    assert done.returncode == 1 and "events line 1" in done.stderr.decode() and "Traceback" not in done.stderr.decode()
    assert mosaic("generate", tmp_path, "--prompt", "x").returncode == 1  # not a run directory
    assert mosaic("generate", tmp_path / "missing", "--prompt", "x").returncode == 2
    assert mosaic("generate", run_dir, "--prompt", "x", "--events", bad).returncode == 2
    assert mosaic("generate", run_dir, "--prompt", "").returncode == 2


def test_a_tiny_temperature_samples_like_greedy_decoding(mosaic: InstalledMosaic, run_dir: Path) -> None:
    greedy = mosaic("generate", run_dir, "--prompt", "ab", "--max-new-tokens", "6", "--temperature", "0")
    tiny = mosaic("generate", run_dir, "--prompt", "ab", "--max-new-tokens", "6", "--temperature", "1e-40")
    assert greedy.returncode == 0 and tiny.returncode == 0, tiny.stderr.decode()  # was a NaN softmax traceback
    assert tiny.stdout == greedy.stdout


def test_a_prompt_that_is_not_utf8_is_passed_on_as_its_bytes(mosaic: InstalledMosaic, run_dir: Path) -> None:
    argument = mosaic("generate", run_dir, "--prompt", os.fsdecode(b"ab\xff"), "--max-new-tokens", "4", "--seed", "1")
    piped = mosaic("generate", run_dir, "--max-new-tokens", "4", "--seed", "1", stdin=b"ab\xff")
    assert argument.returncode == 0, argument.stderr.decode()
    assert argument.stdout == piped.stdout  # the same bytes as the same prompt on stdin
