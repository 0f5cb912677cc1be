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
