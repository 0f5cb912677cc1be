"""A tamper-evident, append-only audit log: hash-chained JSONL plus signed checkpoints.

Each line of the log is one record ``{"seq", "ts", "kind", "data", "prev", "hash"}`` where
``hash = SHA-256(RECORD_DOMAIN || canonical_json(record without "hash"))`` and ``prev`` is the
previous record's hash (``GENESIS_HASH`` for the first). Canonical JSON is compact, key-sorted,
UTF-8, NaN-free. The domain prefixes keep a record hash from ever colliding with a checkpoint MAC
or any other SHA-256 the toolkit computes.

The chain alone detects editing, deleting or reordering records; it cannot detect truncation at
the end or an attacker who rewrites the whole chain consistently. For those, a *checkpoint*
(head hash + record count + byte size, HMAC-SHA256 under a key kept outside the log) is stored in
a separate file: a truncated log no longer reaches the checkpoint's size, and a re-hashed log no
longer has the checkpointed head at that position. With a key, verification also refuses a
missing checkpoint (deleted to hide a rewrite) and records appended after the checkpoint (not
covered by any signature). What no file beside the log can detect is a rollback of log and
checkpoint together to an older signed state; for that, publish the *head* (record count and last
hash, ``AuditHead``) somewhere the log's writer cannot change, and verify against it
(``expect_head``): a rewritten, truncated or rolled-back log no longer extends the published head.

Appends take a process-local lock and an exclusive ``flock`` on the log, re-read the head from the
file (so several processes can append to one log), write one line and ``fsync`` it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from mosaic.core.atomic import atomic_write_bytes, open_plain_file, read_plain_file
from mosaic.core.audit_head import AuditHead as AuditHead  # re-exported
from mosaic.core.audit_head import AuditReport as AuditReport  # re-exported
from mosaic.core.errors import AuditError, NotPlainFileError
from mosaic.core.keys import load_or_create_key as load_or_create_key  # re-exported

RECORD_DOMAIN = b"mosaic.audit.record.v1\x00"
CHECKPOINT_DOMAIN = b"mosaic.audit.checkpoint.v1\x00"
GENESIS_HASH = hashlib.sha256(b"mosaic.audit.genesis.v1\x00").hexdigest()
RECORD_FIELDS = ("seq", "ts", "kind", "data", "prev", "hash")
MAX_RECORD_BYTES = 1 << 20
MAX_CHECKPOINT_BYTES = 64 * 1024


def canonical_json(value: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON; rejects NaN/infinity so every value has one encoding."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit data is not canonical JSON: {exc}") from exc


def record_hash(body: Mapping[str, Any]) -> str:
    """The hash of a record body (every field but ``hash``)."""
    return hashlib.sha256(RECORD_DOMAIN + canonical_json(dict(body))).hexdigest()


@attrs.frozen
class AuditRecord:
    """One verified-or-about-to-be-written line of the log."""

    seq: int
    ts: float
    kind: str
    data: Any
    prev: str
    hash: str

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "kind": self.kind, "data": self.data, "prev": self.prev}

    def to_line(self) -> bytes:
        return canonical_json({**self.body(), "hash": self.hash}) + b"\n"


@attrs.frozen
class AuditCheckpoint:
    """The signed head of a log: its last hash, how many records and bytes it had."""

    head: str
    records: int
    size: int
    ts: float
    mac: str

    def signed_body(self) -> dict[str, Any]:
        return {"head": self.head, "records": self.records, "size": self.size, "ts": self.ts}

    @staticmethod
    def mac_for(body: Mapping[str, Any], key: bytes) -> str:
        return hmac.new(key, CHECKPOINT_DOMAIN + canonical_json(dict(body)), hashlib.sha256).hexdigest()


def _parse_record(line: bytes, number: int | str) -> AuditRecord:
    try:
        raw = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise AuditError(f"record {number}: not JSON ({str(exc)[:200]})") from None
    if not isinstance(raw, dict) or sorted(raw) != sorted(RECORD_FIELDS):
        raise AuditError(f"record {number}: expected exactly the fields {', '.join(RECORD_FIELDS)}")
    seq, ts, kind, prev, digest = raw["seq"], raw["ts"], raw["kind"], raw["prev"], raw["hash"]
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise AuditError(f"record {number}: seq must be an integer")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts):
        raise AuditError(f"record {number}: ts must be a finite number")
    if not isinstance(kind, str) or not isinstance(prev, str) or not isinstance(digest, str):
        raise AuditError(f"record {number}: kind, prev and hash must be strings")
    return AuditRecord(seq=seq, ts=ts, kind=kind, data=raw["data"], prev=prev, hash=digest)


def default_checkpoint_path(log_path: str | os.PathLike[str]) -> Path:
    """Where a log's checkpoint lives unless told otherwise: a sibling file, never the log itself."""
    log_path = Path(log_path)
    return log_path.with_name(log_path.name + ".checkpoint.json")


