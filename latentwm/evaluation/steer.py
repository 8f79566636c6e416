"""Steering an action model: a context from a video, an action sequence -> the frames it imagines.

    steer  dynamics.pt + tokenizer.pt + a video's latent (and frame) stores + start frame + actions
           -> uint8 frames (context + len(actions), 3, H, W), written as a GIF beside the truth
    sweep  the same context, one rollout per action id held for the whole horizon: the filmstrip
           of what each action does (one row per action)

Context frames keep the actions that produced them when an action store is given, else "no
action" (what action dropout trained the model for).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from latentwm.config.evaluation import SamplerConfig
from latentwm.core.errors import PipelineError
from latentwm.core.image import to_uint8
from latentwm.data.actions import NO_ACTION, read_store
from latentwm.data.store import open_store, video_store
from latentwm.data.windows import Normalisation
from latentwm.figures.samples import filmstrip, frames_gif, sample_gif
from latentwm.models import checkpoint
from latentwm.models.codec import Codec
from latentwm.models.sampler import own_sampler, rollout, trained_tau_ctx


def arguments(a) -> list[int]:
    """The action ids of steer.py's parsed arguments `a`, every argument checked before any work (a
    rollout takes minutes): one line naming it and the fix. With --replay: [] (the recording has them)."""
    if getattr(a, "replay", None) is not None:
        if not Path(a.replay).is_file():
            raise PipelineError(f"--replay {a.replay} is not a file; give the .json saved beside a play recording's GIF")
        if not Path(a.out).absolute().parent.is_dir():
            raise PipelineError(f"--out {a.out}: its folder {Path(a.out).absolute().parent} does not exist")
        return []
    missing = [f"--{k}" for k in ("dynamics", "tokenizer", "video", "actions") if getattr(a, k, None) is None]
    if missing:
        raise PipelineError(f"{' '.join(missing)} missing: give them (or --replay RECORDING.json)")
    try:
        actions = [int(x) for x in a.actions.split(",") if x.strip()]
    except ValueError:
        raise PipelineError(f"--actions {a.actions!r}: give comma-separated integer ids, e.g. 1,1,2,2") from None
    if not actions:
        raise PipelineError(f"--actions {a.actions!r} gives no action: give one id per frame to imagine, e.g. 1,1,2,2")
    for name, value, least in (("--start", a.start, 0), ("--context", a.context, 1), ("--threads", a.threads, 1)):
        if value < least:
            raise PipelineError(f"{name} {value}: give {least} or more")
    for name in ("temperature", "guidance"):
        if getattr(a, name) is not None and not getattr(a, name) >= 0:
            raise PipelineError(f"--{name} {getattr(a, name)}: give 0 or more")
    for name, path in (("--out", a.out), ("--sweep", a.sweep)):
        if path is not None and not Path(path).absolute().parent.is_dir():
            raise PipelineError(f"{name} {path}: its folder {Path(path).absolute().parent} does not exist; create it or "
                                "write somewhere that exists")
    for name, path in (("--dynamics", a.dynamics), ("--tokenizer", a.tokenizer)):
        if not Path(path).is_file():
            raise PipelineError(f"{name} {path} is not a file; give the checkpoint the pipeline wrote (results/.../*.pt)")
    return actions


def load(dynamics_path, tokenizer_path, device="cpu", need_actions: bool = True):
    """(the model, the codec, the checkpoint), the tokenizer checked against the one the model was trained
    on; with `need_actions` a model without actions is refused (steering needs them, playing or a replay not)."""
    ckpt = checkpoint.load(dynamics_path)
    if need_actions and not ckpt.get("actions"):
        raise PipelineError(f"{dynamics_path} takes no actions (dynamics.actions: none); train one with latent or given")
    codec = Codec.load(tokenizer_path, ckpt["stats"], device, f"the latents {dynamics_path} was trained on")
    return checkpoint.build_model(ckpt, device, kind="dynamics"), codec, ckpt


def action_store(results, ckpt: dict, video: str) -> Path | None:
    """The store of `video`'s own actions of the model's kind under `results` (the context frames' actions),
    None for a model without actions or where there is none."""
    kind = (ckpt.get("actions") or {}).get("kind")
    path = video_store(Path(results) / "actions" / kind, video) if kind else None
    return path if path is not None and path.exists() else None


def context_of(ckpt, latents_path, start: int, context: int, action_path=None):
    """Normalised context latents (1, context, C, h, w) from `start`, and their actions (1, context)."""
    lat = open_store(latents_path, {"tokenizer_hash": ckpt["tokenizer_hash"]})
    if start < 0 or start + context > lat.shape[0]:
        raise PipelineError(f"{latents_path} has {lat.shape[0]} frames; start {start} + context {context} does not fit")
    z = Normalisation.of(ckpt["stats"]).apply(np.asarray(lat[start : start + context], np.float32))
    acts = np.full(context, NO_ACTION)
    if action_path is not None:
        acts = read_store(action_path, frames=lat.shape[0])[start : start + context]
    return torch.from_numpy(z)[None], torch.from_numpy(acts)[None]


@torch.no_grad()
def imagine(model, codec, ctx, ctx_actions, future: torch.Tensor, sampler: SamplerConfig, seed: int = 0, *,
            tau_ctx: float) -> torch.Tensor:
    """future (B, H) action ids -> uint8 frames (B, H, 3, H, W) of the rollouts from the context (a
    model without actions takes only -1: none), its frames at the noise level tau_ctx."""
    n = model.cfg.actions or 0
    if int(future.max()) >= n or int(future.min()) < NO_ACTION:
        raise PipelineError(f"actions must be ids in 0..{n - 1} (or -1: none); got {future.tolist()}" if n else
                            f"this model takes no actions (dynamics.actions: none): give -1 for each frame; got {future.tolist()}")
    B = future.shape[0]
    acts = torch.cat([ctx_actions.expand(B, -1), future], 1) if n else None
    out = rollout(model, ctx.expand(B, -1, -1, -1, -1), future.shape[1], sampler,
                  generator=torch.Generator().manual_seed(seed), actions=acts, tau_ctx=tau_ctx)
    return to_uint8(codec.decode(out))


def steer(dynamics_path, tokenizer_path, latents_path, frames_path, start: int, context: int, actions: list[int], out,
          action_path=None, seed: int = 0, log: Callable[[str], None] = print, **sampling):
    """Write a GIF (truth | steered) of the rollout under `actions` from the context at `start`, with the
    model's own sampler, its settings overridden by `sampling` (temperature=, guidance=; None: the default's)."""
    model, codec, ckpt = load(dynamics_path, tokenizer_path)
    ctx, ctx_actions = context_of(ckpt, latents_path, start, context, action_path)
    frames = imagine(model, codec, ctx, ctx_actions, torch.tensor([actions]), own_sampler(model, **sampling),
                     tau_ctx=trained_tau_ctx(ckpt))[0]
    truth = np.asarray(open_store(frames_path)[start : start + context + len(actions)])
    if len(truth) < context + len(actions):  # past the end of the video: the truth panel holds its last frame
        truth = np.concatenate([truth, np.repeat(truth[-1:], context + len(actions) - len(truth), 0)])
    sample_gif(truth, {"steered": frames.numpy()}, context, Path(out))
    log(f"[steer] wrote {out}: {context} context frames from {frames_path} at {start}, then actions {actions}")


def replay(recording, out, results=None, dynamics=None, tokenizer=None, log: Callable[[str], None] = print) -> bool:
    """Replay a play recording's JSON (latentwm.play): its start, seed, sampler and actions through
    `imagine`; write the recorded stretch as a GIF at `out`. True when its frames are the recording's."""
    try:
        rec = json.loads(Path(recording).read_text())
        video, start, context, seed, actions = (rec[k] for k in ("video", "start", "context", "seed", "actions"))
        first, count = int(rec["first_frame"]), int(rec["frames"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PipelineError(f"recording {recording} is not a play recording's JSON ({type(e).__name__}: {e}); give the "
                            ".json saved beside the recording's GIF") from None
    model, codec, ckpt = load(dynamics or rec["dynamics"], tokenizer or rec["tokenizer"], need_actions=False)
    results = results or rec.get("results", "results")
    ctx, ctx_actions = context_of(ckpt, video_store(Path(results) / "latents", video), start, context,
                                  action_store(results, ckpt, video))
    sampler = own_sampler(model, temperature=rec.get("temperature"), guidance=rec.get("guidance"))
    codec.batch = 1  # decoded one frame at a time, as the play server does: a batch may round differently
    frames = imagine(model, codec, ctx, ctx_actions, torch.tensor([actions]), sampler, seed,
                     tau_ctx=trained_tau_ctx(ckpt))[0, first : first + count]
    hwc = [f.permute(1, 2, 0).contiguous().numpy() for f in frames]
    frames_gif(np.stack(hwc), out, rec.get("fps", 15))
    same = frames_sha(hwc) == rec.get("frames_sha256")
    log(f"[steer] replayed {recording}: {len(hwc)} frames to {out}, "
        + ("the same pixels as the recording" if same else "NOT the recording's pixels (another model, store or torch build?)"))
    return same


def frames_sha(frames) -> str:
    """The identity of a sequence of uint8 frames: what a replay must reproduce."""
    h = hashlib.sha256()
    for f in frames:
        h.update(np.ascontiguousarray(f).tobytes())
    return h.hexdigest()


def sweep(model, codec, ctx, ctx_actions, truth, horizon: int, out, sampler: SamplerConfig, seed: int = 0, *,
          tau_ctx: float):
    """The action sweep: one filmstrip row per action id held for `horizon` frames (same noise)."""
    n = model.cfg.actions
    future = torch.arange(n)[:, None].expand(n, horizon)  # (n, horizon)
    frames = imagine(model, codec, ctx, ctx_actions, future, sampler, seed, tau_ctx=tau_ctx)
    filmstrip(truth, {f"action {a}": frames[a].numpy() for a in range(n)}, ctx.shape[1], Path(out),
              title=f"each action held for {horizon} frames from the same context")
