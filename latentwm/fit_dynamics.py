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
from .config import to_dict
from .data import LatentWindows
from .diffusion import FlowObjective
from .dynamics import Dynamics, collapse_probe
from .settings import DynamicsStage
from .train import WithLoss, fingerprint, train


def build(stage: DynamicsStage, stats: dict, latent_paths: list[str], log) -> tuple[WithLoss, LatentWindows]:
    """(the network with its flow objective, its batches) of the dynamics stage, for latents described by `stats`."""
    model_cfg = stage.model_config(stats["latent_shape"])
    batches = LatentWindows(
        latent_paths,
        stage.data,
        seed=stage.train.seed,
        stats=stats,
        expect={"tokenizer_hash": stats["tokenizer_hash"], "latent_shape": stats["latent_shape"]},
        log=log,
    )
    return WithLoss(Dynamics(model_cfg), FlowObjective(stage.objective, model_cfg.k_max)), batches


def fit(stage: DynamicsStage, inputs, out, resume, log=print) -> None:
    """Train on the latent stores `inputs.latents` (normalised by `inputs.stats`); write
    `out.checkpoint`, `out.curve` and `out.health`. Resumes from `resume` and deletes it when done."""
    stats_text = Path(inputs.stats).read_text()
    stats = json.loads(stats_text)
    torch.manual_seed(stage.train.seed)  # the model's initial weights
    flow, batches = build(stage, stats, list(inputs.latents), log)
    net = flow.network
    log(f"[dynamics] {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters, {len(batches.paths)} videos, "
        f"config {to_dict(net.cfg)}")
    final = train(
        flow,
        batches,
        stage.train,
        name="dynamics",
        model_config=to_dict(net.cfg),
        resume_path=resume,
        curve_path=out.curve,
        # the resolved model config joins in: a preset changed in the code since starts fresh
        fingerprint=fingerprint(to_dict(stage), to_dict(net.cfg), stats_text),
        log=log,
        probe=collapse_probe(net.cfg, seed=stage.train.seed),
        health_path=out.health,
    )
    if not distributed.context().main:
        return
    final["stats"] = {k: stats[k] for k in ("mean", "std", "latent_shape", "tokenizer_hash")}
    final["tokenizer_hash"] = stats["tokenizer_hash"]
    checkpoint.save(out.checkpoint, final, then=f"the last checkpoint, {resume}, is kept: a rerun resumes from it")
    Path(resume).unlink(missing_ok=True)  # the run is complete; the output supersedes it
    log(f"[dynamics] wrote {out.checkpoint}")