def _open_log(path: Path) -> BinaryIO:
    """The log for reading: a regular file only (a FIFO would block the verifier for ever)."""
    try:
        return os.fdopen(open_plain_file(path, os.O_RDONLY, follow_links=True), "rb")
    except NotPlainFileError as exc:
        raise AuditError(f"audit log {exc}") from None


def _read_checkpoint(path: Path) -> AuditCheckpoint | None:
    if not path.exists():
        return None
    try:  # a FIFO planted as the checkpoint would block the read for ever
        data = read_plain_file(path, MAX_CHECKPOINT_BYTES)
    except NotPlainFileError as exc:
        raise AuditError(f"audit checkpoint {exc}") from None
    try:
        raw = json.loads(data)
        ts = float(raw["ts"])
        if not math.isfinite(ts):  # NaN or 1e400 has no canonical JSON: its signature cannot be checked
            raise ValueError(f"ts {raw['ts']!r} is not a finite time")
        return AuditCheckpoint(
            head=str(raw["head"]),
            records=int(raw["records"]),
            size=int(raw["size"]),
            ts=ts,
            mac=str(raw["mac"]),
        )
    except (ValueError, KeyError, TypeError, RecursionError, OverflowError) as exc:
        raise AuditError(f"audit checkpoint {path} is malformed: {str(exc)[:200]}") from None


def verify_log(
    path: str | os.PathLike[str],
    *,
    key: bytes | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    expect_head: AuditHead | None = None,
) -> AuditReport:
    """Check the chain of ``path`` and, if a checkpoint exists, that the log still reaches it.

    With ``key`` the checkpoint must exist, carry a valid signature and cover every record; without
    it, an attacker able to write the checkpoint file could forge one, which the report says. With
    ``expect_head`` (published earlier) the log must still contain that head at its position.
    """
    log_path = Path(path)
    checkpoint_file = (
        Path(checkpoint_path) if checkpoint_path is not None else default_checkpoint_path(log_path)
    )
    if not log_path.exists():
        raise AuditError(f"audit log {log_path} does not exist")

    def bad(number: int | None, reason: str, count: int) -> AuditReport:
        return AuditReport(str(log_path), count, ok=False, first_bad=number, reason=reason)

    checkpoint = _read_checkpoint(checkpoint_file)
    prev = GENESIS_HASH
    count = 0
    offset = 0
    checkpoint_seen = False
    with _open_log(log_path) as handle:
        for number, line in enumerate(iter(lambda: handle.readline(MAX_RECORD_BYTES + 1), b""), start=1):
            if len(line) > MAX_RECORD_BYTES:
                return bad(number, f"record longer than {MAX_RECORD_BYTES} bytes", count)
            if not line.endswith(b"\n"):
                return bad(number, "incomplete last line (torn write or truncation)", count)
            try:
                record = _parse_record(line, number)
            except AuditError as exc:
                return bad(number, str(exc), count)
            if record.seq != number - 1:
                return bad(
                    number,
                    f"sequence number {record.seq}, expected {number - 1} (deleted or reordered)",
                    count,
                )
            if record.prev != prev:
                return bad(
                    number,
                    "prev does not match the previous record's hash (edited, deleted or reordered)",
                    count,
                )
            try:
                digest = record_hash(record.body())
            except AuditError:  # e.g. an edit turned a number into infinity or a string into a lone surrogate
                return bad(number, "the record's content is not canonical JSON (edited)", count)
            if digest != record.hash:
                return bad(number, "hash does not match the record's content (edited)", count)
            if line != record.to_line():
                return bad(number, "line is not in canonical form (edited)", count)
            prev = record.hash
            count = number
            offset += len(line)
            if expect_head is not None and number == expect_head.records and record.hash != expect_head.hash:
                return bad(number, "record differs from the published head (log rewritten or rolled back)", count)
            if checkpoint is not None and number == checkpoint.records:
                checkpoint_seen = True
                if record.hash != checkpoint.head or offset != checkpoint.size:
                    return bad(number, "record differs from the signed checkpoint (log rewritten)", count)
    head = AuditHead(count, prev)
    if expect_head is not None:
        if count < expect_head.records:
            return bad(
                None,
                f"log has {count} records but the published head is at record {expect_head.records} "
                "(truncated or rolled back)",
                count,
            )
        if expect_head.records == 0 and expect_head.hash != GENESIS_HASH:
            return bad(None, "the published head of an empty log must be the genesis hash", count)
    checked_head = expect_head is not None
    if checkpoint is None:
        if key is not None:
            return bad(
                None,
                f"a key was given but there is no signed checkpoint {checkpoint_file} (deleted to hide a rewrite?)",
                count,
            )
        return AuditReport(str(log_path), count, ok=True, head=head, expected_head_checked=checked_head)
    if checkpoint.records == 0:
        checkpoint_seen = checkpoint.head == GENESIS_HASH and checkpoint.size == 0
    if not checkpoint_seen:
        return bad(
            None, f"log has {count} records but the checkpoint covers {checkpoint.records} (truncated)", count
        )
    signature_checked = False
    if key is not None:
        expected = AuditCheckpoint.mac_for(checkpoint.signed_body(), key)
        if not hmac.compare_digest(expected, checkpoint.mac):
            return bad(
                None, f"checkpoint {checkpoint_file} has an invalid signature (forged, or wrong key)", count
            )
        signature_checked = True
        if count > checkpoint.records:
            return bad(
                checkpoint.records + 1,
                f"records {checkpoint.records + 1} to {count} are not covered by the signed checkpoint "
                "(appended without the key, or a crash before signing)",
                count,
            )
    return AuditReport(
        str(log_path),
        count,
        ok=True,
        checkpoint_checked=True,
        checkpoint_signature_checked=signature_checked,
        head=head,
        unsigned_tail=count - checkpoint.records,
        expected_head_checked=checked_head,
    )


