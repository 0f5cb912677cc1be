"""The audit log detects every kind of tampering: edits, deletions, reordering (by the chain),
truncation and consistent re-hashing (by the signed checkpoint)."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.core.audit import (
    GENESIS_HASH,
    AuditHead,
    AuditLog,
    canonical_json,
    load_or_create_key,
    read_head,
    record_hash,
    verify_log,
)
from mosaic.core.errors import AuditError
from mosaic.core.keys import AUDIT_KEY_NAME, KEY_DIR_ENV, default_key_dir, key_path

KEY = b"k" * 32


def _log(tmp_path, n=5, key=KEY):
    log = AuditLog(tmp_path / "audit.jsonl", key=key, checkpoint_path=tmp_path / "ck" / "audit.ck")
    (tmp_path / "ck").mkdir(exist_ok=True)
    for i in range(n):
        log.append("tool.transition", {"tool": f"t{i}", "to": "active", "i": i})
    return log


def _lines(log):
    return log.path.read_bytes().splitlines(keepends=True)


def _write(log, lines):
    log.path.write_bytes(b"".join(lines))


def test_clean_log_verifies_with_signed_checkpoint(tmp_path):
    log = _log(tmp_path)
    report = log.verify()
    assert report.ok and report.records == 5
    assert report.checkpoint_checked and report.checkpoint_signature_checked
    records = list(log.records())
    assert records[0].prev == GENESIS_HASH
    assert [r.prev for r in records[1:]] == [r.hash for r in records[:-1]]


def test_edit_is_detected_at_the_edited_record(tmp_path):
    log = _log(tmp_path)
    lines = _lines(log)
    lines[2] = lines[2].replace(b'"to":"active"', b'"to":"rejected"')
    _write(log, lines)
    report = log.verify()
    assert not report.ok and report.first_bad == 3
    with pytest.raises(AuditError, match="record 3"):
        report.raise_if_bad()


def test_deletion_is_detected(tmp_path):
    log = _log(tmp_path)
    lines = _lines(log)
    del lines[1]
    _write(log, lines)
    report = log.verify()
    assert not report.ok and report.first_bad == 2


def test_reordering_is_detected(tmp_path):
    log = _log(tmp_path)
    lines = _lines(log)
    lines[1], lines[3] = lines[3], lines[1]
    _write(log, lines)
    report = log.verify()
    assert not report.ok and report.first_bad == 2


def test_truncation_is_detected_by_the_checkpoint_only(tmp_path):
    log = _log(tmp_path)
    _write(log, _lines(log)[:3])
    no_checkpoint = verify_log(log.path, checkpoint_path=tmp_path / "absent.ck")
    assert no_checkpoint.ok  # the chain alone cannot see a clean truncation ...
    report = log.verify()
    assert not report.ok and "truncated" in report.reason  # ... the checkpoint can


@pytest.mark.parametrize("damage", ["truncate", "rehash"])
def test_an_append_never_signs_over_a_truncated_or_rewritten_log(tmp_path, damage):
    log = _log(tmp_path)
    lines = _lines(log)
    damaged = lines[:3] if damage == "truncate" else _rehash(lines, edit_index=1)
    _write(log, damaged)
    assert not log.verify().ok
    with pytest.raises(AuditError, match="no longer reaches its signed checkpoint"):
        log.append("tool.transition", {"tool": "hide"})  # a new checkpoint would launder the damage
    with pytest.raises(AuditError, match="no longer reaches its signed checkpoint"):
        log.checkpoint()
    assert _lines(log) == damaged and not log.verify().ok  # nothing written, still reported
    # the same damage with a log whose checkpoint another key signed is refused as well
    other = AuditLog(log.path, key=b"o" * 32, checkpoint_path=log.checkpoint_path)
    with pytest.raises(AuditError, match="not signed by this key"):
        other.append("tool.transition", {"tool": "hide"})


def test_a_log_planted_as_a_symlink_is_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"")
    (tmp_path / "audit.jsonl").symlink_to(victim)
    log = AuditLog(tmp_path / "audit.jsonl", key=KEY)
    with pytest.raises(AuditError, match="symbolic link"):
        log.append("tool.transition", {"tool": "t"})
    assert victim.read_bytes() == b""


def test_a_log_planted_as_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "audit.jsonl")  # opened for reading and writing it would not block, but
    log = AuditLog(tmp_path / "audit.jsonl", key=KEY)  # its reads and appends are not a log's
    with pytest.raises(AuditError, match="not a regular file"):
        log.append("tool.transition", {"tool": "t"})


@pytest.mark.parametrize("last", [b"[" * 100_000 + b"\n", b"garbage\n"], ids=["deep", "garbage"])
def test_a_damaged_last_record_is_named_with_the_log(tmp_path, last):
    log = _log(tmp_path, n=2, key=None)
    with open(log.path, "ab") as handle:
        handle.write(last)
    with pytest.raises(AuditError, match="audit.jsonl: its last record is damaged"):
        log.append("tool.transition", {"tool": "t"})
    assert not verify_log(log.path).ok


def test_torn_last_line_is_detected(tmp_path):
    log = _log(tmp_path)
    data = log.path.read_bytes()
    log.path.write_bytes(data[:-10])
    report = log.verify()
    assert not report.ok and report.first_bad == 5
    with pytest.raises(AuditError, match="torn"):
        log.append("x", {})


def _rehash(lines, edit_index):
    """Rewrite the chain consistently after editing one record (what a careful attacker does)."""
    out, prev = [], GENESIS_HASH
    for i, line in enumerate(lines):
        raw = json.loads(line)
        if i == edit_index:
            raw["data"]["to"] = "rejected"
        raw["prev"] = prev
        body = {k: raw[k] for k in ("seq", "ts", "kind", "data", "prev")}
        raw["hash"] = record_hash(body)
        prev = raw["hash"]
        out.append(canonical_json(raw) + b"\n")
    return out


def test_consistent_rehash_is_detected_by_the_checkpoint_only(tmp_path):
    log = _log(tmp_path)
    _write(log, _rehash(_lines(log), edit_index=1))
    assert verify_log(log.path, checkpoint_path=tmp_path / "absent.ck").ok
    report = log.verify()
    assert not report.ok and "checkpoint" in report.reason


def test_forged_checkpoint_is_detected_with_the_key(tmp_path):
    log = _log(tmp_path)
    lines = _rehash(_lines(log), edit_index=1)
    _write(log, lines)
    head = json.loads(lines[-1])["hash"]
    forged = {"head": head, "records": 5, "size": sum(len(x) for x in lines), "ts": 0.0, "mac": "00" * 32}
    log.checkpoint_path.write_bytes(canonical_json(forged))
    unsigned = verify_log(log.path, checkpoint_path=log.checkpoint_path)
    assert unsigned.ok and not unsigned.checkpoint_signature_checked
    report = log.verify()
    assert not report.ok and "signature" in report.reason
    assert not verify_log(log.path, checkpoint_path=log.checkpoint_path, key=b"other" * 8).ok


@pytest.mark.parametrize("ts", ["NaN", "1e400", "-Infinity"])
def test_a_checkpoint_with_a_time_that_is_not_finite_is_malformed_and_named(tmp_path, ts):
    """Its signature cannot be checked (no canonical JSON): the error said so without the file."""
    log = _log(tmp_path)
    body = json.loads(log.checkpoint_path.read_text())
    log.checkpoint_path.write_text(json.dumps({**body, "ts": 0.5}).replace("0.5", ts))
    with pytest.raises(AuditError, match=rf"audit checkpoint {log.checkpoint_path} is malformed: ts .* is not a finite"):
        verify_log(log.path, checkpoint_path=log.checkpoint_path, key=KEY)


def test_appending_after_verification_continues_the_chain(tmp_path):
    log = _log(tmp_path, n=2)
    reopened = AuditLog(log.path, key=KEY, checkpoint_path=log.checkpoint_path)
    record = reopened.append("more", [1, 2])
    assert record.seq == 2
    assert reopened.verify().ok


def test_concurrent_appends_from_threads_keep_the_chain(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", key=KEY)

    def work(worker):
        for i in range(20):
            log.append("w", {"worker": worker, "i": i})

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = log.verify()
    assert report.ok and report.records == 80


def _append_from_process(path, key, n):
    log = AuditLog(path, key=key)
    for i in range(n):
        log.append("p", {"i": i})


def test_concurrent_appends_from_processes_keep_the_chain(tmp_path):
    path = tmp_path / "p.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_from_process, args=(path, KEY, 15)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    report = verify_log(path, key=KEY)
    assert report.ok and report.records == 45


def test_non_json_data_and_bad_kind_are_rejected(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    with pytest.raises(AuditError):
        log.append("x", {"nan": float("nan")})
    with pytest.raises(AuditError):
        log.append("", {})
    with pytest.raises(AuditError):
        log.append("x", {"obj": object()})
    with pytest.raises(AuditError):
        log.checkpoint()


def test_checkpoint_must_live_outside_the_log(tmp_path):
    with pytest.raises(AuditError, match="outside"):
        AuditLog(tmp_path / "a.jsonl", key=KEY, checkpoint_path=tmp_path / "a.jsonl")


def test_key_file_is_created_private_and_reused(tmp_path):
    key = load_or_create_key(tmp_path / "audit.key")
    assert len(key) == 32
    assert (tmp_path / "audit.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(tmp_path / "audit.key") == key
    (tmp_path / "short.key").write_bytes(b"abc")
    with pytest.raises(AuditError):
        load_or_create_key(tmp_path / "short.key")


def test_a_key_created_by_a_racing_process_is_never_seen_half_written(tmp_path, monkeypatch):
    """Two training runs starting at once both create the user's audit key. The one that loses the
    race must read the winner's whole key (it once read a freshly created, still empty file)."""
    import mosaic.core.keys as keys

    path = tmp_path / "audit.key"
    real_token_bytes = keys.secrets.token_bytes
    raced: list[bytes] = []

    def token_bytes_while_another_process_creates_the_key(n: int) -> bytes:
        if not raced:
            raced.append(b"")  # the other process runs its whole creation now
            raced[0] = load_or_create_key(path)
        return real_token_bytes(n)

    monkeypatch.setattr(keys.secrets, "token_bytes", token_bytes_while_another_process_creates_the_key)
    assert load_or_create_key(path) == raced[0]  # the loser reads the winner's key
    assert [p.name for p in tmp_path.iterdir()] == ["audit.key"]  # no temporary left behind
    assert path.stat().st_mode & 0o777 == 0o600


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(payloads=st.lists(json_values, min_size=1, max_size=4), flip=st.integers(min_value=0))
def test_any_payload_roundtrips_and_any_byte_flip_is_detected(tmp_path_factory, payloads, flip):
    tmp = tmp_path_factory.mktemp("prop")
    log = AuditLog(tmp / "a.jsonl", key=KEY)
    for payload in payloads:
        log.append("p", payload)
    assert [r.data for r in log.records()] == payloads
    assert log.verify().ok
    data = bytearray(log.path.read_bytes())
    index = flip % len(data)
    data[index] = (data[index] + 1) % 256
    log.path.write_bytes(bytes(data))
    assert not log.verify().ok


