"""The one training loop, shared by the tokenizer and the dynamics model.

Contracts:
- `batches[i]` returns batch i, deterministic in i (a Dataset of whole batches). The sampler
  state is therefore just the step: resuming at step s replays exactly batches s, s+1, ...
  and DataLoader workers can prefetch without owning any state.
- `objective(model, batch) -> (loss, logs)`: `loss` a scalar tensor; `logs` floats, 0-d tensors
  or 1-d tensors (e.g. per-timestep loss, written to the CSV as name_0, name_1, ...).
- `probe(model) -> dict` (optional): a collapse check run at every log step; it returns at least
  {"collapsed": bool} and whatever figures it measured. It goes to the health file.

Data parallel (distributed.py): under torchrun or `distributed.launch`, every rank runs this
loop on its slice of each global batch inside DistributedDataParallel; rank 0 alone writes the
curve, health file and resume checkpoints. One process is the plain loop.

Red flags (seeds/000): a NaN/Inf loss or gradient stops training at once with a PipelineError
naming the step and the likely causes; the last good checkpoint stays on disk. A plateau (loss
not falling by half) and a collapse are reported in the health file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import atomic, checkpoint, distributed
from .errors import PipelineError
from .logs import silent

NAN_CAUSES = (
    "likely causes (seeds/000): learning rate too high (try 10x lower), gradient explosion "
    "(watch grad_norm in the curve CSV), a division by zero in the tau embedding or loss weight"
)


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup: int = 50
    weight_decay: float = 0.01
    beta2: float = 0.95
    grad_clip: float = 1.0
    batch_size: int = 16
    log_every: int = 25
    checkpoint_every: int = 200
    workers: int = 0  # DataLoader worker processes reading the zarr stores
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = True  # autocast to bfloat16 on GPU; ignored on CPU
    compile: bool = False
    grad_checkpointing: bool = False


def fingerprint(*parts) -> str:
    """Short hash of config and input identity (JSON-able parts); a resume file must match it."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("device 'cuda' requested but no GPU is visible; set device: auto or cpu")
    return torch.device(name)


