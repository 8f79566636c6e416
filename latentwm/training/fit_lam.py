"""The latent action model's stage: fit (train_lam's job) on the train videos' frames, with its val
probe (code usage, perplexity, the forward loss with and without the action)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from latentwm.config.dynamics import DataConfig
from latentwm.config.fields import to_dict
from latentwm.config.lam import LamStage
from latentwm.core import files, ranks
from latentwm.core.errors import PipelineError
from latentwm.data.store import input_identity, open_store
from latentwm.data.windows import LatentWindows
from latentwm.models import checkpoint
from latentwm.models.lam import build
from latentwm.training.loop import fingerprint, train


def frame_windows(paths: list, stage: LamStage, batch_size: int, log) -> LatentWindows:
    """Batches of windows of context + 1 frames (B, context + 1, 3, H, W), float pixel values, of
    frame stores that must all have the first one's size."""
    attrs = open_store(paths[0], scan=False).attrs
    expect = {"height": attrs["height"], "width": attrs["width"]}
    return LatentWindows(list(paths), DataConfig(window=stage.model.context + 1, batch_size=batch_size), seed=stage.train.seed,
                         expect=expect, log=log)


def val_probe(stage: LamStage, val_paths: list, log):
    """probe(model) -> usage, perplexity and forward losses with/without the action on fixed val
    transitions; collapsed when the perplexity is below lam.min_perplexity."""
    if not val_paths:
        return None
    z = frame_windows(val_paths, stage, stage.val_windows, log)[0]  # (N, context + 1, 3, H, W)

    def probe(model) -> dict:
        _, logs = model(z.to(next(model.parameters()).device))
        out = {f"val_{k}": float(v) for k, v in logs.items() if k != "vq_loss"}
        return {"collapsed": out["val_perplexity"] < stage.min_perplexity, **out}

    return probe


def fit(stage: LamStage, inputs, out, resume, log: Callable[[str], None] = print) -> None:
    """Train on windows of context + 1 frames of the frame stores `inputs.frames`, probe the val
    stores `inputs.val`; write `out.checkpoint`, `out.curve` and `out.metrics`. Refuses (one line,
    no checkpoint) a codebook that collapsed on the val transitions."""
    batches = frame_windows(list(inputs.frames), stage, stage.train.batch_size, log)
    first = batches[0]  # (B, context + 1, 3, H, W): sets the frame size and the input scale
    frame_shape = list(first.shape[2:])  # (3, H, W)
    torch.manual_seed(stage.train.seed)  # the initial weights
    model = build(stage, frame_shape)
    model.scale_to(first)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"[lam] {n_params / 1e6:.2f}M parameters, {model.cfg.codes} codes, {len(batches.paths)} videos")
    probe = val_probe(stage, list(inputs.val), log)
    t0 = time.perf_counter()
    state = train(model, batches, stage.train, name="lam", model_config=to_dict(model.cfg), resume_path=resume,
                  curve_path=out.curve, fingerprint=fingerprint(to_dict(stage), input_identity(batches.paths)), log=log,
                  probe=probe)
    if not ranks.context().main:
        return
    health = state.pop("health")
    final = health.get("collapse") or {}
    result = {**{k: v for k, v in final.items() if k != "collapsed"}, "codes": model.cfg.codes, "steps": state["step"],
              "wall_time_s": time.perf_counter() - t0, "parameters": n_params, "health": health}
    ppl = final.get("val_perplexity")
    if ppl is not None and ppl < stage.min_perplexity:
        Path(out.curve).unlink(missing_ok=True)
        raise PipelineError(
            f"latent action model collapsed: its {model.cfg.codes} codes have perplexity {ppl:.2f} on the val transitions "
            f"(lam.min_perplexity {stage.min_perplexity}); likely causes: too few steps (lam.train.steps), a learning "
            "rate too high, or videos whose frames barely change; fix the config and rerun")
    state["frame_shape"] = frame_shape
    checkpoint.save(out.checkpoint, state, then=f"the last checkpoint, {resume}, is kept: a rerun resumes from it")
    files.write(out.metrics, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    Path(resume).unlink(missing_ok=True)
    log(f"[lam] val perplexity {ppl} of {model.cfg.codes}, action gain {final.get('val_action_gain')}; wrote {out.checkpoint}")
