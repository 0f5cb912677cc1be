"""The kernel: every lasting write of the ChronoMoE system passes through it.

- **Write budgets per window**: at most ``write_budget`` ordinary writes and ``identity_budget``
  identity events are finalised per window; an over-budget write is *queued* (FIFO) and finalised
  in a later window when the budget allows.
- **Two-step commit** for identity events: ``propose`` in window N; at the first step of window
  N+1 the proposer's evidence is checked again and the event is finalised only if it persists,
  otherwise it lapses.
- **Monotonicity**: ordinary writes may be reverted; identity-grade events (scar, reflex
  crystallisation, epoch boundary) may not, except through :meth:`Kernel.revert_identity`, an
  explicit identity-grade operation that names who asks and why and is audited.
- **Capabilities**: a keeper's proposal is accepted only under its own capability and while it has
  made fewer than ``proposal_budget`` proposals this window (no flooding); refusals are audited.
- **Scars bind**: :meth:`Kernel.forbidden` names the finalised scar that forbids an edit, and the
  blocked proposal is audited.
- **Audit**: every proposal, queueing, finalisation, lapse and revert is appended to the
  tamper-evident audit log of :mod:`mosaic.core.audit` (hash chain + signed checkpoints).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from chronomoe.config import KernelConfig
from mosaic.core.audit import AuditLog
from mosaic.core.errors import MosaicError

IDENTITY_KINDS = ("scar", "reflex", "epoch")


class KernelError(MosaicError):
    """A write the kernel refuses (reverting an identity event, an unknown key)."""


@attrs.frozen
class Write:
    kind: str  # "edit" or one of IDENTITY_KINDS
    key: str  # unique name of what is written, e.g. "scar/layer0/prune"
    payload: dict
    window: int  # the window it was submitted in

    @property
    def identity(self) -> bool:
        return self.kind in IDENTITY_KINDS

    def to_json(self) -> dict:
        return attrs.asdict(self)


class Kernel:
    def __init__(self, config: KernelConfig, audit: AuditLog) -> None:
        self.config = config
        self.audit = audit
        self.window = 0
        self.used = {"write": 0, "identity": 0}  # budget spent in the current window
        self.pending: list[Write] = []  # identity proposals awaiting the next window
        self.queue: list[Write] = []  # finalisable writes waiting for budget
        self.finalised: dict[str, Write] = {}
        self.proposed_by: dict[str, int] = {}  # keeper -> proposals made in the current window
        # the trainer's check of a keeper proposal: the trusted payload, or why it is refused
        self.vet: Callable[[Any], dict[str, Any] | str] | None = None

    # --- submitting -----------------------------------------------------------------------------

    def write(self, kind: str, key: str, payload: dict) -> bool:
        """An ordinary (reversible) write: finalised now if the window's budget allows (True), else
        queued (False)."""
        if kind in IDENTITY_KINDS:
            raise KernelError(f"{kind} is an identity event: propose it, it cannot be written directly")
        return self._finalise_or_queue(Write(kind, key, payload, self.window))

    def propose(self, kind: str, key: str, payload: dict) -> bool:
        """Step one of an identity event; finalised in the next window if its evidence persists.
        False when the key is already pending, queued or final (nothing is recorded twice)."""
        if kind not in IDENTITY_KINDS:
            raise KernelError(
                f"only identity events ({', '.join(IDENTITY_KINDS)}) are proposed, got {kind!r}"
            )
        if key in self.finalised or any(w.key == key for w in self.pending + self.queue):
            return False
        write = Write(kind, key, payload, self.window)
        self.pending.append(write)
        self.audit.append("kernel.propose", write.to_json())
        return True

    def submit(self, capability: Any, proposal: Any) -> str:
        """A keeper's proposal (see :mod:`chronomoe.keepers`): refused, and the refusal audited,
        unless ``capability`` names that keeper and that kind and the keeper has proposals left this
        window; then ``vet`` (set by the trainer) replaces the keeper's payload with the trainer's
        own reading, or names why it refuses it; then an identity event is proposed (two-step) and
        anything else written (or queued over budget). Returns ``"refused"``, ``"proposed"``,
        ``"duplicate"`` (already proposed or final), ``"written"`` or ``"queued"``."""
        if proposal.keeper != capability.keeper or proposal.kind not in capability.may_propose:
            reason = (f"keeper {proposal.keeper!r} holds no capability for {proposal.kind!r}"
                      if proposal.keeper == capability.keeper else
                      f"proposal from {proposal.keeper!r} under {capability.keeper!r}'s capability")
            self.audit.append("kernel.refuse", {**proposal.to_json(), "reason": reason})
            return "refused"
        made = self.proposed_by.get(proposal.keeper, 0)
        if made >= self.config.proposal_budget:
            reason = f"keeper {proposal.keeper!r} spent its {self.config.proposal_budget} proposals of window {self.window}"
            self.audit.append("kernel.refuse", {**proposal.to_json(), "reason": reason})
            return "refused"
        self.proposed_by[proposal.keeper] = made + 1
        payload: Any = proposal.payload
        if self.vet is not None:
            payload = self.vet(proposal)
            if isinstance(payload, str):
                self.audit.append("kernel.refuse", {**proposal.to_json(), "reason": payload})
                return "refused"
        payload = {**payload, "keeper": proposal.keeper}
        if proposal.kind in IDENTITY_KINDS:
            return "proposed" if self.propose(proposal.kind, proposal.key, payload) else "duplicate"
        return "written" if self.write(proposal.kind, proposal.key, payload) else "queued"

    def revert(self, key: str) -> Write:
        write = self.finalised.get(key)
        if write is None:
            raise KernelError(f"nothing finalised under {key!r}")
        if write.identity:
            raise KernelError(f"{key} is an identity event ({write.kind}) and is irreversible")
        del self.finalised[key]
        self.audit.append("kernel.revert", write.to_json())
        return write

    def revert_identity(self, key: str, *, authority: str, reason: str) -> Write:
        """The identity-grade operation: undo a finalised identity event. ``authority`` (who asks)
        and ``reason`` are required and audited with the event; the caller undoes its effect."""
        write = self.finalised.get(key)
        if write is None or not write.identity:
            raise KernelError(f"no finalised identity event under {key!r}")
        if not authority.strip() or not reason.strip():
            raise KernelError(f"reverting identity event {key} needs an authority and a reason")
        del self.finalised[key]
        self.audit.append("identity.revert", {**write.to_json(), "authority": authority, "reason": reason})
        return write

    def forbidden(self, layer: int, action: str, expert: int | None) -> str | None:
        """The key of the finalised scar that forbids ``action`` on ``expert`` of ``layer`` (a scar
        without an expert forbids the kind on the whole layer), else None."""
        for key, write in self.finalised.items():
            p = write.payload
            if write.kind == "scar" and p.get("layer") == layer and p.get("action") == action \
                    and p.get("expert") in (None, expert):
                return key
        return None

    def block(self, scar: str, layer: int, action: str, expert: int | None, step: int) -> None:
        """Audit a proposal that the scar ``scar`` kept from being tried."""
        self.audit.append("kernel.block", {"scar": scar, "layer": layer, "action": action, "expert": expert,
                                           "step": step})

    # --- time -----------------------------------------------------------------------------------

    def advance(self, step: int, evidence: Callable[[Write], bool]) -> list[Write]:
        """Called every global step; on entering a new window, settle last window's proposals
        (``evidence(write)`` re-checks each) and drain the queue. Returns the writes finalised now."""
        window = step // self.config.window_steps
        if window == self.window:
            return []
        self.window = window
        self.used = {"write": 0, "identity": 0}
        self.proposed_by = {}
        finalised = []
        for write in self._take_queue():
            if self._finalise_or_queue(write):
                finalised.append(write)
        due, self.pending = (
            [w for w in self.pending if w.window < window],
            [w for w in self.pending if w.window >= window],
        )
        for write in due:
            if evidence(write):
                if self._finalise_or_queue(write):
                    finalised.append(write)
            else:
                self.audit.append("kernel.lapse", write.to_json())
        return finalised

    def _take_queue(self) -> list[Write]:
        queue, self.queue = self.queue, []
        return queue

    def _finalise_or_queue(self, write: Write) -> bool:
        budget = "identity" if write.identity else "write"
        limit = self.config.identity_budget if write.identity else self.config.write_budget
        if self.used[budget] >= limit:
            self.queue.append(write)
            self.audit.append("kernel.queue", write.to_json())
            return False
        self.used[budget] += 1
        self.finalised[write.key] = write
        self.audit.append(f"identity.{write.kind}" if write.identity else "kernel.write", write.to_json())
        return True

    def is_final(self, key: str) -> bool:
        return key in self.finalised

    # --- checkpoint -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "used": dict(self.used),
            "pending": [w.to_json() for w in self.pending],
            "queue": [w.to_json() for w in self.queue],
            "finalised": [w.to_json() for w in self.finalised.values()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window = int(state["window"])
        self.used = dict(state["used"])
        self.pending = [Write(**w) for w in state["pending"]]
        self.queue = [Write(**w) for w in state["queue"]]
        self.finalised = {w["key"]: Write(**w) for w in state["finalised"]}
