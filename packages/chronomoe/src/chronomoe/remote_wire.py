"""The wire between a ``layer.moe`` and its expert server: gRPC method names and safe payloads.

The engine is gRPC (the ``remote`` extra): it brings the deadlines, the status codes, the
reconnection and the message-size limits. The service has two unary methods whose requests and
replies are plain bytes (gRPC's generic handlers, no generated code):

- ``Forward``: a safetensors blob ``{slots float32 (R, C, D), experts int64 (R,)}`` (the server's
  expert index of each of the R rows) → ``{out float32 (R, C, D)}``;
- ``Describe``: empty → a small JSON object ``{"n_experts": …, "d_model": …}`` (also the health probe).

Nothing is unpickled: tensors cross as safetensors, whose header is bounded here before the library
parses it, and every payload is checked for its names, dtypes and ranks (:func:`decode`); the caller
checks the sizes it expects. gRPC refuses a message over :data:`MAX_MESSAGE_BYTES` before either
side reads it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import torch

from mosaic.core.errors import ModelError

SERVICE = "chronomoe.RemoteExperts"
FORWARD = "Forward"
DESCRIBE = "Describe"
#: largest request or reply either side accepts (gRPC enforces it on receipt)
MAX_MESSAGE_BYTES = 64 << 20
#: largest safetensors header (JSON) read; a payload of a few named tensors needs a few hundred bytes
MAX_HEADER_BYTES = 4096
#: largest Describe reply parsed
MAX_DESCRIBE_BYTES = 1024


class RemoteExpertError(ModelError):
    """A payload from the other side of the expert wire that is malformed or out of bounds."""


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"


def channel_options() -> list[tuple[str, Any]]:
    """Both sides' gRPC options: bounded messages, and a client that redials a restarted server
    within about a second instead of gRPC's default backoff of up to two minutes."""
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def encode(tensors: Mapping[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({name: value.detach().contiguous().cpu() for name, value in tensors.items()})


def decode(blob: bytes, expected: Mapping[str, tuple[torch.dtype, int]]) -> dict[str, torch.Tensor]:
    """The tensors of ``blob``, which must hold exactly ``expected``'s names, each of its
    ``(dtype, rank)``; anything else is a :class:`RemoteExpertError` (never an unpickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if len(blob) > MAX_MESSAGE_BYTES:
        raise RemoteExpertError(f"expert payload of {len(blob)} bytes is over the {MAX_MESSAGE_BYTES} limit")
    if len(blob) < 8:
        raise RemoteExpertError(f"expert payload of {len(blob)} bytes is too short for a safetensors header")
    (header_bytes,) = struct.unpack("<Q", blob[:8])
    if header_bytes > MAX_HEADER_BYTES:
        raise RemoteExpertError(
            f"expert payload header of {header_bytes} bytes is over the {MAX_HEADER_BYTES} limit"
        )
    try:
        tensors = load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise RemoteExpertError(f"expert payload is not valid safetensors: {exc}") from exc
    if set(tensors) != set(expected):
        raise RemoteExpertError(f"expert payload must hold {sorted(expected)}, got {sorted(tensors)}")
    for name, (dtype, rank) in expected.items():
        value = tensors[name]
        if value.dtype != dtype or value.dim() != rank:
            raise RemoteExpertError(
                f"expert payload {name!r} must be {dtype} of rank {rank}, got {value.dtype} {tuple(value.shape)}"
            )
    return tensors


def encode_description(n_experts: int, d_model: int) -> bytes:
    return json.dumps({"n_experts": n_experts, "d_model": d_model}).encode()


def decode_description(blob: bytes) -> tuple[int, int]:
    """``(n_experts, d_model)`` of a Describe reply, bounded and checked."""
    if len(blob) > MAX_DESCRIBE_BYTES:
        raise RemoteExpertError(
            f"expert server description of {len(blob)} bytes is over {MAX_DESCRIBE_BYTES}"
        )
    try:
        body = json.loads(blob)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested past the stack
        raise RemoteExpertError(f"expert server description is not JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise RemoteExpertError(f"expert server description must be an object, got {type(body).__name__}")
    sizes = [body.get(name) for name in ("n_experts", "d_model")]
    checked = [v for v in sizes if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 20]
    if len(checked) != 2:
        raise RemoteExpertError(
            f"expert server description needs positive n_experts and d_model, got {body!r:.200}"
        )
    return checked[0], checked[1]