def to_device(batch, device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to min_lr_ratio at the last step."""

    def f(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class _Mean:
    """Running means of the logs between two log lines; 1-d values are averaged per index."""

    def __init__(self):
        self.sums: dict[str, Any] = {}
        self.counts: dict[str, Any] = {}

    def add(self, logs: dict[str, Any]):
        for k, v in logs.items():
            if torch.is_tensor(v) and v.ndim == 1:
                for i, x in enumerate(v.detach().float().cpu().tolist()):
                    key = f"{k}_{i}"
                    self.sums[key] = self.sums.get(key, 0.0) + x
                    self.counts[key] = self.counts.get(key, 0) + 1
            elif k.endswith("_min") or k.endswith("_max"):
                x = float(v)
                prev = self.sums.get(k)
                self.sums[k] = x if prev is None else (min(prev, x) if k.endswith("_min") else max(prev, x))
                self.counts[k] = 1
            else:
                self.sums[k] = self.sums.get(k, 0.0) + float(v)
                self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return out


def _write_csv(path: Path, rows: list[dict[str, float]], then: str = ""):
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    tmp = atomic.temp_path(path)
    try:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
    except OSError as e:
        atomic.remove(tmp)
        if atomic.is_write_failure(e):
            raise atomic.write_failure(path, e, then) from None
        raise


def _fmt_eta(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def plateau_check(rows: list[dict[str, float]], key: str = "loss") -> dict[str, Any]:
    """Compare the mean loss of the first and last tenth of the logged rows (seeds/000)."""
    vals = [r[key] for r in rows if key in r]
    if len(vals) < 4:
        return {"flagged": False, "reason": "too few log rows to judge"}
    k = max(1, len(vals) // 10)
    first, last = sum(vals[:k]) / k, sum(vals[-k:]) / k
    drop = 1 - last / first if first > 0 else 0.0
    return {"first": first, "last": last, "drop_fraction": drop, "flagged": drop < 0.5}


def train(
    model: torch.nn.Module,
    objective: Callable,
    batches,
    cfg: TrainConfig,
    *,
    name: str,
    model_config: dict,
    resume_path: str | Path,
    curve_path: str | Path,
    fingerprint: str,
    log: Callable[[str], None] = print,
    probe: Callable | None = None,
    health_path: str | Path | None = None,
    start_state: dict | None = None,
) -> dict[str, Any]:
    """Train `model` for cfg.steps optimizer steps; resume from `resume_path` when it matches.

    `fingerprint` identifies config and inputs: a resume file written for another fingerprint is
    ignored (a changed config must never continue an old run). Returns the final checkpoint dict
    (model, optimizer, scheduler, step) for the caller to save as the rule's output, plus
    "health" and "rows".
    """
    ctx = distributed.context()
    device = distributed.init(ctx, pick_device(cfg.device))
    torch.manual_seed(cfg.seed + ctx.rank)  # ranks draw different noise for their samples
    batches = distributed.shard(batches, ctx)
    if not ctx.main:
        log = silent
    model.to(device)
    if cfg.grad_checkpointing and hasattr(model, "set_grad_checkpointing"):
        model.set_grad_checkpointing(True)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, cfg.beta2),
        fused=device.type == "cuda",
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    resume_path, curve_path = Path(resume_path), Path(curve_path)
    curve_path.parent.mkdir(parents=True, exist_ok=True)
    health_path = Path(health_path) if health_path else None
    if ctx.main:  # temp files of a killed earlier run of this job
        atomic.sweep(resume_path, curve_path, *([health_path] if health_path else []), log=log)
    step, rows = 0, []
    state = start_state
    if state is None and resume_path.exists():
        state = checkpoint.load(resume_path)
        if state.get("fingerprint") != fingerprint:
            log(f"[{name}] ignoring {resume_path}: written for another config or input; starting fresh")
            state = None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, rows = state["step"], list(state.get("rows", []))
        rng = state["rng"]
        if isinstance(rng, list):  # one state per rank
            if len(rng) == ctx.world:
                torch.set_rng_state(rng[ctx.rank])
            else:  # another process count: fresh but distinct streams
                torch.manual_seed(cfg.seed + ctx.rank + 1000 * step)
        else:
            torch.set_rng_state(rng)
        log(f"[{name}] resumed from {resume_path} at step {step}/{cfg.steps}")
    saved = step  # the step resume.pt holds: where a rerun starts if a later write fails

    def resumes() -> str:
        return f"training resumes from step {saved}" if saved else "training starts again from step 0"

    wrapped = model
    if ctx.world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(wrapped) if cfg.compile else wrapped
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda")
    loader = torch.utils.data.DataLoader(
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
    health: dict[str, Any] = {"name": name, "nan_stop": None, "plateau": None, "collapse": None}

    def snapshot(at_step: int) -> dict[str, Any]:
        return checkpoint.model_state(
            name,
            model,
            model_config,
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            step=at_step,
            rows=rows,
            rng=distributed.gather_objects(torch.get_rng_state(), ctx) if ctx.world > 1 else torch.get_rng_state(),
            fingerprint=fingerprint,
        )

    def write_health():
        if health_path and ctx.main:
            tmp = atomic.temp_path(health_path)
            try:
                tmp.write_text(json.dumps(health, indent=2))
                os.replace(tmp, health_path)
            except OSError as e:
                atomic.remove(tmp)
                if atomic.is_write_failure(e):
                    raise atomic.write_failure(health_path, e, resumes()) from None
                raise

    acc, t_last, t_start, step_start = _Mean(), time.perf_counter(), time.perf_counter(), step
    model.train()
    clean = False  # set once every rank is past its last collective
    try:
        for batch in loader:
            batch = to_device(batch, device)
            with autocast:
                loss, logs = objective(fwd, batch)
            loss_mean = distributed.mean(loss.detach(), ctx)  # every rank sees a NaN on any rank
            if not torch.isfinite(loss_mean):
                value = float(loss_mean)
                health["nan_stop"] = {"step": step, "what": "loss", "value": value}
                write_health()
                raise PipelineError(
                    f"{name} training stopped at step {step}: loss is {value}; {NAN_CAUSES}; "
                    f"last good checkpoint kept at {resume_path}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if not torch.isfinite(gnorm):
                health["nan_stop"] = {"step": step, "what": "grad_norm", "value": float(gnorm)}
                write_health()
                raise PipelineError(
                    f"{name} training stopped at step {step}: gradient norm is {float(gnorm)}; {NAN_CAUSES}; "
                    f"last good checkpoint kept at {resume_path}"
                )
            opt.step()
            sched.step()
            step += 1
            acc.add({"loss": loss_mean, "grad_norm": gnorm, **logs})  # other logs: rank 0's slice

            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                row = {"step": step, **acc.pop()}
                row["lr"] = sched.get_last_lr()[0]
                row["batches_per_s"] = (cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every) / (now - t_last)
                row["memory_mb"] = memory_mb(device)
                if probe is not None and ctx.main:
                    model.eval()
                    with torch.no_grad(), autocast:
                        result = probe(model)
                    model.train()
                    health["collapse"] = result
                    row.update({f"probe_{k}": float(v) for k, v in result.items() if isinstance(v, (int, float))})
                rows.append(row)
                if ctx.main:
                    _write_csv(curve_path, rows, resumes())
                eta = (now - t_start) / (step - step_start) * (cfg.steps - step)
                parts = " ".join(
                    f"{k} {row[k]:.4g}" for k in row if k not in ("step", "loss", "lr", "batches_per_s", "memory_mb")
                    and not k[-1].isdigit()
                )
                log(
                    f"[{name}] step {step}/{cfg.steps} ({100 * step / cfg.steps:.0f}%) loss {row['loss']:.5f} {parts} "
                    f"lr {row['lr']:.2e} {row['batches_per_s']:.1f} b/s mem {row['memory_mb']:.0f}MB eta {_fmt_eta(eta)}"
                )
                t_last = now
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                state = snapshot(step)  # on every rank: it gathers their RNG states
                if ctx.main:
                    checkpoint.save(resume_path, state, then=resumes())
                    saved = step

        if not rows and ctx.main:  # resumed at the very end: nothing new was logged
            _write_csv(curve_path, rows or [{"step": step}], resumes())
        health["plateau"] = plateau_check(rows)
        health["steps"] = step
        write_health()
        final = snapshot(step)
        final.pop("fingerprint")
        final["health"] = health
        clean = True
    finally:
        # the DDP wrapper holds the group: drop it, then leave the group on every rank together
        del fwd, wrapped
        distributed.finish(ctx, clean)
    return final
