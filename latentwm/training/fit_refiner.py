"""The refiner's stage: fit (train_refiner's job) on the train videos' latents, with its held-out loss
on the val videos' latents (the mean over the levels, the same windows and noise at every log step)
and the linear interpolation's loss beside it, the figure the refiner must beat."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from latentwm.config.dynamics import DataConfig
from latentwm.config.fields import to_dict
from latentwm.config.refiner import RefinerStage, trained_slice
from latentwm.core import files, ranks
from latentwm.core.errors import PipelineError
from latentwm.data.store import stores_in
from latentwm.data.windows import LatentWindows
from latentwm.models import checkpoint
from latentwm.models.refiner import build, corrupt, interpolate, keyframe_mask, loss_fn
from latentwm.training.loop import WithLoss, fingerprint, train


def windows(stage: RefinerStage, paths: list[str], stats: dict, batch_size: int, log) -> LatentWindows:
    """Batches of normalised windows (B, max(spacings) + 1, C, h, w) of the latent stores `paths`."""
    data = DataConfig(window=stage.model.window(), batch_size=batch_size)
    return LatentWindows(paths, data, seed=stage.train.seed, stats=stats, log=log,
                         expect={"tokenizer_hash": stats["tokenizer_hash"], "latent_shape": stats["latent_shape"]})


def val_probe(stage: RefinerStage, paths: list[str], stats: dict, log):
    """probe(model) -> the held-out loss (mean over levels) and the interpolation's, on fixed val windows."""
    if not paths:
        log("WARNING: no val videos, so no held-out loss and the last weights are kept")
        return None
    try:
        z = windows(stage, paths, stats, stage.val_windows, log)[0]
    except PipelineError as e:  # val videos shorter than a window
        log(f"WARNING: no val windows, so no held-out loss and the last weights are kept: {e}")
        return None
    gen = torch.Generator().manual_seed(stage.train.seed)
    # one step from tau 0, the refiner's own start
    levels = {s: corrupt(z, s, stage.noise, 0.0, gen, stage.model.interpolation) for s in stage.model.spacings}

    def err(x, s):
        free = ~keyframe_mask(z.shape[1], s)
        return float((x.float().cpu() - z)[:, free].pow(2).mean())

    def probe(model) -> dict:
        dev = next(model.parameters()).device
        out = {f"val_loss_s{s}": err(model(x.to(dev), s, keys=z.to(dev)), s) for s, x in levels.items()}
        lin = [err(interpolate(z, s), s) for s in levels]  # linear, whatever the refiner starts from
        return {"val_loss": sum(out.values()) / len(out), "val_linear_loss": sum(lin) / len(lin), **out}

    return probe


def fit(stage: RefinerStage, inputs, out, resume, log=print) -> None:
    """Train on the latent stores (or encode shards) `inputs.latents` normalised by `inputs.stats`,
    score `inputs.val` at every log step, keep the weights of the best held-out loss; write
    `out.checkpoint`, `out.curve` and `out.metrics`."""
    stats_text = Path(inputs.stats).read_text()
    stats = json.loads(stats_text)
    train_paths, val_paths = stores_in(inputs.latents), stores_in(getattr(inputs, "val", []))
    torch.manual_seed(stage.train.seed)  # the initial weights
    net = build(stage, stats["latent_shape"])
    batches = windows(stage, train_paths, stats, stage.train.batch_size, log)
    n_params = sum(p.numel() for p in net.parameters())
    log(f"[refiner] {n_params / 1e6:.2f}M parameters, {len(batches.paths)} videos, windows of {net.cfg.window()} "
        f"frames, spacings {net.cfg.spacings}, noise {stage.noise}")
    final = train(WithLoss(net, loss_fn(stage.noise, stage.reverse)), batches, stage.train, name="refiner", model_config=to_dict(net.cfg),
                  resume_path=resume, curve_path=out.curve, fingerprint=fingerprint(trained_slice(to_dict(stage)), stats_text), log=log,
                  probe=val_probe(stage, val_paths, stats, log), held_out="val_loss", keep_best=stage.keep_best)
    if not ranks.context().main:
        return
    health = final.pop("health")
    final["stats"] = {k: stats[k] for k in ("mean", "std", "latent_shape", "tokenizer_hash")}
    final["noise"] = stage.noise  # what filling adds between keyframes
    checkpoint.save(out.checkpoint, final, then=f"the last checkpoint, {resume}, is kept: a rerun resumes from it")
    last = health.get("collapse") or {}
    result = {"steps": final["step"], "parameters": n_params, "selected": health.get("selected"),
              "precision": health.get("precision"), **{k: v for k, v in last.items() if k.startswith("val_")}}
    files.write(out.metrics, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    Path(resume).unlink(missing_ok=True)
    log(f"[refiner] val loss {last.get('val_loss')} (linear interpolation {last.get('val_linear_loss')}); wrote "
        f"{out.checkpoint}")
