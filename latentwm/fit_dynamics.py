"""Fitting the dynamics model: the `dynamics` config section -> network, objective, loader, loop.

The wiring the train_dynamics rule runs (as latentwm.tokenizer.fit is for the tokenizer). The
final checkpoint is the dict latentwm.train.train returns, plus "stats" (the normalisation the
model was trained under) and "tokenizer_hash" (the tokenizer whose latents it models), so that
evaluation can refuse latents from another tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import checkpoint, distributed
from .config import from_dict, to_dict
from .data import LatentWindows
from .diffusion import FlowObjective
from .dynamics import Dynamics, collapse_probe
from .settings import DynamicsStage
from .train import fingerprint, train


def build(stage: DynamicsStage, stats: dict, latent_paths: list[str], log):
    """(model, objective, batches) of the dynamics stage, for latents described by `stats`."""
    model_cfg = stage.model_config(stats["latent_shape"])
    batches = LatentWindows(
        latent_paths,
        stage.data,
        seed=stage.train.seed,
        stats=stats,
        expect={"tokenizer_hash": stats["tokenizer_hash"], "latent_shape": stats["latent_shape"]},
        log=log,
    )
    return Dynamics(model_cfg), FlowObjective(stage.objective, model_cfg.k_max), batches


def fit(latents, stats_path, cfg: dict, out, curve, health, resume, log=print) -> None:
    """Train on the latent stores `latents`; write the checkpoint `out`, `curve` and `health`."""
    stats_text = Path(stats_path).read_text()
    stats = json.loads(stats_text)
    stage = from_dict(DynamicsStage, cfg, "dynamics")
    train_cfg = stage.train
    torch.manual_seed(train_cfg.seed)  # the model's initial weights
    model, objective, batches = build(stage, stats, list(latents), log)
    n = sum(p.numel() for p in model.parameters())
    log(f"[dynamics] {n / 1e6:.2f}M parameters, {len(batches.paths)} videos, config {to_dict(model.cfg)}")
    final = train(
        model,
        objective,
        batches,
        train_cfg,
        name="dynamics",
        model_config=to_dict(model.cfg),
        resume_path=resume,
        curve_path=curve,
        # the resolved model config joins in: a preset changed in the code since starts fresh
        fingerprint=fingerprint(cfg, to_dict(model.cfg), stats_text),
        log=log,
        probe=collapse_probe(model.cfg, seed=train_cfg.seed),
        health_path=health,
    )
    if not distributed.context().main:
        return None
    final["stats"] = {k: stats[k] for k in ("mean", "std", "latent_shape", "tokenizer_hash")}
    final["tokenizer_hash"] = stats["tokenizer_hash"]
    checkpoint.save(out, final, then=f"the last checkpoint, {resume}, is kept: a rerun resumes from it")
    Path(resume).unlink(missing_ok=True)  # the run is complete; the output supersedes it
    log(f"[dynamics] wrote {out}")