def read_head(
    path: str | os.PathLike[str],
    *,
    key: bytes | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
) -> AuditHead:
    """The head of a verified log (raises ``AuditError`` if the log fails verification)."""
    report = verify_log(path, key=key, checkpoint_path=checkpoint_path).raise_if_bad()
    if report.head is None:
        raise AuditError(f"audit log {path}: verification returned no head")
    return report.head


class AuditLog:
    """Append records to a hash-chained JSONL log; optionally sign a checkpoint after each append.

    ``key`` (bytes, e.g. from ``load_or_create_key``) enables checkpoints; ``checkpoint_every``
    is how many appends go between automatic checkpoints (0 turns them off).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1,
        clock: Any = time.time,
    ) -> None:
        if checkpoint_every < 0:
            raise AuditError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
        self.path = Path(path)
        self.checkpoint_path = (
            Path(checkpoint_path) if checkpoint_path is not None else default_checkpoint_path(self.path)
        )
        if self.checkpoint_path.resolve() == self.path.resolve():
            raise AuditError("the checkpoint must be stored outside the log it signs")
        self._key = key
        self._checkpoint_every = checkpoint_every if key is not None else 0
        self._clock = clock
        self._lock = threading.Lock()
        self._appends_since_checkpoint = 0

    def append(self, kind: str, data: Any) -> AuditRecord:
        """Append one record (under a lock, fsync'd) and return it."""
        if not isinstance(kind, str) or not kind:
            raise AuditError(f"audit record kind must be a non-empty string, got {kind!r}")
        canonical_json(data)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._check_reaches_checkpoint(fd)
                seq, prev = self._read_head(fd)
                body = {"seq": seq, "ts": float(self._clock()), "kind": kind, "data": data, "prev": prev}
                record = AuditRecord(**body, hash=record_hash(body))
                line = record.to_line()
                written = os.write(fd, line)
                if written != len(line):
                    raise AuditError(f"short write to audit log {self.path}: {written} of {len(line)} bytes")
                os.fsync(fd)
                self._appends_since_checkpoint += 1
                if self._checkpoint_every and self._appends_since_checkpoint >= self._checkpoint_every:
                    self._write_checkpoint(record.hash, seq + 1, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        return record

    def checkpoint(self) -> AuditCheckpoint:
        """Sign and store the current head now."""
        if self._key is None:
            raise AuditError("cannot sign an audit checkpoint without a key")
        with self._lock:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._check_reaches_checkpoint(fd)
                seq, head = self._read_head(fd)
                return self._write_checkpoint(head, seq, os.fstat(fd).st_size)
            finally:
                os.close(fd)

    def records(self) -> Iterator[AuditRecord]:
        """Read every record (parsing only; call ``verify`` to check the chain)."""
        if not self.path.exists():
            return
        with _open_log(self.path) as handle:
            for number, line in enumerate(handle, start=1):
                yield _parse_record(line, number)

    def verify(self) -> AuditReport:
        return verify_log(self.path, key=self._key, checkpoint_path=self.checkpoint_path)

    def _write_checkpoint(self, head: str, records: int, size: int) -> AuditCheckpoint:
        if self._key is None:
            raise AuditError("cannot sign an audit checkpoint without a key")
        ts = float(self._clock())
        body: dict[str, Any] = {"head": head, "records": records, "size": size, "ts": ts}
        checkpoint = AuditCheckpoint(head, records, size, ts, mac=AuditCheckpoint.mac_for(body, self._key))
        atomic_write_bytes(self.checkpoint_path, canonical_json({**body, "mac": checkpoint.mac}) + b"\n", mode=0o600)
        self._appends_since_checkpoint = 0
        return checkpoint

    def _open(self) -> int:
        """The log, for appending; one planted as a symbolic link or a FIFO is refused, never followed."""
        try:
            return open_plain_file(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except NotPlainFileError as exc:
            raise AuditError(f"audit log: {exc}; a log is a plain file") from None

    def _check_reaches_checkpoint(self, fd: int) -> None:
        """Refuse to extend (and so re-sign) a log whose record at the signed checkpoint's size is no
        longer the signed head: the next checkpoint would hide a truncation or rewrite for good."""
        checkpoint = _read_checkpoint(self.checkpoint_path) if self._key is not None else None
        if checkpoint is None or self._key is None:
            return
        if not hmac.compare_digest(checkpoint.mac, AuditCheckpoint.mac_for(checkpoint.signed_body(), self._key)):
            raise AuditError(f"audit checkpoint {self.checkpoint_path} is not signed by this key; "
                             f"run `mosaic audit verify {self.path}` before appending")
        start = max(0, checkpoint.size - MAX_RECORD_BYTES)
        window = os.pread(fd, checkpoint.size - start, start) if checkpoint.size <= os.fstat(fd).st_size else b""
        try:
            last = _parse_record(window[:-1].rsplit(b"\n", 1)[-1], checkpoint.records) if window[-1:] == b"\n" else None
        except AuditError:
            last = None
        if checkpoint.records and (last is None or (last.seq, last.hash) != (checkpoint.records - 1, checkpoint.head)):
            raise AuditError(f"audit log {self.path} no longer reaches its signed checkpoint ({checkpoint.records} "
                             f"records, {checkpoint.size} bytes): it was truncated or rewritten; run `mosaic audit "
                             f"verify {self.path}`")

    def _read_head(self, fd: int) -> tuple[int, str]:
        """(next seq, last hash) from the file's final line; refuses to extend a torn log."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, GENESIS_HASH
        chunk = 4096
        tail = b""
        position = size
        while True:
            step = min(chunk, position)
            position -= step
            tail = os.pread(fd, step, position) + tail
            if tail.count(b"\n") >= 2 or position == 0:
                break
            chunk *= 2
        if not tail.endswith(b"\n"):
            raise AuditError(
                f"audit log {self.path} ends in a torn line; verify and repair it before appending"
            )
        last_line = tail[:-1].rsplit(b"\n", 1)[-1] + b"\n"
        try:
            record = _parse_record(last_line, tail.count(b"\n") if position == 0 else "last")
        except AuditError as exc:
            raise AuditError(f"audit log {self.path}: its last record is damaged ({exc}); verify and repair it "
                             "before appending") from None
        return record.seq + 1, record.hash
