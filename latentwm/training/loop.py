"""The one training loop, shared by the tokenizer and the dynamics model.

Contracts:
- `batches[i]` returns batch i, deterministic in i (a Dataset of whole batches). The sampler
  state is therefore just the step: resuming at step s replays exactly batches s, s+1, ...
  and DataLoader workers can prefetch without owning any state.
- `loss, logs = model(batch)`: `loss` a scalar tensor; `logs` floats, 0-d tensors or 1-d tensors
  (e.g. per-timestep loss, written to the CSV as name_0, name_1, ...); `batch` is anything with
  `.to(device)` (a tensor) or a tuple/dict of them. `model.network` is the module the checkpoint
  holds (the tokenizer itself; the dynamics network inside a WithLoss).
- `probe(network) -> dict` (optional): a collapse check run at every log step; it returns at least
  {"collapsed": bool} and whatever figures it measured. It goes to the health file. Its figure
  named by `held_out` (a loss on held-out data, lower is better) drives the schedule's plateau
  watch (schedule.py: anneal and stop once it stops falling) and, with `keep_best`, the weights
  returned: those of the log step where it was lowest instead of the last ones (`Best`). Both
  are kept across a resume.

Data parallel (distributed.py): under torchrun or `distributed.launch`, every rank runs this
loop on its slice of each global batch inside DistributedDataParallel; rank 0 alone writes the
curve, health file and resume checkpoints. One process is the plain loop.

Red flags: a NaN/Inf loss or gradient stops training at once with a PipelineError
naming the step and the likely causes; the last good checkpoint stays on disk. A plateau (loss
not falling by half) and a collapse are reported in the health file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Callable

import torch

from latentwm.config.train import TrainConfig
from latentwm.core import files, ranks
from latentwm.core.device import native_bf16, pick_device
from latentwm.core.errors import PipelineError
from latentwm.core.logs import silent
from latentwm.models import checkpoint
from latentwm.training import distributed
from latentwm.training.curve import Curve, plateau_check
from latentwm.training.schedule import Schedule

WHAT = {"loss": "loss", "grad_norm": "gradient norm"}
NAN_CAUSES = (
    "likely causes: learning rate too high (try 10x lower), gradient explosion "
    "(watch grad_norm in the curve CSV), a division by zero in the tau embedding or loss weight"
)


def fingerprint(*parts) -> str:
    """Short hash of config and input identity (JSON-able parts); a resume file must match it."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def for_precision(cfg: TrainConfig, device: torch.device, fingerprint: str) -> tuple[TrainConfig, str, str]:
    """(the config this run trains by, "bf16" or "fp32", the resume fingerprint with the precision in
    it, so a run never resumes another precision's): where it trains in fp32 (bf16 off, or no native
    bf16 here) and fp32_steps is set, that many steps, at about the same wall clock."""
    precision = "bf16" if cfg.bf16 and native_bf16(device) else "fp32"
    if precision == "fp32" and cfg.fp32_steps:
        cfg = dataclasses.replace(cfg, steps=cfg.fp32_steps)
    return cfg, precision, f"{fingerprint}:{precision}"


def to_device(batch, device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class WithLoss(torch.nn.Module):
    """A network and its loss function as the loop's trainable: `loss, logs = m(batch)` is
    `loss_fn(network, batch)`; `m.network` is what the checkpoint holds (the dynamics network
    with diffusion.FlowObjective; any network with a test's own loss)."""

    def __init__(self, network: torch.nn.Module, loss_fn: Callable):
        super().__init__()
        self.network, self.loss_fn = network, loss_fn

    def forward(self, batch):
        return self.loss_fn(self.network, batch)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW, no weight decay on biases and norms."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, cfg.beta2),
        fused=device.type == "cuda",
    )
    return opt


