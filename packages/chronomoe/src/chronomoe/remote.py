"""Remote experts: a ``layer.moe`` whose router, clocks and kernel stay local while some of its experts
are served by another process (``python -m chronomoe.remote_server``) over gRPC.

Sovereignty: the layer's identity (router, β, coherence clocks, lifecycle, kernel) never leaves the
process; only capability (expert forward passes) is shared. When the server cannot be reached —
connection refused, a deadline passed, a malformed reply — the layer

1. masks the remote columns (``ExpertColumns.reachable``), so routing runs among the reachable
   experts; the step that found the failure is routed again at once, so no token's mixture loses a
   remote expert's share silently;
2. emits ``Degraded`` ("still here, can't reach experts e…"; the event type keepers use);
3. keeps training or serving, and probes the server (``Describe``) after ``retry_initial_s``,
   doubling to ``retry_max_s`` between failed probes;
4. restores the columns and emits ``Restored`` when a probe answers.

A step never waits on the server longer than ``probe_timeout_s + call_timeout_s`` per layer.

Gradients: remote experts are served **frozen** (inference-only capability). Their outputs enter
the mixture as constants: the gates, hence the router, still get gradients through them (the router
learns how much to use a remote expert), and the local experts train as usual, but no gradient
crosses the wire. Backward over the wire would make a training step depend on the server's
liveness twice and put the server's weights under another process's optimizer; training remote
weights is the server owner's business.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from chronomoe.config import RemoteExpertsConfig
from chronomoe.experts import SwiGLUExperts
from chronomoe.remote_wire import (
    DESCRIBE,
    FORWARD,
    RemoteExpertError,
    channel_options,
    decode,
    decode_description,
    encode,
    method,
)
from mosaic.core.errors import ModelError
from mosaic.core.events.envelope import EventEnvelope

DEGRADED = "Degraded"  # the type keepers emit (chronomoe.keepers.DEGRADED)
RESTORED = "Restored"
SENDER = "chronomoe.remote"


class ExpertsUnreachable(RemoteExpertError):
    """The expert server did not answer a forward call; its columns are now masked."""


def expert_names(columns: Sequence[int]) -> str:
    return ", ".join(f"e{c}" for c in columns)


class RemoteExperts:
    """The client of one expert server: its columns' reachability, calls with deadlines, probes with
    backoff, and the events. ``clock`` is injectable for tests."""

    def __init__(
        self,
        config: RemoteExpertsConfig,
        d_model: int,
        *,
        on_event: Callable[[EventEnvelope], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import grpc
        except ImportError as exc:
            raise ModelError("remote experts need gRPC: pip install 'chronomoe[remote]'") from exc
        self._grpc = grpc
        self.config, self.d_model, self.clock = config, d_model, clock
        self.on_event = on_event
        self.events: collections.deque[EventEnvelope] = collections.deque(maxlen=256)
        self.up = False
        self.known = False  # whether the server has answered or failed once (no event for the start)
        self.delay = config.retry_initial_s
        self.next_probe = clock()  # probe at the first forward
        self.down_since: float | None = None
        self.reason = "not contacted yet"
        self.calls = self.failures = 0
        self._connect()

    def _connect(self) -> None:
        self.channel = self._grpc.insecure_channel(self.config.address, options=channel_options())
        self._forward: Any = self.channel.unary_unary(method(FORWARD))
        self._describe: Any = self.channel.unary_unary(method(DESCRIBE))

    def close(self) -> None:
        self.channel.close()

    def refresh(self) -> bool:
        """Probe the server when it is down and its backoff has passed; returns whether it is up."""
        if self.up or self.clock() < self.next_probe:
            return self.up
        try:
            n_experts, d_model = decode_description(self._describe(b"", timeout=self.config.probe_timeout_s))
        except (self._grpc.RpcError, RemoteExpertError) as exc:
            self._failed(self._why(exc))
            return False
        if d_model != self.d_model or n_experts < len(self.config.experts):
            self._failed(
                f"incompatible server: it serves {n_experts} experts of width {d_model}, the layer needs "
                f"{len(self.config.experts)} of width {self.d_model}"
            )
            return False
        was_down, self.up, self.known = self.known, True, True
        self.delay = self.config.retry_initial_s
        if was_down:
            down_s = None if self.down_since is None else round(self.clock() - self.down_since, 3)
            self._emit(
                RESTORED,
                f"experts {expert_names(self.config.experts)} are back",
                {"down_s": down_s, "action": "columns unmasked; routing over every expert again"},
            )
        self.down_since = None
        return True

    def forward(self, slots: torch.Tensor, server_index: torch.Tensor) -> torch.Tensor:
        """``slots (R, C, D)`` through the server's experts ``server_index (R,)`` → ``(R, C, D)``
        (float32, detached); raises :class:`ExpertsUnreachable` (after masking) on any failure."""
        self.calls += 1
        request = encode({"slots": slots.detach().float(), "experts": server_index.long()})
        try:
            reply = self._forward(request, timeout=self.config.call_timeout_s)
            out = decode(reply, {"out": (torch.float32, 3)})["out"]
            if out.shape != slots.shape:
                raise RemoteExpertError(
                    f"expert server answered {tuple(out.shape)} for slots {tuple(slots.shape)}"
                )
        except (self._grpc.RpcError, RemoteExpertError) as exc:
            self.failures += 1
            self._failed(self._why(exc))
            raise ExpertsUnreachable(
                f"can't reach experts {expert_names(self.config.experts)}: {self.reason}"
            ) from exc
        return out.to(slots.device)

    def _why(self, exc: Exception) -> str:
        if isinstance(exc, self._grpc.RpcError) and hasattr(exc, "code"):
            return f"{exc.code().name}: {exc.details()}"[:300]
        return str(exc)[:300]

    def _failed(self, reason: str) -> None:
        now = self.clock()
        if self.up or not self.known:  # a transition: report it once, then back off quietly
            self.down_since = now
            self._emit(
                DEGRADED,
                f"still here, can't reach experts {expert_names(self.config.experts)}",
                {
                    "reason": reason,
                    "action": "experts masked; routing among the reachable; "
                    f"probing again in {self.delay:g} s",
                },
            )
            self.next_probe = now + self.delay
        else:
            self.delay = min(2 * self.delay, self.config.retry_max_s)
            self.next_probe = now + self.delay
        self.up, self.known, self.reason = False, True, reason

    def _emit(self, kind: str, message: str, extra: dict[str, Any]) -> None:
        event = EventEnvelope(
            type=kind,
            sender=SENDER,
            payload={
                "component": "layer.moe.remote",
                "address": self.config.address,
                "experts": list(self.config.experts),
                "message": message,
                **extra,
            },
        )
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)


class HybridExperts(nn.Module):
    """``E`` SwiGLU experts of which ``config.experts`` are served remotely, the rest local
    parameters; the :class:`SwiGLUExperts` interface (``forward (E, C, D)``, ``expert``)."""

    local_index: torch.Tensor
    remote_index: torch.Tensor

    def __init__(
        self,
        n_experts: int,
        d_model: int,
        d_hidden: int,
        config: RemoteExpertsConfig,
        *,
        on_event: Callable[[EventEnvelope], None] | None = None,
    ) -> None:
        super().__init__()
        self.n_experts, self.d_model, self.d_hidden = n_experts, d_model, d_hidden
        self.remote_columns = list(config.experts)
        self.local_columns = [c for c in range(n_experts) if c not in set(config.experts)]
        self.local = SwiGLUExperts(len(self.local_columns), d_model, d_hidden)
        self.register_buffer(
            "local_index", torch.tensor(self.local_columns, dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "remote_index", torch.tensor(self.remote_columns, dtype=torch.long), persistent=False
        )
        self.client = RemoteExperts(config, d_model, on_event=on_event)

    def refresh(self) -> list[bool]:
        """Probe if due; ``(E,)`` whether each column can be routed to now."""
        up = self.client.refresh()
        remote = set(self.remote_columns)
        return [up or c not in remote for c in range(self.n_experts)]

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        local = self.local(slots.index_select(0, self.local_index))
        out = slots.new_zeros(slots.shape).index_copy(0, self.local_index, local.to(slots.dtype))
        if self.client.up:
            remote = self.client.forward(
                slots.index_select(0, self.remote_index), torch.arange(len(self.remote_columns))
            )
            out = out.index_copy(0, self.remote_index, remote.to(slots.dtype))
        return out

    def expert(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if index in self.local_columns:
            return self.local.expert(self.local_columns.index(index), x)
        if not self.client.up:
            return x.new_zeros(x.shape)  # masked: routed to with gate 0 only
        position = torch.tensor([self.remote_columns.index(index)])
        return self.client.forward(x.unsqueeze(0), position)[0].to(x.dtype)

    def weights(self) -> list[nn.Parameter]:
        raise ModelError(
            f"experts {expert_names(self.remote_columns)} are served remotely: structural edits "
            "(layer.chrono_lifecycle) need every expert of the layer local"
        )
