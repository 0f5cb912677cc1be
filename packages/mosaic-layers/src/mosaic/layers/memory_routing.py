"""Routing pieces of the hashed memory (:mod:`mosaic.layers.memory`), pure functions of tensors:
the sign-bit bucket choice with its straight-through factor, and the ring-buffer slot of each write."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ring_slots(write_bucket: torch.Tensor, writes: torch.Tensor, counts: torch.Tensor, assoc: int,
               chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot = (writes to the same bucket before this token) mod assoc: each bucket is a ring buffer
    that fills its empty slots in order and then overwrites the oldest write. Parallel over tokens.

    write_bucket (B, T, H) int64; writes (B, T) bool; counts (B, H, NB) int64 writes so far mod
    assoc -> (slot (B, T, H), counts after the last token)."""
    bsz, length, hashes = write_bucket.shape
    size = max(1, min(chunk, length))
    pad = -length % size
    n_chunks = (length + pad) // size
    bucket = F.pad(write_bucket, (0, 0, 0, pad)).view(bsz, n_chunks, size, hashes).permute(0, 3, 1, 2)
    flags = F.pad(writes.long(), (0, pad)).view(bsz, 1, n_chunks, size).expand(-1, hashes, -1, -1)
    index = torch.arange(size, device=bucket.device)
    later = index[:, None] > index[None, :]  # [t, s] = t > s
    earlier = ((bucket[..., :, None] == bucket[..., None, :]) & later & (flags[..., None, :] > 0)).sum(-1)
    per_chunk = torch.zeros(*bucket.shape[:3], counts.shape[-1], dtype=torch.int64, device=bucket.device)
    per_chunk.scatter_add_(-1, bucket, flags)  # (B, H, nC, NB) writes per bucket in each chunk
    before = per_chunk.cumsum(dim=2) - per_chunk + counts[:, :, None]
    slot = (before.gather(-1, bucket) + earlier) % assoc  # (B, H, nC, C)
    slot = slot.permute(0, 2, 3, 1).reshape(bsz, n_chunks * size, hashes)[:, :length]
    return slot, (counts + per_chunk.sum(dim=2)) % assoc


def route(bit_logits: torch.Tensor, teacher: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bucket ids ``(B, T, H)`` from sign bits (LSB first) and their straight-through factor.

    The factor is 1 in value; its gradient tells the router whether the bucket it chose served the
    loss. A bucket the teacher chose (``teacher >= 0``) was not the router's decision, so there the
    factor carries no gradient: the router learns those positions from the teacher's bit loss alone.
    (With it, the LM loss's verdict on an early, useless write pushed the router off the teacher's
    bucket without bound: at MQAR (512, 64) the write-bit loss reached 40 nats and recall stalled.)"""
    bits = bit_logits.shape[-1]
    powers = 2 ** torch.arange(bits, device=bit_logits.device)
    hard = bit_logits > 0
    log_conf = F.logsigmoid(torch.where(hard, bit_logits, -bit_logits)).sum(-1)  # (B, T, H)
    if teacher is not None:
        forced = teacher >= 0
        teacher_bits = (teacher.clamp_min(0)[..., None] // powers) % 2 == 1
        hard = torch.where(forced[..., None], teacher_bits, hard)
        log_conf = torch.where(forced, torch.zeros_like(log_conf), log_conf)
    bucket = (hard.long() * powers).sum(-1)
    return bucket, torch.exp(log_conf - log_conf.detach())
