"""Data-parallel processes: torchrun's environment, the process group, a few collectives.

Launch with `torchrun --nproc_per_node K -m rnnkit train RECIPE` (or
`python -m torch.distributed.run ...`). Each process trains on its block of rows
of every global batch (`Batch.shard`); DistributedDataParallel averages the
gradients, so K processes compute what one process computes on the whole batch.
The backend is gloo on CPU and nccl on CUDA. Only rank 0 writes the run directory;
truncated-BPTT state stays per rank (each rank carries its own rows' streams).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, local rank (GPU index on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def from_environment() -> DistInfo:
    """Read RANK, WORLD_SIZE and LOCAL_RANK as set by torchrun (defaults: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(rank=int(os.environ["RANK"]), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group (gloo on CPU, nccl on CUDA) if there is more than one process."""
    if not info.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all processes (in place, returned); a no-op for one process."""
    if active():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather_to_main(obj) -> list | None:
    """Every rank's `obj` as a list on rank 0 (None elsewhere); [obj] for one process.

    Used for the per-rank RNG states and carried TBPTT states in checkpoints. This
    pickles within the live process group only; nothing read from disk is unpickled.
    """
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out if dist.get_rank() == 0 else None


def barrier() -> None:
    if active():
        dist.barrier()
