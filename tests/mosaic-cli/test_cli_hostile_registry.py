"""The tool registry, its audit log and event sessions against damaged, planted and oversized
files, through the installed ``mosaic``: one clear error and exit 1, never a traceback, nothing
written outside the registry or session, and a damaged log never re-signed."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from mosaic.runtime.testing.installed_mosaic import InstalledMosaic

TOOL = {"name": "adder", "description": "adds", "parameters": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "implementation": "def run(a, b):\n    return a + b\n"}
EVENT = b'{"type": "Message", "sender": "user", "payload": {"text": "hi"}}\n'


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> InstalledMosaic:
    return InstalledMosaic(tmp_path_factory.mktemp("plugin"))


def said(done) -> str:
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def refused(done, *fragments: str, status: int = 1) -> None:
    text = said(done)
    assert done.returncode == status and "Traceback" not in text, text
    for fragment in fragments:
        assert fragment in text, text


def tools(mosaic: InstalledMosaic, tmp_path: Path, *args: str | Path):
    return mosaic("tools", *args, "--key-file", tmp_path / "keys" / "audit.key",
                  "--approval-key-file", tmp_path / "keys" / "approval.key")


def add(mosaic: InstalledMosaic, tmp_path: Path, registry: Path, definition: dict):
    path = tmp_path / f"{definition['name']}.json"
    path.write_text(json.dumps(definition))
    return tools(mosaic, tmp_path, "add", path, "--registry", registry)


# --- the audit log --------------------------------------------------------------------------------


def test_a_truncated_log_is_never_re_signed_by_the_next_append(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    registry = tmp_path / "r"
    for name in ("adder", "adder2"):
        assert add(mosaic, tmp_path, registry, {**TOOL, "name": name}).returncode == 0
    log = registry / "audit.jsonl"
    truncated = log.read_bytes().splitlines(keepends=True)[0]
    log.write_bytes(truncated)
    refused(add(mosaic, tmp_path, registry, {**TOOL, "name": "adder3"}), "no longer reaches its signed checkpoint")
    assert log.read_bytes() == truncated
    verify = mosaic("audit", "verify", log, "--key-file", tmp_path / "keys" / "audit.key")
    refused(verify, "truncated")  # before, the append signed a fresh checkpoint and this said OK


@pytest.mark.parametrize("planted", ["audit.jsonl", ".lock"])
def test_registry_files_planted_as_symlinks_are_not_followed(mosaic: InstalledMosaic, tmp_path: Path,
                                                             planted: str) -> None:
    registry = tmp_path / "r"
    registry.mkdir()
    victim = tmp_path / "victim"
    (registry / planted).symlink_to(victim)
    refused(add(mosaic, tmp_path, registry, TOOL), "symbolic link")
    assert not victim.exists()


@pytest.mark.parametrize("content", ["[]", '{"version": 1, "tools": [], "creations": [], "call_counter": 0}',
                                     '{"version": 1, "tools": {}, "creations": [], "call_counter": 1e999}'],
                         ids=["list", "tools-list", "overflow"])
def test_a_registry_state_of_the_wrong_shape_is_corrupt(mosaic: InstalledMosaic, tmp_path: Path,
                                                        content: str) -> None:
    registry = tmp_path / "r"
    registry.mkdir()
    (registry / "tools.json").write_text(content)
    refused(tools(mosaic, tmp_path, "list", "--registry", registry), "is corrupt")
    assert (registry / "tools.json").read_text() == content


@pytest.mark.parametrize("capabilities,problem", [({"wall_seconds": 1e308}, "capabilities.wall_seconds: at most"),
                                                  ({"cpu_seconds": 10**26}, "capabilities.cpu_seconds: at most"),
                                                  ({"allowed_imports": "os"}, "expected a list of strings")])
def test_tool_definitions_are_bounded_when_added_not_when_run(mosaic: InstalledMosaic, tmp_path: Path,
                                                              capabilities: dict, problem: str) -> None:
    refused(add(mosaic, tmp_path, tmp_path / "r", {**TOOL, "capabilities": capabilities}), problem)


@pytest.mark.parametrize("default,kind", [("NaN", "number"), ('{"k": NaN}', "object")])
def test_a_default_that_is_not_json_is_named_by_its_field(mosaic: InstalledMosaic, tmp_path: Path, default: str,
                                                          kind: str) -> None:
    definition = tmp_path / "nan.json"
    definition.write_text(json.dumps(TOOL)[:-1] + f', "parameters": {{"a": {{"type": "{kind}", "required": false, '
                                                  f'"default": {default}}}}}}}')
    refused(tools(mosaic, tmp_path, "add", definition, "--registry", tmp_path / "r"), "parameters.a.default")


def test_a_key_or_registry_path_through_a_file_is_one_error(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("hi")
    refused(mosaic("tools", "list", "--registry", tmp_path / "r", "--key-file", tmp_path / "afile" / "audit.key"),
            "cannot create key file")
    refused(tools(mosaic, tmp_path, "list", "--registry", tmp_path / "afile" / "sub"), "cannot create tool registry")


def test_a_malformed_expected_head_is_a_usage_error(mosaic: InstalledMosaic, tmp_path: Path) -> None:
    registry = tmp_path / "r"
    assert add(mosaic, tmp_path, registry, TOOL).returncode == 0
    refused(mosaic("audit", "verify", registry / "audit.jsonl", "--expect-head", "garbage"), "--expect-head",
            status=2)


def test_an_over_long_preset_name_is_an_unknown_preset(mosaic: InstalledMosaic) -> None:
    refused(mosaic("presets", "show", "x" * 5000), "preset.")


# --- event sessions -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session_run(mosaic: InstalledMosaic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = mosaic.train(tmp_path_factory.mktemp("trained"))
    done = mosaic("events", run, "--session", "s1", "--max-new-bytes", "8", "--commitments", "event", stdin=EVENT)
    assert done.returncode == 0, said(done)
    return run


@pytest.fixture
def run(session_run: Path, tmp_path: Path) -> Path:
    copy_ = tmp_path / "run"
    shutil.copytree(session_run, copy_, symlinks=True)
    return copy_


def events(mosaic: InstalledMosaic, run: Path, session: str):
    return mosaic("events", run, "--session", session, "--max-new-bytes", "8", "--commitments", "event", stdin=EVENT)


@pytest.mark.parametrize("forge", [
    lambda p: p["counters"].update(device=5),  # an attribute of the session, overwritten
    lambda p: p["ledger"]["counters"].update(consume=1),  # a method of the ledger, overwritten
    lambda p: p.update(ledger={}),
    lambda p: p.update(recent=5),
    lambda p: p["counters"].update(responses="x"),
    lambda p: p["ledger"].update(open=[{"sender": "x", "event_id": "e", "opened_at": 1.0, "commitment_id": "c",
                                        "notes": 10**12}]),  # replayed note by note: hours
], ids=["session-attribute", "ledger-method", "ledger-empty", "recent", "counter-type", "notes"])
def test_a_forged_session_file_is_corrupt_and_left_as_it_is(mosaic: InstalledMosaic, run: Path, forge) -> None:
    path = run / "sessions" / "s1" / "session.pt"
    payload = copy.deepcopy(torch.load(path, weights_only=True))
    forge(payload)
    torch.save(payload, path)
    before = path.read_bytes()
    refused(events(mosaic, run, "s1"), "is corrupt")
    assert path.read_bytes() == before


def test_a_session_file_that_is_a_directory_is_refused_before_the_stream(mosaic: InstalledMosaic, run: Path) -> None:
    (run / "sessions" / "d1" / "session.pt").mkdir(parents=True)
    refused(events(mosaic, run, "d1"), "not a regular file")
    fresh = mosaic("events", run, "--session", "d1", "--fresh", "--max-new-bytes", "8", "--commitments", "event",
                   stdin=EVENT)
    refused(fresh, "not a regular file")  # --fresh would overwrite it: it failed only at the final save
    assert not (run / "sessions" / "d1" / "events.jsonl").exists()


def test_a_symlinked_session_log_is_not_appended_to(mosaic: InstalledMosaic, run: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x\n")
    log = run / "sessions" / "s1" / "events.jsonl"
    log.unlink()
    log.symlink_to(victim)
    refused(events(mosaic, run, "s1"), "symbolic link")
    assert victim.read_text() == "x\n"


def test_a_torn_session_log_line_is_cut_so_new_events_stand_alone(mosaic: InstalledMosaic, run: Path) -> None:
    log = run / "sessions" / "s1" / "events.jsonl"
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"x":')
    done = events(mosaic, run, "s1")
    assert done.returncode == 0, said(done)
    text = log.read_bytes()
    assert text.startswith(whole) and b'{"x":' not in text
    assert all(json.loads(line) for line in text.splitlines())  # before, the next event was glued on
