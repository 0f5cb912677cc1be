"""``mosaic trace RUN_DIR`` on a tiny trained event run: one row per event byte with the VM's opcode,
memory reads/writes and commitment class, as JSON lines or a table; bad input exits 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic.core.events.codec import EventEncoder
from mosaic.core.events.envelope import EventEnvelope
from mosaic.layers.isa import opcode_table
from mosaic.runtime.training.run import run_preset

TINY_EVENTS = [
    "vars.d_model=16", "vars.negotiation_pairs=0", "dataset.block_size=3712", "vars.steps=2",
    "trainer.warmup_steps=1", "curriculum.warmup_steps=0", "curriculum.cooldown_steps=0",
    "eval.samples=2", "eval.batch_size=2", "vars.batch_size=2", "model.block.commitment_head_enabled=true",
]
EVENTS = [
    EventEnvelope(type="MemoryWrite", payload={"key": 12, "v": 34}, sender="user", id="a", ts=0.0),
    EventEnvelope(type="MemoryQuery", payload={"key": 12}, sender="user", id="b", ts=1.0),
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    summary = run_preset("mosaic_event_native", out=root, overrides=TINY_EVENTS, show_progress=False)
    return Path(summary["run_dir"])


def mosaic(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    # the installed console script of this interpreter's environment
    beside = Path(sys.executable).parent / "mosaic"
    executable = str(beside) if beside.exists() else shutil.which("mosaic")
    assert executable is not None, "the mosaic command is not installed"
    return subprocess.run([executable, *args], input=stdin, capture_output=True, timeout=300, check=False)


def test_trace_shows_every_byte_as_json(trained_run: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e.to_json_dict()) for e in EVENTS) + "\n")
    result = mosaic("trace", str(trained_run), "--input", str(events), "--json")
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    stream = EventEncoder().encode_stream(EVENTS).tolist()
    assert [row["byte"] for row in rows] == stream
    assert {row["opcode"] for row in rows} <= {opcode.name for opcode in opcode_table()}  # plugins' included
    assert all(row["commitment"] in {"close", "neutral", "open"} for row in rows)
    for row in rows:  # under VM control a row reads only where the VM chose a reading opcode
        assert (row["read"] is not None) == (row["opcode"] in {"READ_MEM", "SCAN"})
        if row["write"] is not None:
            assert row["opcode"] == "WRITE_MEM" and row["write"]["gate"] > 0.5
            assert all(0 <= slot < 4 for slot in row["write"]["slot"])


def test_trace_table_from_stdin_and_bad_input(trained_run: Path) -> None:
    lines = ("\n".join(json.dumps(e.to_json_dict()) for e in EVENTS) + "\n").encode()
    table = mosaic("trace", str(trained_run), stdin=lines)
    assert table.returncode == 0, table.stderr.decode()
    header, *body = table.stdout.decode().splitlines()
    assert header.split()[:3] == ["pos", "byte", "opcode"]
    assert len(body) == len(EventEncoder().encode_stream(EVENTS))
    assert mosaic("trace", str(trained_run), stdin=b"not json\n").returncode == 1
    assert mosaic("trace", str(trained_run), stdin=b"").returncode == 1