# --- anchoring (issue 17 item 9) -------------------------------------------------------------------


def _rewrite(log, n, key=b"attacker-key-without-the-real-one"):
    """Rewrite the whole chain consistently (the attacker has no key) and drop the checkpoint."""
    log.path.unlink()
    log.checkpoint_path.unlink()
    forged = AuditLog(log.path, key=None)
    for i in range(n):
        forged.append("tool.transition", {"tool": f"t{i}", "to": "active", "i": i, "forged": True})


def test_rewrite_and_deleted_checkpoint_fail_when_a_key_is_given(tmp_path):
    log = _log(tmp_path)
    _rewrite(log, 5)
    report = verify_log(log.path, key=KEY, checkpoint_path=log.checkpoint_path)
    assert not report.ok and "no signed checkpoint" in report.reason


def test_records_after_the_checkpoint_are_not_silently_covered(tmp_path):
    log = _log(tmp_path, n=3)
    AuditLog(log.path, key=None).append("tool.transition", {"tool": "smuggled"})
    keyed = verify_log(log.path, key=KEY, checkpoint_path=log.checkpoint_path)
    assert not keyed.ok and keyed.first_bad == 4 and "not covered" in keyed.reason
    unkeyed = verify_log(log.path, checkpoint_path=log.checkpoint_path)
    assert unkeyed.ok and unkeyed.unsigned_tail == 1 and "NOT covered" in unkeyed.render()


