"""Data parallelism when launched by ``torchrun``: gloo on CPU, NCCL on GPU; rank 0 writes."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import Any

import attrs
import torch
import torch.distributed as dist


@attrs.frozen
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")))


class _OutputFields(torch.nn.Module):
    """Returns a model's output as ``(type, {field: value})``: with ``find_unused_parameters`` DDP
    walks the output's tensors to see which parameters the loss can reach, and it looks inside
    tensors, tuples, dicts and dataclasses only, not attrs classes such as ``ModelOutput``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> tuple[type, dict[str, Any]]:
        output = self.model(batch)
        return type(output), attrs.asdict(output, recurse=False)


def wrap_ddp(model: torch.nn.Module, device: torch.device, *, find_unused_parameters: bool
             ) -> tuple[torch.nn.parallel.DistributedDataParallel, Callable[[Any], Any]]:
    """``(ddp, forward)``: ``forward(batch)`` runs the model through DDP and returns its own output type."""
    ids = [device.index] if device.type == "cuda" else None
    ddp = torch.nn.parallel.DistributedDataParallel(_OutputFields(model), device_ids=ids,
                                                    find_unused_parameters=find_unused_parameters)

    def forward(batch: Any) -> Any:
        output_type, fields = ddp(batch)
        return output_type(**fields)

    return ddp, forward


def all_reduce_mean(value: torch.Tensor, context: DistContext) -> torch.Tensor:
    if not context.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / context.world_size


def check_lockstep(model: torch.nn.Module, context: DistContext) -> bool | None:
    """Whether every rank holds bitwise the same parameters (elementwise max == min across ranks);
    None when not distributed. One all-reduce pair of the model's size, once at the end of a run."""
    if not context.enabled:
        return None
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return bool(torch.equal(high, low))


def barrier(context: DistContext) -> None:
    if context.enabled:
        dist.barrier()


def shutdown(context: DistContext, trainer: Any = None, *, wait: bool = True) -> None:
    """Leave the process group cleanly: wait for every rank, free ``trainer``'s DDP wrapper (and its
    reducer) while the group is alive, then destroy the group.

    The order matters: a reducer freed after the group is destroyed joins gloo's worker thread while
    holding the GIL, and that thread may need the GIL to free the tensors of its last allreduce, so
    the rank deadlocks at exit (seen when stdout was a pipe). ``wait=False`` (a rank that failed)
    skips the barrier, which the other ranks might never reach."""
    if not (context.enabled and dist.is_initialized()):
        return
    if wait:
        dist.barrier()
    if trainer is not None:
        trainer.ddp = None
        trainer.forward_model = trainer.model
    gc.collect()
    dist.destroy_process_group()
