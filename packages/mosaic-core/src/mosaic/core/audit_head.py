"""The head of an audit log: what to publish to a witness the log's writer cannot change.

``mosaic audit head LOG`` prints it; ``verify_log(..., expect_head=...)`` (``mosaic audit verify
--expect-head``) checks that a log still contains it, which detects a rewrite, a truncation or a
rollback to an older signed state that no file beside the log can reveal.
"""

from __future__ import annotations

import re

import attrs

from mosaic.core.errors import AuditError

_HEAD_TOKEN = re.compile(r"([0-9]{1,18}):([0-9a-f]{64})")


@attrs.frozen
class AuditHead:
    """A log's head: how many records it has and the hash of the last (``GENESIS_HASH`` if none).
    Its token ``"<records>:<hash>"`` is what you publish to a witness the log's writer cannot change."""

    records: int
    hash: str

    def token(self) -> str:
        return f"{self.records}:{self.hash}"

    @classmethod
    def parse(cls, token: str) -> AuditHead:
        match = _HEAD_TOKEN.fullmatch(token.strip())
        if match is None:
            raise AuditError(f"audit head {token[:100]!r} is not '<records>:<64 hex digits>'")
        return cls(int(match.group(1)), match.group(2))


@attrs.frozen
class AuditReport:
    """What ``verify`` found. ``first_bad`` is the 1-based line of the first bad record, if any."""

    path: str
    records: int
    ok: bool
    first_bad: int | None = None
    reason: str | None = None
    checkpoint_checked: bool = False
    checkpoint_signature_checked: bool = False
    head: AuditHead | None = None
    unsigned_tail: int = 0
    expected_head_checked: bool = False

    def raise_if_bad(self) -> AuditReport:
        if not self.ok:
            where = f" at record {self.first_bad}" if self.first_bad is not None else ""
            raise AuditError(f"audit log {self.path} failed verification{where}: {self.reason}")
        return self

    def render(self) -> str:
        if not self.ok:
            where = f"record {self.first_bad}: " if self.first_bad is not None else ""
            return f"BAD {self.path}: {where}{self.reason}"
        if self.checkpoint_signature_checked:
            tail = "checkpoint signature verified"
        elif self.checkpoint_checked:
            tail = "checkpoint matched but its signature was NOT verified (no key given)"
        else:
            tail = "no checkpoint: truncation and consistent re-hashing are NOT detectable"
        if self.unsigned_tail:
            tail += f"; the last {self.unsigned_tail} records are NOT covered by the checkpoint"
        if self.expected_head_checked:
            tail += "; extends the published head"
        else:
            tail += "; rollback is NOT detectable without --expect-head"
        return f"OK {self.path}: {self.records} records, chain intact; {tail}"