def restore(path: Path, fingerprint: str, model, opt, sched, cfg: TrainConfig, ctx, name: str, log) -> tuple[int, dict]:
    """Load a resume checkpoint written for this fingerprint into model, optimizer, schedule and
    RNG; (step, the checkpoint: its curve rows, best weights, plateau watch) to go on from, (0, {})
    when there is none or it is another run's."""
    if not path.exists():
        return 0, {}
    state = checkpoint.load(path)
    if state.get("fingerprint") != fingerprint:
        log(f"[{name}] ignoring {path}: written for another config or input; starting fresh")
        return 0, {}
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    step, rng = state["step"], state["rng"]
    if not isinstance(rng, list):
        torch.set_rng_state(rng)
    elif len(rng) == ctx.world:  # one state per rank
        torch.set_rng_state(rng[ctx.rank])
    else:  # another process count: fresh but distinct streams
        torch.manual_seed(cfg.seed + ctx.rank + 1000 * step)
    log(f"[{name}] resumed from {path} at step {step}/{cfg.steps}")
    return step, state


class Best:
    """The weights of the log step with the lowest held-out loss (where `keep`)."""

    def __init__(self, saved: dict | None = None, keep: bool = True):
        saved, self.keep = saved or {}, keep
        self.value, self.step, self.model = saved.get("value", math.inf), saved.get("step"), saved.get("model")
        self.last = saved.get("last")

    def offer(self, held_out: float | None, step: int, network: torch.nn.Module) -> None:
        if held_out is None or not self.keep:
            return
        self.last = float(held_out)
        if self.last < self.value:  # a copy on the CPU: the training goes on changing the weights
            self.value, self.step = self.last, step
            self.model = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}

    def apply(self, final: dict, health: dict, step: int, log) -> None:
        """Put the selected weights into the final checkpoint `final` and say so in `health`."""
        if final.pop("best", None) is None:
            return
        final["model"] = self.model
        health["selected"] = {"step": self.step, "select": self.value, "last_step": step, "last_select": self.last}
        log(f"kept the weights of step {self.step} (held-out loss {self.value:.4g}; at step {step}: {self.last:.4g})")

    def state(self) -> dict | None:
        return None if self.model is None else {"value": self.value, "step": self.step, "model": self.model, "last": self.last}


class Health:
    """The run's health file: NaN stop, plateau, collapse probe, steps (rank 0 writes it)."""

    def __init__(self, name: str, path: Path | None, write: bool):
        self.path, self.write = path, write and path is not None
        self.data: dict[str, Any] = {"name": name, "nan_stop": None, "plateau": None, "collapse": None}

    def save(self, then: str) -> None:
        if not self.write:
            return
        files.write(self.path, lambda tmp: tmp.write_text(json.dumps(self.data, indent=2)), then)

    def finish(self, final: dict, rows: list, then: str, **figures) -> None:
        """The plateau check of the curve `rows` and `figures` written; the file's data into `final`."""
        self.data.update(plateau=plateau_check(rows), **figures)
        self.save(then)
        final["health"] = self.data

    def check_finite(self, value: torch.Tensor, what: str, step: int, name: str, kept: Path, then: str) -> None:
        """Stop at once on a NaN/Inf loss or gradient norm, naming the step and the likely causes."""
        if torch.isfinite(value):
            return
        self.data["nan_stop"] = {"step": step, "what": what, "value": float(value)}
        self.save(then)
        raise PipelineError(
            f"{name} training stopped at step {step}: {WHAT[what]} is {float(value)}; {NAN_CAUSES}; "
            f"last good checkpoint kept at {kept}"
        )


