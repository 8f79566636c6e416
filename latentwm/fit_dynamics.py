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
from .diffusion import DiffusionConfig, FlowObjective
from .dynamics import Dynamics, collapse_probe, resolve_config
from .errors import PipelineError
from .train import TrainConfig, fingerprint, train


def build(cfg: dict, stats: dict, latent_paths: list[str], log):
    """(model, objective, batches, train config) of the `dynamics` config section."""
    data = dict(cfg.get("data", {}))
    alt = dict(data.pop("alternating", None) or {})
    use_alt = alt.pop("enabled", False)
    window = data.get("window", 8)
    longest = max(alt["short_window"], alt["long_window"]) if use_alt else window
    model_dict = dict(cfg.get("model") or {})
    if model_dict.get("max_frames") is None:  # rollouts attend no farther than training did
        model_dict["max_frames"] = longest
    model_cfg = resolve_config(model_dict, stats["latent_shape"])
    if longest > model_cfg.max_frames:
        raise PipelineError(
            f"dynamics.data window {longest} exceeds dynamics.model.max_frames {model_cfg.max_frames}; "
            "raise max_frames or shorten the window"
        )
    obj_cfg = from_dict(DiffusionConfig, {**cfg.get("objective", {}), "k_max": model_cfg.k_max}, "dynamics.objective")
    train_cfg = from_dict(TrainConfig, {**cfg.get("train", {}), "batch_size": data.get("batch_size", 16)}, "dynamics.train")
    batches = LatentWindows(
        latent_paths,
        window=window,
        batch_size=train_cfg.batch_size,
        seed=train_cfg.seed,
        stride=data.get("stride", 1),
        stats=stats,
        expect={"tokenizer_hash": stats["tokenizer_hash"], "latent_shape": stats["latent_shape"]},
        alternating=alt if use_alt else None,
        log=log,
    )
    return Dynamics(model_cfg), FlowObjective(obj_cfg), batches, train_cfg


def fit(latents, stats_path, cfg: dict, out, curve, health, resume, log=print) -> None:
    """Train on the latent stores `latents`; write the checkpoint `out`, `curve` and `health`."""
    stats_text = Path(stats_path).read_text()
    stats = json.loads(stats_text)
    torch.manual_seed(int(cfg.get("train", {}).get("seed", 0)))  # the model's initial weights
    model, objective, batches, train_cfg = build(cfg, stats, list(latents), log)
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
