"""Fitting the dynamics model: the `dynamics` config section -> network, objective, loader, loop.

The wiring the train_dynamics rule runs (as latentwm.training.fit_tokenizer.fit is for the tokenizer). The
final checkpoint is the dict latentwm.training.loop.train returns, plus "stats" (the normalisation the
model was trained under) and "tokenizer_hash" (the tokenizer whose latents it models), so that
evaluation can refuse latents from another tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from latentwm.config.dynamics import DataConfig, DynamicsConfig, DynamicsStage
from latentwm.config.fields import to_dict
from latentwm.core import ranks
from latentwm.core.errors import PipelineError
from latentwm.data.actions import conditioning
from latentwm.data.store import stores_in
from latentwm.data.windows import LatentWindows
from latentwm.models import checkpoint
from latentwm.models.codec import Codec
from latentwm.models.dynamics import network
from latentwm.models.flow import FlowObjective, flow_start
from latentwm.training.loop import WithLoss, fingerprint, train


def action_stores(actions: dict | None, paths) -> dict:
    """LatentWindows' keyword arguments for the action stores `paths` described by `actions`
    (latentwm.data.actions.conditioning); {} without actions."""
    return {} if actions is None else {"action_paths": list(paths), "action_expect": actions["expect"]}


def build(stage: DynamicsStage, stats: dict, latent_paths: list[str], log, actions: dict | None = None,
          action_paths=None, tokenizer_path=None) -> tuple[WithLoss, LatentWindows]:
    """(the network with its flow objective, its batches) of the dynamics stage, for latents described by `stats`;
    with `actions` (latentwm.data.actions.conditioning) and their stores, action-conditioned; the tokenizer that made
    the latents gives the pixel loss its decoder (objective.pixel_weight > 0)."""
    model_cfg = stage.model_config(stats["latent_shape"], actions["n"] if actions is not None else None)
    batches = LatentWindows(
        latent_paths,
        stage.data,
        seed=stage.train.seed,
        stats=stats,
        expect={"tokenizer_hash": stats["tokenizer_hash"], "latent_shape": stats["latent_shape"]},
        log=log,
        **action_stores(actions, action_paths),
    )
    dropout = stage.action_dropout if actions is not None else 0.0
    decode = None
    if stage.objective.pixel_weight > 0:
        if tokenizer_path is None:
            raise PipelineError("dynamics.objective.pixel_weight > 0 needs the tokenizer that made the latents "
                                "(by hand: --tokenizer results/tokenizer/tokenizer.pt); or set it to 0")
        decode = Codec.load(tokenizer_path, stats).pixels
    objective = FlowObjective(stage.objective, model_cfg.k_max, action_dropout=dropout, decode=decode,
                              source=(model_cfg.source, model_cfg.source_noise))
    return WithLoss(network(model_cfg), objective), batches


def collapse_probe(cfg: DynamicsConfig, frames: int = 4, seed: int = 0, threshold: float = 1e-3):
    """Collapse check: mean |f(x1) - f(x2)| for two different random inputs at tau 0.5.

    Returns probe(model) -> {"collapsed": bool, "output_diff": float} for the training loop.
    """
    g = torch.Generator().manual_seed(seed)
    shape = (2, min(frames, cfg.max_frames), cfg.latent_channels, *cfg.latent_hw)
    x1, x2 = torch.randn(shape, generator=g), torch.randn(shape, generator=g)

    def probe(model) -> dict:
        dev = next(model.parameters()).device
        tau = torch.full(shape[:2], 0.5, device=dev)
        y1, y2 = model(x1.to(dev), tau), model(x2.to(dev), tau)
        diff = float((y1.float() - y2.float()).abs().mean())
        return {"collapsed": diff < threshold, "output_diff": diff}

    return probe


def val_probe(stage: DynamicsStage, model_cfg: DynamicsConfig, val_paths: list, stats: dict, log, actions: dict | None = None,
              action_paths=None):
    """probe(network) -> next-frame loss on fixed windows of the val videos, or None without any.

    Each window's last frame is predicted from its flow start (tau 1, the finest step size) with the
    frames before it at the context level tau_ctx, as the first denoising step of a rollout sees
    them; the loss is the MSE of that prediction (the model's conditional mean) to the true latent,
    next to copying the previous latent. Fixed windows and noise: the value moves only with the
    weights: the training loop's plateau watch and keep_best read it as the held-out loss.
    """
    if not stage.val_windows or not val_paths:
        return None
    try:
        data = LatentWindows(list(val_paths), DataConfig(window=stage.data.window, batch_size=stage.val_windows),
                             seed=stage.train.seed, stats=stats, log=log,
                             expect={"tokenizer_hash": stats["tokenizer_hash"], "latent_shape": stats["latent_shape"]},
                             **action_stores(actions, action_paths))
    except PipelineError as e:
        log(f"WARNING: no val windows, so no held-out loss and the last weights are kept: {e}")
        return None
    z0, kw = data[0], {}  # (N, T, C, h, w) normalised
    if actions is not None:
        z0, a = z0
        kw = {"actions": a}  # (N, T): the true (or inferred) actions, never dropped
    N, T = z0.shape[:2]
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(stage.train.seed))
    tau = torch.full((N, T), stage.objective.tau_ctx)
    tau[:, -1] = 1.0
    z = (1 - tau.view(N, T, 1, 1, 1)) * z0 + tau.view(N, T, 1, 1, 1) * eps
    z[:, -1:] = flow_start(eps[:, -1:], z0[:, -2:-1], model_cfg.source, model_cfg.source_noise)
    d = torch.full((N, T), 1.0 / model_cfg.k_max)
    last = torch.zeros(N, T, dtype=torch.bool)
    last[:, -1] = True  # the one frame scored
    copy = float(((z0[:, -2] - z0[:, -1]) ** 2).mean())

    def probe(network) -> dict:
        dev = next(network.parameters()).device
        x = network(z.to(dev), tau.to(dev), d.to(dev), predict=last.to(dev), **{k: v.to(dev) for k, v in kw.items()})
        x = x[:, -1].float().cpu()
        loss = float(((x - z0[:, -1]) ** 2).mean())
        return {"val_next_loss": loss, "val_copy_loss": copy}

    return probe


def fit(stage: DynamicsStage, inputs, out, resume, log=print) -> None:
    """Train on the latent stores `inputs.latents` (normalised by `inputs.stats`; `inputs.tokenizer`
    made them, the pixel loss decodes with it), score the val stores `inputs.val` at every log step; write `out.checkpoint`, `out.curve` and `out.health`.
    Resumes from `resume` and deletes it when done."""
    given = to_dict(stage)  # as configured: build() resolves stage.model for the latents in place
    stats_text = Path(inputs.stats).read_text()
    stats = json.loads(stats_text)
    # stores or their encode jobs' shards (results/latents/train_000); the actions paired by video
    lat = {"train": stores_in(inputs.latents), "val": stores_in(inputs.val)}
    acts = {k: stores_in(getattr(inputs, f"{k}_actions"), [Path(p).stem for p in s])
            for k, s in lat.items() if hasattr(inputs, f"{k}_actions")}
    actions = None
    if stage.actions != "none":  # the stores of the train videos tell the number of actions and their provenance
        actions = conditioning(stage.actions, acts["train"], getattr(inputs, "lam", None))
        log(f"[dynamics] conditioned on {stage.actions} actions: {actions['n']} ids, dropout {stage.action_dropout}")
    torch.manual_seed(stage.train.seed)  # the model's initial weights
    flow, batches = build(stage, stats, lat["train"], log, actions, acts.get("train"), getattr(inputs, "tokenizer", None))
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
        fingerprint=fingerprint(given, to_dict(net.cfg), stats_text, *([actions["lam_hash"]] if actions else [])),
        log=log,
        probe=probes(collapse_probe(net.cfg, seed=stage.train.seed),
                     val_probe(stage, net.cfg, lat["val"], stats, log, actions, acts.get("val"))),
        health_path=out.health,
        held_out="val_next_loss",
        keep_best=stage.keep_best,
    )
    if not ranks.context().main:
        return
    final["stats"] = {k: stats[k] for k in ("mean", "std", "latent_shape", "tokenizer_hash")}
    final["tokenizer_hash"] = stats["tokenizer_hash"]
    final["tau_ctx"] = stage.objective.tau_ctx  # the context level its samplers must use
    if actions is not None:  # evaluation refuses action stores of another kind or another LAM
        final["actions"] = {k: actions[k] for k in ("kind", "n", "lam_hash")}
    checkpoint.save(out.checkpoint, final, then=f"the last checkpoint, {resume}, is kept: a rerun resumes from it")
    Path(resume).unlink(missing_ok=True)  # the run is complete; the output supersedes it
    log(f"[dynamics] wrote {out.checkpoint}")


def probes(*fns):
    """One probe running each given probe (None skipped), their figures merged."""
    fns = [f for f in fns if f is not None]
    return lambda network: {k: v for f in fns for k, v in f(network).items()}