def test_published_head_detects_rewrite_truncation_and_rollback(tmp_path):
    log = _log(tmp_path, n=3)
    published = read_head(log.path, key=KEY, checkpoint_path=log.checkpoint_path)
    assert published.records == 3 and AuditHead.parse(published.token()) == published
    old_log, old_checkpoint = log.path.read_bytes(), log.checkpoint_path.read_bytes()
    for i in range(2):
        log.append("tool.transition", {"later": i})
    later = read_head(log.path, key=KEY, checkpoint_path=log.checkpoint_path)
    good = verify_log(log.path, key=KEY, checkpoint_path=log.checkpoint_path, expect_head=published)
    assert good.ok and good.expected_head_checked and "extends the published head" in good.render()

    # rollback: an older, correctly signed log and checkpoint pass every check but the head's
    log.path.write_bytes(old_log)
    log.checkpoint_path.write_bytes(old_checkpoint)
    assert verify_log(log.path, key=KEY, checkpoint_path=log.checkpoint_path).ok
    rolled = verify_log(log.path, key=KEY, checkpoint_path=log.checkpoint_path, expect_head=later)
    assert not rolled.ok and "rolled back" in rolled.reason

    # truncation of the log together with a matching (keyless) rewrite of the checkpoint
    truncated = verify_log(log.path, expect_head=later)
    assert not truncated.ok

    # consistent rewrite keeping the length
    _rewrite(log, 3)
    rewritten = verify_log(log.path, expect_head=published)
    assert not rewritten.ok and rewritten.first_bad == 3 and "published head" in rewritten.reason


