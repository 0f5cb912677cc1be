"""``mosaic events`` and ``mosaic live`` on a real MOSAIC model trained for two steps by
``mosaic run mosaic_commitment`` (a shell pipe, malformed input, invalid generations, SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mosaic.cli.main import cli
from mosaic.runtime.training.run import run_preset

SMALL = ["vars.d_model=16", "vars.n_layers=1", "vars.batch_size=2", "eval.samples=2", "eval.batch_size=2",
         "trainer.warmup_steps=1", "trainer.checkpoint_every=2",
         "curriculum.warmup_steps=0", "curriculum.cooldown_steps=0"]
NEGOTIATION = [
    '{"type": "Message", "sender": "agent", "payload": {"text": "I will look for that file"}, "commitment_id": "j1"}',
    "this line is not an event",
    '{"type": "Message", "sender": "agent", "payload": {"text": "Here is the content"}, "commitment_id": "j1"}',
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("agent_runs")
    summary = run_preset("mosaic_commitment", overrides=SMALL, steps=2, out=out, show_progress=False)
    return Path(summary["run_dir"])


def mosaic(*args: str, **options: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosaic.cli.main", *args], capture_output=True, **options)


def test_events_is_a_shell_filter_over_jsonl(run_dir: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(NEGOTIATION) + "\n")
    with events.open("rb") as stdin:
        done = mosaic("events", str(run_dir), "--trace-ledger", "--max-new-bytes", "24", "--fresh", stdin=stdin)
    assert done.returncode == 1, done.stderr.decode()  # one input line was not an event
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    types = [line["type"] for line in lines]
    # Each event is consumed (Ledger), answered (the model's event, or an Error for an invalid one);
    # the malformed line becomes an Error and the stream goes on to the end.
    assert types.count("Ledger") >= 2 and types[-1] == "LedgerSummary"
    input_errors = [line for line in lines if line["type"] == "Error" and line["payload"]["stage"] == "input"]
    assert [error["payload"]["line"] for error in input_errors] == [2]
    ledgers = [line["payload"] for line in lines if line["type"] == "Ledger" and line["payload"]["event_type"] == "Message"]
    assert [ledger["source"] for ledger in ledgers] == ["head", "head"]
    summary = lines[-1]["payload"]
    assert summary["lines"] == 3 and summary["input_errors"] == 1 and summary["responses"] == 2
    assert (run_dir / "sessions" / "default" / "session.pt").is_file()


def test_events_resumes_the_saved_session(run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["events", str(run_dir), "--session", "resume", "--fresh", "--max-new-bytes", "8",
                                "--respond-to", "Nothing"], input=NEGOTIATION[0] + "\n")
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, ["events", str(run_dir), "--session", "resume", "--max-new-bytes", "8",
                                 "--respond-to", "Nothing"], input=NEGOTIATION[2] + "\n")
    assert second.exit_code == 0, second.output
    first_summary = json.loads(first.output.splitlines()[-1])["payload"]
    second_summary = json.loads(second.output.splitlines()[-1])["payload"]
    assert second_summary["events_seen"] == first_summary["events_seen"] + 1
    assert second_summary["tokens_seen"] > first_summary["tokens_seen"]


def test_events_learns_adapters_online_on_the_real_model(run_dir: Path) -> None:
    checkpoint = sorted((run_dir / "checkpoints").iterdir())[-1]
    before = checkpoint.read_bytes()
    result = CliRunner().invoke(cli, ["events", str(run_dir), "--session", "online", "--fresh", "--max-new-bytes", "8",
                                      "--online-every", "64", "--respond-to", "Nothing"],
                                input="\n".join([NEGOTIATION[0], NEGOTIATION[2]]) + "\n")
    assert result.exit_code == 0, result.output
    adapters = torch.load(run_dir / "sessions" / "online" / "adapters.pt", weights_only=True)
    # the default targets: the head and every block's local mixer (bench_idle's measured set-up)
    mixers = {name for name in adapters["adapters"] if name.startswith("blocks.")}
    assert adapters["updates"] >= 1 and set(adapters["adapters"]) == {"head"} | mixers
    assert mixers and all(name.endswith((".mixer.up", ".mixer.down")) for name in mixers)
    assert adapters["adapters"]["head"]["lora_b"].abs().sum() > 0  # the adapter moved off zero
    assert checkpoint.read_bytes() == before  # the base checkpoint is untouched


def test_events_guards_online_updates_with_held_out_events(run_dir: Path, tmp_path: Path) -> None:
    guard = tmp_path / "heldout.jsonl"
    guard.write_text(NEGOTIATION[1] + "\n")
    bad = CliRunner().invoke(cli, ["events", str(run_dir), "--session", "guarded", "--fresh", "--online-every", "64",
                                   "--online-guard", str(guard)], input="")
    assert bad.exit_code != 0 and "line 1: not an event" in bad.output
    guard.write_text('{"type": "Message", "sender": "user", "payload": {"text": "Thanks, that is all"}}\n')
    lone = CliRunner().invoke(cli, ["events", str(run_dir), "--session", "guarded", "--fresh",
                                    "--online-guard", str(guard)], input="")
    assert lone.exit_code != 0 and "--online-every" in lone.output
    result = CliRunner().invoke(cli, ["events", str(run_dir), "--session", "guarded", "--fresh", "--max-new-bytes", "8",
                                      "--online-every", "64", "--respond-to", "Nothing", "--online-guard", str(guard)],
                                input="\n".join([NEGOTIATION[0], NEGOTIATION[2]]) + "\n")
    assert result.exit_code == 0, result.output
    adapters = torch.load(run_dir / "sessions" / "guarded" / "adapters.pt", weights_only=True)
    # every update was either kept within 5% of the held-out loss or rolled back
    assert adapters["updates"] + adapters["rollbacks"] >= 1


def test_events_rehearses_the_training_distribution_in_online_updates(run_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "rehearse.jsonl"
    old.write_text('{"type": "Message", "sender": "user", "payload": {"text": "Thanks, that is all"}}\n')
    lone = CliRunner().invoke(cli, ["events", str(run_dir), "--session", "rehearsed", "--fresh",
                                    "--online-rehearse", str(old)], input="")
    assert lone.exit_code != 0 and "--online-every" in lone.output
    stream = "\n".join([NEGOTIATION[0], NEGOTIATION[2]]) + "\n"
    plain = ["events", str(run_dir), "--session", "rehearsed", "--fresh", "--max-new-bytes", "8",
             "--online-every", "64", "--respond-to", "Nothing"]
    # without a file: the run's own training dataset is rehearsed (its first items)
    default = CliRunner().invoke(cli, plain, input=stream)
    assert default.exit_code == 0, default.output
    assert "sequences of the run's training dataset (dataset." in default.stderr
    own = torch.load(run_dir / "sessions" / "rehearsed" / "adapters.pt", weights_only=True)
    assert own["rehearsal_sequences"] >= 1
    result = CliRunner().invoke(cli, [*plain, "--online-rehearse", str(old)], input=stream)
    assert result.exit_code == 0, result.output
    assert "training dataset" not in result.stderr
    adapters = torch.load(run_dir / "sessions" / "rehearsed" / "adapters.pt", weights_only=True)
    assert adapters["updates"] >= 1 and adapters["config"]["anchor_weight"] > 0
    assert adapters["rehearsal_sequences"] == 1


def test_live_runs_bounded_ticks_and_saves(run_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["live", str(run_dir), "--session", "bounded", "--fresh", "--max-ticks", "6",
                                      "--poll-ms", "500", "--consolidate-every", "1", "--max-new-bytes", "8"],
                                input=NEGOTIATION[0] + "\n")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines[-1]["type"] == "Shutdown" and lines[-1]["payload"]["ticks"] == 6
    assert lines[-1]["payload"]["reason"] == "max_ticks" and lines[-1]["payload"]["external"] == 1
    # The external event is answered first. The barely trained model is out of band on its live
    # metrics (unsure of what it emits): each drive wakes it once
    # (then its refractory period holds) and the model responds to every impulse; then it idles.
    impulses = [index for index, line in enumerate(lines) if line["type"] == "Impulse"]
    assert impulses and len(impulses) == lines[-1]["payload"]["impulses"]
    assert {lines[i]["payload"]["metric"] for i in impulses} >= {"output_confidence"}
    for index in impulses:
        response = lines[index + 1]
        assert response["type"] not in ("Impulse", "Consolidation", "Shutdown")
        if response["type"] == "Error":
            assert response["payload"]["in_reply_to"] == lines[index]["id"]
    assert [line["type"] for line in lines][-2] == "Consolidation"
    assert (run_dir / "sessions" / "bounded" / "session.pt").is_file()


def test_live_shuts_down_gracefully_on_sigterm(run_dir: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mosaic.cli.main", "live", str(run_dir), "--session", "sigterm", "--fresh",
         "--poll-ms", "20", "--max-new-bytes", "8", "--consolidate-every", "1", "--no-stdin"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        first = process.stdout.readline()  # the loop is running once it has emitted something
        assert first, process.stderr.read().decode()
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err.decode()
    shutdown = json.loads(out.decode().splitlines()[-1])
    assert shutdown["type"] == "Shutdown" and shutdown["payload"]["reason"] == "SIGTERM"
    assert (run_dir / "sessions" / "sigterm" / "session.pt").is_file()


def test_live_refuses_a_drive_on_a_metric_it_never_reports(run_dir: Path, tmp_path: Path) -> None:
    drives = tmp_path / "unknown.yml"
    drives.write_text("drive.output_confidence:\n  metric: routing_entropy\n")  # the old, mislabelled name
    result = CliRunner().invoke(cli, ["live", str(run_dir), "--session", "unknown", "--fresh", "--max-ticks", "2",
                                      "--poll-ms", "0", "--no-stdin", "--drives", str(drives)])
    assert result.exit_code != 0
    assert "drive 'output_confidence' reads metric 'routing_entropy'" in result.output
    assert "never reports" in result.output and "memory_routing_entropy" in result.output


def test_live_reads_drive_bands_from_a_yaml_file(run_dir: Path, tmp_path: Path) -> None:
    drives = tmp_path / "drives.yml"
    drives.write_text("drive.memory_pressure:\n  band: {low: 0.99, high: 1.0}\n  refractory_s: 0\n")
    result = CliRunner().invoke(cli, ["live", str(run_dir), "--session", "drives", "--fresh", "--max-ticks", "2",
                                      "--poll-ms", "0", "--max-new-bytes", "4", "--no-stdin",
                                      "--drives", str(drives)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    impulses = [line["payload"] for line in lines if line["type"] == "Impulse"]
    # An empty memory is far below the demanded pressure, and with no refractory period it fires each tick.
    assert len(impulses) == 2 and {impulse["drive"] for impulse in impulses} == {"memory_pressure"}
    assert impulses[0]["value"] == 0.0 and impulses[0]["deviation"] < 0
    bad = tmp_path / "bad.yml"
    bad.write_text("- not a mapping\n")
    failed = CliRunner().invoke(cli, ["live", str(run_dir), "--max-ticks", "1", "--no-stdin", "--drives", str(bad)])
    assert failed.exit_code != 0 and "mapping of drive IDs" in failed.output


def test_events_stops_quietly_when_the_pipe_closes(run_dir: Path, tmp_path: Path) -> None:
    events = tmp_path / "many.jsonl"
    events.write_text("not an event\n" * 3000 + NEGOTIATION[0] + "\n")
    pipeline = subprocess.run(
        f"{sys.executable} -m mosaic.cli.main events {run_dir} --session pipe --fresh --input {events} | head -n 1",
        shell=True, capture_output=True, executable="/bin/bash",
    )
    assert pipeline.returncode == 0
    assert json.loads(pipeline.stdout.decode())["type"] == "Error"
    assert b"BrokenPipe" not in pipeline.stderr and b"Traceback" not in pipeline.stderr
    assert (run_dir / "sessions" / "pipe" / "session.pt").is_file()  # saved all the same