def loader(batches, cfg: TrainConfig, step: int, device: torch.device):
    return torch.utils.data.DataLoader(
        batches,
        sampler=range(step, cfg.steps),
        batch_size=None,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        # A private generator: creating the iterator must not draw from the global RNG, or a
        # resumed run (RNG restored, then a new iterator) would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def wrap(model: torch.nn.Module, cfg: TrainConfig, ctx, device: torch.device):
    """The module the loop calls (gradient checkpointing set): DistributedDataParallel across ranks, torch.compile'd if asked."""
    if cfg.grad_checkpointing and hasattr(model.network, "set_grad_checkpointing"):
        model.network.set_grad_checkpointing(True)
    wrapped = model
    if ctx.world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(wrapped) if cfg.compile else wrapped


def run_probe(probe: Callable | None, model: torch.nn.Module, autocast) -> dict | None:
    """The collapse probe in eval mode without gradients; None without a probe."""
    if probe is None:
        return None
    model.eval()
    with torch.no_grad(), autocast:
        result = probe(model)
    model.train()
    return result


def train(
    model: torch.nn.Module, batches, cfg: TrainConfig, *, name: str, model_config: dict,
    resume_path: str | Path, curve_path: str | Path, fingerprint: str, log: Callable[[str], None] = print,
    probe: Callable | None = None, health_path: str | Path | None = None, held_out: str | None = None, keep_best: bool = False,
) -> dict[str, Any]:
    """Train `model` for cfg.steps optimizer steps (fewer where the probe's `held_out` figure stops
    falling: schedule.py); resume from `resume_path` when written for this `fingerprint` (config and
    inputs: a changed config never continues an old run). Returns the final checkpoint dict (model,
    optimizer, scheduler, step, "health", "rows") for the caller to save as the rule's output."""
    ctx = ranks.context()
    device = distributed.init(ctx, pick_device(cfg.device))
    cfg, precision, fingerprint = for_precision(cfg, device, fingerprint)
    torch.manual_seed(cfg.seed + ctx.rank)  # ranks draw different noise for their samples
    batches = distributed.shard(batches, ctx)
    log = log if ctx.main else silent
    log(f"[{name}] {precision} on {device.type}: {cfg.steps} steps")
    model.to(device)
    opt = make_optimizer(model, cfg, device)
    plan = Schedule(cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: plan(s))  # a lambda: LambdaLR saves no state of it
    resume_path, curve_path = Path(resume_path), Path(curve_path)
    health = Health(name, Path(health_path) if health_path else None, ctx.main)
    if ctx.main:  # temp files of a killed earlier run of this job
        files.sweep(resume_path, curve_path, *([health.path] if health.path else []), log=log)
    step, resumed = restore(resume_path, fingerprint, model.network, opt, sched, cfg, ctx, name, log)
    best, rows = Best(resumed.get("best"), keep_best), list(resumed.get("rows", []))
    plan.load(resumed.get("schedule") or {})
    saved = step  # the step resume.pt holds: where a rerun starts if a later write fails

    def resumes() -> str:
        return f"training resumes from step {saved}" if saved else "training starts again from step 0"

    def snapshot(at_step: int) -> dict[str, Any]:
        rng = distributed.gather_objects(torch.get_rng_state(), ctx) if ctx.world > 1 else torch.get_rng_state()
        return checkpoint.model_state(name, model.network, model_config, optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                                      step=at_step, rows=curve.rows, rng=rng, fingerprint=fingerprint, best=best.state(),
                                      schedule=plan.state())

    fwd = wrap(model, cfg, ctx, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    curve = Curve(name, curve_path, plan.end, cfg.log_every, rows, step, log, ctx.main)
    model.train()
    clean = False  # set once every rank is past its last collective
    try:
        for batch in loader(batches, cfg, step, device):
            with autocast:
                loss, logs = fwd(to_device(batch, device))
            loss_mean = distributed.mean(loss.detach(), ctx)  # every rank sees a NaN on any rank
            health.check_finite(loss_mean, "loss", step, name, resume_path, resumes())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            health.check_finite(gnorm, "grad_norm", step, name, resume_path, resumes())
            opt.step()
            sched.step()
            step += 1
            curve.add({"loss": loss_mean, "grad_norm": gnorm, **logs})  # other logs: rank 0's slice
            if curve.due(step):
                result = run_probe(probe, model.network, autocast) if ctx.main else None
                health.data["collapse"] = result if result is not None else health.data["collapse"]
                best.offer((result or {}).get(held_out), step, model.network)
                curve.row(step, sched.get_last_lr()[0], device, result, resumes())
                curve.steps = plan.watch((result or {}).get(held_out), step, ctx, lambda m: log(f"[{name}] {held_out} {m}"))
            if step >= plan.end:
                break
            if step % cfg.checkpoint_every == 0:
                state = snapshot(step)  # on every rank: it gathers their RNG states
                if ctx.main:
                    checkpoint.save(resume_path, state, then=resumes())
                    saved = step
        curve.finish(step, resumes())
        final = {k: v for k, v in snapshot(step).items() if k != "fingerprint"}
        best.apply(final, health.data, step, lambda m: log(f"[{name}] {m}"))
        health.finish(final, curve.rows, resumes(), steps=step, precision=precision, annealed_at=plan.anneal_at)
        clean = True
    finally:
        # the DDP wrapper holds the group: drop it, then leave the group on every rank together
        del fwd
        distributed.finish(ctx, clean)
    return final
