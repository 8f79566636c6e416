"""Data-parallel training: one process per GPU, on one node or across nodes.

Who starts the processes:
- torchrun (one node or many, e.g. `srun torchrun ...` under Slurm) sets RANK, WORLD_SIZE,
  LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `context()` reads them.
- A Snakemake job that was given more than one GPU (`resources: gpu=N`) calls `relaunch`, which
  runs the rule's script again under torchrun with N local ranks.
A single process (the CPU default) needs neither and never touches torch.distributed.

The data contract stays the one of train.py: batch i is a pure function of (seed, i) and
`batch_size` is the *global* batch; each rank loads only its contiguous slice of it
(`shard`). So the same config gives the same optimizer updates on 1 or N processes (gradients
are averaged across ranks, and the mean of the per-rank mean losses is the mean loss), and
resuming at step s replays the same batches whatever the process count.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from latentwm.core.errors import PipelineError
from latentwm.core.ranks import Context


def init(ctx: Context, device: torch.device) -> torch.device:
    """Join the process group (NCCL on GPU, gloo on CPU); returns this rank's device."""
    if ctx.world == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ctx.rank, world_size=ctx.world)
    return device


def finish(ctx: Context, clean: bool = True) -> None:
    """Leave the process group: every rank, in step, before the process ends.

    A rank that exits while its group is alive dies in the C++ destructors at exit (SIGABRT,
    "terminate called without an active exception": gloo/NCCL threads still joinable), and one
    that tears down while a peer is still communicating breaks the peer's last collective. So all
    ranks first meet at a barrier (`clean`: after their last collective), then destroy the group.
    After an error the barrier is skipped: a peer may never reach it.
    """
    if ctx.world == 1 or not dist.is_initialized():
        return
    try:
        if clean:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def shard(batches, ctx: Context):
    """The rank's view of a batch dataset: slice ctx.rank of each global batch."""
    if ctx.world == 1:
        return batches
    if not hasattr(batches, "shard"):
        raise PipelineError(f"{type(batches).__name__} cannot be split across {ctx.world} processes (no shard())")
    return batches.shard(ctx.rank, ctx.world)


def mean(x: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Mean of a tensor over ranks (identity for one process)."""
    if ctx.world == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / ctx.world


def gather_objects(obj, ctx: Context) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if ctx.world == 1:
        return [obj]
    out = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out
