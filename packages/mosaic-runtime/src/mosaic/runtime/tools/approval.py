"""Authenticated approvals: an HMAC over a tool's name and definition hash under the approval key.

The key lives in the user key directory (``mosaic.core.keys``), never in the registry directory,
so whoever can edit ``tools.json`` cannot approve a tool; any edit of the definition changes its
hash and voids the approval.
"""

from __future__ import annotations

import hashlib
import hmac

from mosaic.core.audit import canonical_json
from mosaic.runtime.tools.errors import ToolStateError

APPROVAL_DOMAIN = b"mosaic.tool.approval.v1\x00"


def approval_mac(key: bytes, name: str, digest: str) -> str:
    """HMAC-SHA256 binding an approval to a tool name and its definition hash."""
    message = APPROVAL_DOMAIN + canonical_json({"name": name, "hash": digest})
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_approval(key: bytes | None, name: str, approved_hash: str | None, mac: str | None, current: str) -> None:
    """Raise ``ToolStateError`` unless ``current`` is the approved hash and ``mac`` proves the approval."""
    if approved_hash != current:
        raise ToolStateError(f"tool {name!r}: approval is void (definition changed since approval)")
    if key is None:
        raise ToolStateError(f"tool {name!r}: no approval key is configured; its approval cannot be checked")
    if not hmac.compare_digest(approval_mac(key, name, current), str(mac or "")):
        raise ToolStateError(
            f"tool {name!r}: its approval is not signed by this registry's approval key "
            "(forged in tools.json, or approved under another key)"
        )
