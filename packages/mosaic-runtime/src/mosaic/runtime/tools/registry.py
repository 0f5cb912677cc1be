"""The persistent tool registry: states, rate limit, hash-bound approval, auto-deprecation, audit.

State lives in ``<root>/tools.json``, rewritten atomically (temp file, fsync, rename, directory
fsync) under an exclusive ``flock`` so that a runtime and the ``mosaic tools`` CLI can share it and
a crash leaves either the old or the new state. Every state transition is appended to the
tamper-evident audit log (``mosaic.core.audit``) before the new state is written.

States: ``pending-approval`` (a capability above the default profile awaits a human),
``active``, ``deprecated`` (unused too long, or by hand) and ``rejected`` (invalid, rate-limited
or revoked). An approval records the definition hash and an HMAC of it under the approval key,
which lives in the user key directory (``mosaic.core.keys``), not in the registry: editing
``tools.json`` cannot approve anything, and a definition whose hash no longer matches (any edit to
source or manifest) cannot run.

Hostile submissions stay bounded: every submission, accepted or not, counts against a rate limit;
oversized definitions are refused without being stored; only the newest rejected records are kept;
names are NFKC and may not look like another tool's (``names``); text bound for the audit log is
escaped (no raw control or bidi characters).
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from mosaic.core.atomic import atomic_write_bytes, open_plain_file, read_plain_file
from mosaic.core.audit import AuditLog, canonical_json
from mosaic.core.errors import AuditError, MosaicError, NotPlainFileError, ToolError
from mosaic.runtime.tools.approval import approval_mac, check_approval
from mosaic.runtime.tools.definition import ToolDefinition, definition_hash
from mosaic.runtime.tools.display import escape_control
from mosaic.runtime.tools.errors import ToolStateError
from mosaic.runtime.tools.names import name_problems
from mosaic.runtime.tools.sandbox import SandboxResult

STATE_FILE = "tools.json"
FORMAT_VERSION = 1
MAX_STATE_BYTES = 64 * 2**20


class ToolState(str, enum.Enum):
    PENDING = "pending-approval"
    ACTIVE = "active"
    DEPRECATED = "deprecated"
    REJECTED = "rejected"


@attrs.frozen
class ToolRegistryConfig:
    """Creation rate limit and the idleness after which an active tool is deprecated."""

    max_creations_per_window: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    window_seconds: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0))
    deprecate_after_idle_calls: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    deprecate_after_idle_seconds: float = attrs.field(default=30 * 86400.0, validator=attrs.validators.gt(0))
    #: Every submission (accepted or rejected) counts; beyond this, submissions are not even stored.
    max_submissions_per_window: int = attrs.field(default=60, validator=attrs.validators.ge(1))
    #: Canonical JSON size above which a definition is refused and not stored.
    max_definition_bytes: int = attrs.field(default=96 * 1024, validator=attrs.validators.ge(1024))
    #: How many rejected records are kept (the oldest go first); the audit log keeps every one.
    max_rejected_records: int = attrs.field(default=50, validator=attrs.validators.ge(0))


@attrs.define
class ToolRecord:
    definition: ToolDefinition
    hash: str
    state: ToolState
    reasons: list[str] = attrs.field(factory=list)
    approved_hash: str | None = None
    approval_mac: str | None = None
    created: float = 0.0
    last_used: float = 0.0
    last_used_call: int = 0
    calls: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "definition": self.definition.to_json_dict(),
            "hash": self.hash,
            "state": self.state.value,
            "reasons": list(self.reasons),
            "approved_hash": self.approved_hash,
            "approval_mac": self.approval_mac,
            "created": self.created,
            "last_used": self.last_used,
            "last_used_call": self.last_used_call,
            "calls": self.calls,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolRecord:
        reasons = data.get("reasons", [])
        if not isinstance(reasons, list) or not all(isinstance(reason, str) for reason in reasons):
            raise TypeError("a tool's reasons must be a list of strings")
        for key in ("approved_hash", "approval_mac"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise TypeError(f"a tool's {key} must be a string")
        return cls(
            definition=ToolDefinition.from_json_dict(data["definition"]),
            hash=str(data["hash"]),
            state=ToolState(data["state"]),
            reasons=list(reasons),
            approved_hash=data.get("approved_hash"),
            approval_mac=data.get("approval_mac"),
            created=float(data["created"]),
            last_used=float(data["last_used"]),
            last_used_call=int(data["last_used_call"]),
            calls=int(data["calls"]),
        )


@attrs.define
class _State:
    tools: dict[str, ToolRecord] = attrs.field(factory=dict)
    creations: list[float] = attrs.field(factory=list)
    submissions: list[float] = attrs.field(factory=list)
    call_counter: int = 0


class ToolRegistry:
    """Tools by name. ``builders`` maps a definition's ``builder`` field ("python") to a builder
    with ``check(definition) -> list[str]`` and ``build(definition) -> callable tool``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        builders: Mapping[str, Any],
        audit: AuditLog,
        config: ToolRegistryConfig | None = None,
        clock: Callable[[], float] = time.time,
        approval_key: bytes | None = None,
    ) -> None:
        """``approval_key`` signs and checks approvals; without it tools that need approval can be
        neither approved nor run (keep it outside ``root``: see ``open_registry``)."""
        self.root = Path(root)
        self._approval_key = approval_key
        self.root.mkdir(parents=True, exist_ok=True)
        self.builders = dict(builders)
        self.audit = audit
        self.config = config or ToolRegistryConfig()
        self._clock = clock

    # --- queries ---------------------------------------------------------------------------------

    def get(self, name: str) -> ToolRecord:
        record = self._load().tools.get(name)
        if record is None:
            raise ToolStateError(f"no tool named {name!r}")
        return record

    def list(self) -> list[ToolRecord]:
        return [record for _, record in sorted(self._load().tools.items())]

    # --- transitions -----------------------------------------------------------------------------

    def submit(self, definition: ToolDefinition, *, actor: str = "model") -> ToolRecord:
        """Validate and register a definition. Returns its record, whose state says what happened:
        ``active``, ``pending-approval`` or ``rejected`` (with every reason)."""
        try:
            digest = definition_hash(definition)
        except AuditError as exc:  # a value without canonical JSON (NaN, infinity): name its field
            raise ToolError(f"tool {definition.name!r}: {'; '.join(definition.validate()) or exc}") from None
        size = len(canonical_json(definition.to_json_dict()))
        with self._locked() as state:
            now = self._clock()
            window = self.config.window_seconds
            state.creations = [t for t in state.creations if now - t < window]
            state.submissions = [t for t in state.submissions if now - t < window]
            reasons, store = [], True
            if len(state.submissions) >= self.config.max_submissions_per_window:
                reasons.append(
                    f"rate limit: {len(state.submissions)} submissions in the last {window:g} s "
                    f"(limit {self.config.max_submissions_per_window}); not stored"
                )
                store = False
            state.submissions.append(now)
            if size > self.config.max_definition_bytes:
                reasons.append(
                    f"size: the definition takes {size} bytes (limit {self.config.max_definition_bytes}); not stored"
                )
                store = False
            if len(state.creations) >= self.config.max_creations_per_window:
                reasons.append(
                    f"rate limit: {len(state.creations)} tools created in the last "
                    f"{window:g} s (limit {self.config.max_creations_per_window})"
                )
            existing = state.tools.get(definition.name)
            if existing is not None and existing.state in (ToolState.ACTIVE, ToolState.PENDING):
                reasons.append(
                    f"name: a tool named {definition.name!r} is already {existing.state.value}; "
                    "revoke or deprecate it first"
                )
            reasons += self._name_problems(state, definition.name)
            builder = self.builders.get(definition.builder)
            if not store:
                pass  # refused before any deeper (and costlier) check
            elif builder is None:
                reasons.append(
                    f"builder: no tool builder {definition.builder!r} is installed "
                    f"(known: {', '.join(sorted(self.builders)) or 'none'})"
                )
            else:
                reasons += builder.check(definition)
            if reasons:
                target = ToolState.REJECTED
            else:
                state.creations.append(now)
                target = ToolState.PENDING if definition.requires_approval() else ToolState.ACTIVE
                if target is ToolState.PENDING:
                    reasons = [f"needs approval: {', '.join(definition.approval_reasons())}"]
            record = ToolRecord(
                definition,
                digest,
                target,
                reasons,
                created=now,
                last_used=now,
                last_used_call=state.call_counter,
            )
            self._transition(definition.name, existing.state.value if existing else None, record, actor)
            if store and (existing is None or existing.state not in (ToolState.ACTIVE, ToolState.PENDING)):
                state.tools[definition.name] = record
                self._prune_rejected(state)
            return record

    @staticmethod
    def _name_problems(state: _State, name: str) -> builtins.list[str]:
        if not isinstance(name, str):
            return []
        others = [other for other, record in state.tools.items() if record.state is not ToolState.REJECTED]
        return name_problems(name, others)

    def _prune_rejected(self, state: _State) -> None:
        rejected = sorted(
            (record.created, name) for name, record in state.tools.items() if record.state is ToolState.REJECTED
        )
        for _, name in rejected[: max(len(rejected) - self.config.max_rejected_records, 0)]:
            del state.tools[name]

    def approve(self, name: str, expected_hash: str, *, actor: str = "human") -> ToolRecord:
        """Approve the definition whose hash is ``expected_hash``: the approver names what they read."""
        with self._locked() as state:
            record = self._require(state, name)
            current = definition_hash(record.definition)
            if record.state is not ToolState.PENDING:
                raise ToolStateError(f"tool {name!r} is {record.state.value}, not pending approval")
            if expected_hash != current or record.hash != current:
                raise ToolStateError(
                    f"tool {name!r}: approval refused, the definition's hash is {current}, "
                    f"not {expected_hash}"
                )
            if self._approval_key is None:
                raise ToolStateError(f"tool {name!r}: no approval key is configured; approvals cannot be signed")
            old = record.state.value
            record.state, record.approved_hash, record.reasons = ToolState.ACTIVE, current, []
            record.approval_mac = approval_mac(self._approval_key, name, current)
            record.last_used, record.last_used_call = self._clock(), state.call_counter
            self._transition(name, old, record, actor)
            return record

    def revoke(self, name: str, reason: str, *, actor: str = "human") -> ToolRecord:
        return self._set_state(name, ToolState.REJECTED, f"revoked: {reason}", actor)

    def deprecate(self, name: str, reason: str, *, actor: str = "human") -> ToolRecord:
        return self._set_state(name, ToolState.DEPRECATED, reason, actor)

    def sweep(self) -> builtins.list[str]:
        """Deprecate every active tool idle beyond the configured calls or seconds."""
        with self._locked() as state:
            return self._sweep(state, exclude=None)

    # --- calls -----------------------------------------------------------------------------------

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> SandboxResult:
        """Run an active tool in the sandbox. Refuses unknown, inactive or approval-void tools."""
        with self._locked() as state:
            record = self._require(state, name)
            if record.state is not ToolState.ACTIVE:
                raise ToolStateError(f"tool {name!r} is {record.state.value}; only active tools run")
            current = definition_hash(record.definition)
            if current != record.hash:
                raise ToolStateError(f"tool {name!r}: stored definition does not match its registered hash")
            if record.definition.requires_approval():
                check_approval(self._approval_key, name, record.approved_hash, record.approval_mac, current)
            builder = self.builders.get(record.definition.builder)
            if builder is None:
                raise ToolStateError(f"tool {name!r}: builder {record.definition.builder!r} is not installed")
            state.call_counter += 1
            record.calls += 1
            record.last_used, record.last_used_call = self._clock(), state.call_counter
            self._sweep(state, exclude=name)
            tool = builder.build(record.definition)
        return tool(arguments or {})

    # --- internals -------------------------------------------------------------------------------

    def _sweep(self, state: _State, exclude: str | None) -> builtins.list[str]:
        now, deprecated = self._clock(), []
        for name, record in sorted(state.tools.items()):
            if name == exclude or record.state is not ToolState.ACTIVE:
                continue
            idle_calls = state.call_counter - record.last_used_call
            idle_seconds = now - record.last_used
            if idle_calls >= self.config.deprecate_after_idle_calls:
                reason = f"unused for {idle_calls} calls"
            elif idle_seconds >= self.config.deprecate_after_idle_seconds:
                reason = f"unused for {idle_seconds:.0f} s"
            else:
                continue
            record.state, record.reasons = ToolState.DEPRECATED, [reason]
            self._transition(name, ToolState.ACTIVE.value, record, "registry")
            deprecated.append(name)
        return deprecated

    def _set_state(self, name: str, target: ToolState, reason: str, actor: str) -> ToolRecord:
        with self._locked() as state:
            record = self._require(state, name)
            old = record.state.value
            record.state, record.reasons = target, [reason]
            if target is not ToolState.ACTIVE:
                record.approved_hash = record.approval_mac = None
            self._transition(name, old, record, actor)
            return record

    @staticmethod
    def _require(state: _State, name: str) -> ToolRecord:
        record = state.tools.get(name)
        if record is None:
            raise ToolStateError(f"no tool named {name!r}")
        return record

    def _transition(self, name: str, old: str | None, record: ToolRecord, actor: str) -> None:
        # Names, reasons and actors are untrusted text: no raw control or bidi character may reach
        # the log, where a viewer would render it.
        self.audit.append(
            "tool.transition",
            {
                "tool": escape_control(str(name)),
                "from": old,
                "to": record.state.value,
                "hash": record.hash,
                "reasons": [escape_control(str(reason)) for reason in record.reasons],
                "actor": escape_control(str(actor)),
            },
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_State]:
        """Exclusive access to the state; writes it back atomically when the block succeeds."""
        path = self.root / ".lock"
        try:  # a lock planted as a symbolic link must not create or touch its target, nor a FIFO block
            descriptor = open_plain_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except NotPlainFileError as exc:
            raise ToolError(f"cannot lock tool registry {self.root}: {exc}") from None
        with os.fdopen(descriptor, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            state = self._load()
            yield state
            self._store(state)

    def _load(self) -> _State:
        path = self.root / STATE_FILE
        if not path.exists():
            return _State()
        try:  # a FIFO or directory planted as the state would block or break the read
            data = read_plain_file(path, MAX_STATE_BYTES)
        except NotPlainFileError as exc:
            raise ToolError(f"tool registry {exc}; refusing to read it") from None
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict) or not isinstance(raw.get("tools"), dict):
                raise TypeError("expected an object whose 'tools' is an object")
            if raw.get("version") != FORMAT_VERSION:
                raise ToolError(f"{path}: unsupported registry format {raw.get('version')!r}")
            tools = {name: ToolRecord.from_json(entry) for name, entry in raw["tools"].items()}
            for name, record in tools.items():  # listed under one name, run under another before
                if record.definition.name != name:
                    raise ValueError(f"the tool listed as {name!r} holds the definition of {record.definition.name!r}")
            return _State(
                tools=tools,
                creations=[float(t) for t in raw["creations"]],
                submissions=[float(t) for t in raw.get("submissions", [])],
                call_counter=int(raw["call_counter"]),
            )
        except (ValueError, KeyError, TypeError, RecursionError, OverflowError, MosaicError) as exc:
            raise ToolError(f"tool registry {path} is corrupt: {str(exc)[:500]}") from exc

    def _store(self, state: _State) -> None:
        data = {
            "version": FORMAT_VERSION,
            "call_counter": state.call_counter,
            "creations": state.creations,
            "submissions": state.submissions,
            "tools": {name: record.to_json() for name, record in sorted(state.tools.items())},
        }
        path = self.root / STATE_FILE
        atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode())


