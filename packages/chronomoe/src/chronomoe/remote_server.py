"""An expert server: SwiGLU experts another process's ``layer.moe`` routes to over gRPC.

``python -m chronomoe.remote_server --port 0 --n-experts 2 --d-model 32 [--d-hidden 64]
[--seed 0 | --weights experts.safetensors]`` prints ``serving N experts on HOST:PORT`` once it
listens, then serves until killed. The experts are served frozen: ``Forward`` runs under
``torch.no_grad`` and no request changes a weight (see chronomoe.remote for why). ``--weights``
reads a safetensors file holding ``w_gate (N, D, H)``, ``w_up (N, D, H)`` and ``w_down (N, H, D)``
(safetensors only: the server never unpickles a file either).
"""

from __future__ import annotations

import argparse
import selectors
import subprocess
import sys
from collections.abc import Sequence
from concurrent import futures
from typing import Any

import torch

from chronomoe.experts import SwiGLUExperts
from chronomoe.remote_wire import (
    DESCRIBE,
    FORWARD,
    SERVICE,
    RemoteExpertError,
    channel_options,
    decode,
    encode,
    encode_description,
)
from mosaic.core.errors import ModelError

#: most slot rows (experts × capacity) one Forward may carry; bounds the work a request can ask for
MAX_ROWS = 1 << 20
#: most experts one Forward may name: each gathers that expert's three weight matrices
MAX_EXPERT_ROWS = 1 << 10


class ExpertService:
    """The handlers: ``Forward`` and ``Describe`` on a fixed set of experts."""

    def __init__(self, experts: SwiGLUExperts) -> None:
        self.experts = experts.eval().requires_grad_(False)

    def describe(self, request: bytes, context: Any) -> bytes:
        return encode_description(self.experts.n_experts, self.experts.d_model)

    def forward(self, request: bytes, context: Any) -> bytes:
        import grpc

        try:
            return encode({"out": self.run(request)})
        except RemoteExpertError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))  # raises
            raise

    @torch.no_grad()
    def run(self, request: bytes) -> torch.Tensor:
        tensors = decode(request, {"slots": (torch.float32, 3), "experts": (torch.int64, 1)})
        slots, index = tensors["slots"], tensors["experts"]
        rows, capacity, d_model = slots.shape
        # R bounds the gathered weights (R·D·H floats each, whatever C is), R·C the slots
        if (d_model != self.experts.d_model or index.shape[0] != rows or rows > MAX_EXPERT_ROWS
                or rows * capacity > MAX_ROWS):
            raise RemoteExpertError(
                f"Forward takes slots (R, C, {self.experts.d_model}) with R <= {MAX_EXPERT_ROWS} experts named and "
                f"R·C <= {MAX_ROWS}, got slots {tuple(slots.shape)} for {index.shape[0]} experts"
            )
        outside = (index < 0) | (index >= self.experts.n_experts)
        if rows and bool(outside.any()):
            raise RemoteExpertError(  # a few of them: the message travels in a gRPC status of bounded size
                f"expert indices must lie in [0, {self.experts.n_experts}), got {index[outside][:8].tolist()} "
                f"({int(outside.sum())} outside)"
            )
        w_gate, w_up, w_down = (w.index_select(0, index) for w in self.experts.weights())
        hidden = torch.nn.functional.silu(torch.bmm(slots, w_gate)) * torch.bmm(slots, w_up)
        return torch.bmm(hidden, w_down)


def serve(
    experts: SwiGLUExperts, host: str = "127.0.0.1", port: int = 0, workers: int = 2
) -> tuple[Any, int]:
    """Start serving ``experts``; returns ``(grpc server, bound port)``."""
    try:
        import grpc
    except ImportError as exc:  # pragma: no cover - the extra is installed where this runs
        raise ModelError("the expert server needs gRPC: pip install 'chronomoe[remote]'") from exc
    service = ExpertService(experts)
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            FORWARD: grpc.unary_unary_rpc_method_handler(service.forward),
            DESCRIBE: grpc.unary_unary_rpc_method_handler(service.describe),
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), handlers=[handler], options=channel_options()
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise ModelError(f"the expert server could not listen on {host}:{port}")
    server.start()
    return server, bound


def launch(
    n_experts: int, d_model: int, *, port: int = 0, seed: int = 0, timeout_s: float = 60.0
) -> tuple[subprocess.Popen[str], int]:
    """Start ``python -m chronomoe.remote_server`` in a subprocess and wait (at most ``timeout_s``)
    until it listens; returns ``(process, port)``. The caller stops the process."""
    command = [sys.executable, "-m", "chronomoe.remote_server", "--port", str(port),
               "--n-experts", str(n_experts), "--d-model", str(d_model), "--seed", str(seed)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = process.stdout
    selector = selectors.DefaultSelector()
    if stdout is not None:
        selector.register(stdout, selectors.EVENT_READ)
    line = stdout.readline() if stdout is not None and selector.select(timeout=timeout_s) else ""
    selector.close()
    if not line.startswith(f"serving {n_experts} experts on "):
        process.kill()
        process.wait()
        raise ModelError(
            f"the expert server did not start within {timeout_s:g} s (it printed {line[:200]!r})"
        )
    return process, int(line.rsplit(":", 1)[1])


def load_experts(path: str, d_hidden: int | None) -> SwiGLUExperts:
    from safetensors.torch import load_file

    try:
        weights = load_file(path)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise ModelError(f"{path}: not a readable safetensors file ({str(exc)[:200]})") from None
    if (set(weights) != {"w_gate", "w_up", "w_down"} or weights["w_gate"].dim() != 3
            or not all(w.dtype == torch.float32 for w in weights.values()) or weights["w_gate"].shape[0] == 0):
        raise ModelError(
            f"{path}: expert weights must be float32 w_gate (N, D, H), w_up (N, D, H), w_down (N, H, D) with "
            f"N >= 1, got {', '.join(f'{k} {w.dtype} {tuple(w.shape)}' for k, w in sorted(weights.items()))}"[:500]
        )
    n_experts, d_model, hidden = weights["w_gate"].shape
    if d_hidden is not None and d_hidden != hidden:
        raise ModelError(f"{path}: the experts' hidden width is {hidden}, --d-hidden says {d_hidden}")
    experts = SwiGLUExperts(n_experts, d_model, hidden)
    try:
        experts.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelError(f"{path}: the expert weights do not fit together ({str(exc)[:300]})") from None
    return experts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chronomoe.remote_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--n-experts", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--d-hidden", type=int, default=None, help="default 2·d_model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default=None, help="safetensors file of the experts' weights")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.weights is not None:
        try:
            experts = load_experts(args.weights, args.d_hidden)
        except ModelError as exc:  # one message and exit 1, as the mosaic command does
            print(f"error: {exc}", file=sys.stderr)
            return 1
    else:
        torch.manual_seed(args.seed)
        experts = SwiGLUExperts(args.n_experts, args.d_model, args.d_hidden or 2 * args.d_model)
    server, port = serve(experts, args.host, args.port)
    print(f"serving {experts.n_experts} experts on {args.host}:{port}", flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
