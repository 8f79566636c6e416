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

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist

from .config import from_dict
from .errors import PipelineError, one_line_errors
from .logs import logger, set_threads
from .ranks import Context, context  # noqa: F401 (the stages ask distributed.context())


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


def processes(gpus: int) -> int:
    """How many local processes a job given `gpus` GPUs runs: one per GPU asked for and visible."""
    if context().world > 1 or not torch.cuda.is_available():  # already a rank, or CPU only
        return 1
    return max(1, min(int(gpus), torch.cuda.device_count()))


def relaunch(script: str, nprocs: int) -> bool:
    """Run `script` again under torchrun with nprocs local ranks and wait; False if nprocs == 1.

    A rule's script calls this first: with more than one GPU the job becomes a single-node
    torchrun job (each rank re-reads the same rule object), and the original process only waits.
    """
    if nprocs <= 1:
        return False
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nprocs}", script]
    p = subprocess.run(cmd)
    if p.returncode != 0:
        raise PipelineError(f"{Path(script).name}: {nprocs} data-parallel ranks failed (exit {p.returncode}); see the log above")
    return True


def run_stage(script: str, fit, stage_class, section: str, cfg: dict, inputs, out, resume, log_path=None,
              threads: int = 2, gpus: int = 0) -> None:
    """The body of every training rule's script: with more than one GPU the script again under
    torchrun (one rank per GPU), else `fit(stage, inputs, out, resume, log)` of the stage built
    from its config section; any PipelineError as one line in the log."""
    with one_line_errors(log_path):
        if relaunch(script, processes(gpus)):
            return
        set_threads(threads)
        fit(from_dict(stage_class, cfg, section), inputs, out, resume, logger(log_path))


def run_rule(script: str, fit, stage_class, section: str, sm) -> None:
    """run_stage for a Snakemake job: `sm` is the script's `snakemake` object (params.cfg, params.resume)."""
    run_stage(script, fit, stage_class, section, sm.params.cfg, sm.input, sm.output, sm.params.resume, sm.log[0],
              sm.threads, sm.resources.get("gpu", 0))


def run_by_hand(script: str, fit, stage_class, section: str, config_path, inputs, out_dir, outputs: dict[str, str],
                threads: int = 2) -> None:
    """run_stage for a script run by hand: the `section` of the config file at `config_path` (unset keys:
    the defaults), every output file `outputs` names (key -> file name) and resume.pt in `out_dir`."""
    import yaml

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    cfg = (yaml.safe_load(Path(config_path).read_text()) or {}).get(section, {})
    out = SimpleNamespace(**{k: d / name for k, name in outputs.items()})
    run_stage(script, fit, stage_class, section, cfg, inputs, out, d / "resume.pt", None, threads)