def installed_builders() -> dict[str, Any]:
    """Every ``tool_builder.*`` component from the plugin registry, built with its default config,
    keyed by the name a definition's ``builder`` field uses (``tool_builder.python`` -> "python")."""
    from mosaic.core.plugins import get_registry

    components = get_registry()
    return {cid.partition(".")[2]: components.build(cid, {}) for cid in components.ids("tool_builder")}


def open_registry(
    root: str | os.PathLike[str],
    *,
    key_file: str | os.PathLike[str] | None = None,
    approval_key_file: str | os.PathLike[str] | None = None,
    config: ToolRegistryConfig | None = None,
    builders: Mapping[str, Any] | None = None,
) -> ToolRegistry:
    """The registry at ``root`` with its audit log (``<root>/audit.jsonl``) and the installed tool
    builders (or ``builders``). The audit checkpoint key and the approval key come from
    ``key_file``/``approval_key_file`` or, by default, the user key directory
    (``mosaic.core.keys``), created on first use: never from the registry directory, whose
    writer must not be able to re-sign the log or approve tools."""
    from mosaic.core.keys import APPROVAL_KEY_NAME, AUDIT_KEY_NAME, key_path, load_or_create_key

    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a path component that is a file, a read-only disk
        raise ToolError(f"cannot create tool registry {root}: {exc.strerror or exc}") from None
    audit_key = load_or_create_key(key_path(AUDIT_KEY_NAME, key_file))
    approval_key = load_or_create_key(key_path(APPROVAL_KEY_NAME, approval_key_file))
    audit = AuditLog(root / "audit.jsonl", key=audit_key)
    chosen = builders if builders is not None else installed_builders()
    return ToolRegistry(root, builders=chosen, audit=audit, config=config, approval_key=approval_key)
