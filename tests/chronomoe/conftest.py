"""Shared fixtures for chronomoe tests: hypothesis profiles and the host-sync guard."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
from hypothesis import settings

settings.register_profile("default", max_examples=25, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Tiny tensors: intra-op threads only add contention on the shared 2-core machine.
torch.set_num_threads(1)


class HostSyncError(AssertionError):
    pass


@contextlib.contextmanager
def forbid_host_sync():
    """CPU stand-in for ``torch.cuda.set_sync_debug_mode("error")`` (a no-op without CUDA).

    Every Python-level way to read a tensor's value back to the host is patched to raise while the
    block runs: ``item``, ``tolist``, ``numpy``, ``cpu``, truth value, ``int()/float()``,
    ``nonzero`` (method and function), ``bincount``/``unique``/``masked_select`` (whose output shape
    depends on values), ``F.one_hot`` (range check on CUDA) and boolean-mask indexing (``nonzero``
    inside ATen). Ops that stay in ATen
    cannot read values back except through these, so a forward that passes makes no host sync.

    The block also holds the CPU to the accelerator's contract: ``chronomoe.experts.host_reads_are_free``
    answers False, so code that reads counts back only where that is free takes its device path.
    """
    import chronomoe.experts

    patches: list[tuple[object, str, object]] = [
        (chronomoe.experts, "host_reads_are_free", chronomoe.experts.host_reads_are_free)
    ]
    chronomoe.experts.host_reads_are_free = lambda device: False

    def forbid(owner: object, name: str) -> None:
        original = getattr(owner, name)

        def raiser(*args, **kwargs):
            raise HostSyncError(f"host synchronisation via {getattr(owner, '__name__', owner)}.{name}")

        patches.append((owner, name, original))
        setattr(owner, name, raiser)

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "nonzero"):
        forbid(torch.Tensor, name)
    for name in ("nonzero", "bincount", "unique", "masked_select", "argwhere"):
        forbid(torch, name)
    # F.one_hot range-checks its input on the host under CUDA
    forbid(torch.nn.functional, "one_hot")
    getitem, setitem = torch.Tensor.__getitem__, torch.Tensor.__setitem__

    def checked(index: object) -> None:
        parts = index if isinstance(index, tuple) else (index,)
        if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            raise HostSyncError("host synchronisation via boolean-mask indexing")

    def guarded_getitem(self, index):
        checked(index)
        return getitem(self, index)

    def guarded_setitem(self, index, value):
        checked(index)
        return setitem(self, index, value)

    patches += [(torch.Tensor, "__getitem__", getitem), (torch.Tensor, "__setitem__", setitem)]
    torch.Tensor.__getitem__ = guarded_getitem
    torch.Tensor.__setitem__ = guarded_setitem
    try:
        yield
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


@pytest.fixture
def no_host_sync():
    return forbid_host_sync