@pytest.mark.parametrize("token", ["", "3", "3:xyz", "-1:" + "a" * 64, "3:" + "A" * 64, "1" * 30 + ":" + "a" * 64])
def test_malformed_heads_are_refused(token):
    with pytest.raises(AuditError):
        AuditHead.parse(token)


def test_keys_default_to_the_user_key_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert default_key_dir() == tmp_path / "config" / "mosaic" / "keys"
    monkeypatch.setenv(KEY_DIR_ENV, str(tmp_path / "keys"))
    path = key_path(AUDIT_KEY_NAME)
    assert path == tmp_path / "keys" / AUDIT_KEY_NAME
    load_or_create_key(path)
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert key_path(AUDIT_KEY_NAME, tmp_path / "explicit") == tmp_path / "explicit"


@pytest.mark.parametrize(
    "content", [b"[" * 100_000, b" " * (1 << 20), b'{"head": 1}', b"\xff",
                b'{"head": "h", "records": 1e999, "size": 1, "ts": 1, "mac": "m"}', None],
    ids=["deep", "huge", "fields", "bytes", "overflow", "directory"]
)
def test_hostile_checkpoint_files_are_audit_errors(tmp_path, content):
    log = _log(tmp_path, n=2)
    log.checkpoint_path.unlink()
    if content is None:
        log.checkpoint_path.mkdir()
    else:
        log.checkpoint_path.write_bytes(content)
    with pytest.raises(AuditError):
        verify_log(log.path, key=KEY, checkpoint_path=log.checkpoint_path)
    with pytest.raises(AuditError):
        log.append("tool.transition", {"tool": "t"})


def test_an_oversized_record_is_reported_not_read_whole(tmp_path):
    log = _log(tmp_path, n=1)
    with open(log.path, "ab") as handle:
        handle.write(b"x" * (2 << 20) + b"\n")
    report = verify_log(log.path, checkpoint_path=log.checkpoint_path)
    assert not report.ok and report.first_bad == 2 and "longer than" in report.reason


@pytest.mark.parametrize("edit", [(b"1.5", b"1e999"), (b'"ok"', b'"\\ud800"')], ids=["infinity", "lone-surrogate"])
def test_an_edit_that_breaks_canonical_json_is_a_bad_record_not_an_exception(tmp_path, edit):
    log = AuditLog(tmp_path / "a.jsonl", key=KEY)
    log.append("p", {"x": 1.5, "s": "ok"})
    log.append("p", {})
    log.path.write_bytes(log.path.read_bytes().replace(*edit, 1))
    report = log.verify()
    assert not report.ok and report.first_bad == 1
