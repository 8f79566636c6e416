"""Rollout evaluation on the held-out TEST videos, every number next to the baseline it must beat.

Windows: in every test video, a window starts every `stride` frames (from frame 0) while
`context + horizon` frames fit; when more than `max_windows` fit, an evenly spaced subset of them
(first and last kept). No randomness: the same windows in every run. Each window gives `context`
real frames and the `horizon` frames that follow. Conditions, all decoded by the same tokenizer
and scored in pixel space against the real frames (baselines: latentwm.evaluation.summary.BASELINES):

    model           autoregressive rollout from the real context, once per configured sampler
    model_mean      mean in latent space of `mean_samples` rollouts of the first sampler (the first
                    is the model rollout itself): an estimate of the conditional mean, expected to
                    score higher PSNR and lower sharpness than one rollout (a diagnostic of blur)
    model_best      per window, the one of those `mean_samples` rollouts with the highest PSNR over
                    the horizon (best-of-N, as stochastic video prediction reports it): samples that
                    cover the truth score well, a mean scores the same for every N
    teacher_forced  the real previous frames at every step (first sampler): the one-step skill
                    without error accumulation (AR minus teacher-forced = drift)
    copy_last       the last context latent repeated: the floor for model and model_mean
    copy_last_pixels  the real last frame repeated, past the tokenizer: what copying the video scores
    copy_previous   the real latent before each target: the floor for teacher_forced, which has
                    seen that frame too
    ceiling         decode(encode(truth)): the best any dynamics model can do with this tokenizer
    motion_oracle   copy_last's frame warped by the true optical flow, still pixels kept
                    (latentwm.evaluation.oracle; it sees the truth): what following the motion can reach

Metrics per window and horizon step (step 1 = first predicted frame): every entry of
latentwm.evaluation.metrics.METRICS. Cost: windows x horizon x (2 x the first sampler's steps + the other
samplers' steps + (mean_samples - 1) x the first sampler's steps) network calls per frame.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from latentwm.config.evaluation import EvalConfig, SamplerConfig
from latentwm.config.fields import to_dict
from latentwm.core import image
from latentwm.core.device import pick_device
from latentwm.core.errors import PipelineError
from latentwm.core.image import to_float, to_uint8
from latentwm.data.actions import read_store
from latentwm.data.store import open_store
from latentwm.data.windows import Normalisation
from latentwm.evaluation import metrics
from latentwm.evaluation import summary as S
from latentwm.evaluation.actions import action_conditions, action_sweep, sweep_flows
from latentwm.evaluation.metrics import PSNR_CAP_DB
from latentwm.evaluation.oracle import moved_copy
from latentwm.evaluation.summary import NO_SAMPLER, label
from latentwm.models import checkpoint
from latentwm.models.codec import Codec, check_made
from latentwm.models.sampler import rollout as sampler_rollout
from latentwm.models.sampler import trained_tau_ctx

CSV_COLUMNS = ["video", "window", "condition", "sampler", "step", "metric", "value"]


def window_starts(n_frames: int, cfg: EvalConfig) -> list[int]:
    """Start frames of the windows of a video of n_frames: every `stride` frames from 0, at most
    `max_windows` (evenly spaced, first and last kept); [] when the video is shorter than one window."""
    n_valid = n_frames - cfg.span + 1
    if n_valid < 1:
        return []
    starts = list(range(0, n_valid, cfg.stride))
    if len(starts) > cfg.max_windows:
        starts = [starts[i] for i in np.linspace(0, len(starts) - 1, cfg.max_windows).round().astype(int)]
    return starts


@dataclass
class Windows:
    keys: list[tuple[str, int, int]]  # (video, window index, start frame) per window
    frames: torch.Tensor  # uint8 (N, S, 3, H, W), S = context + horizon
    latents: torch.Tensor  # float32 (N, S, C, h, w), normalised: (z - mean) / std
    actions: torch.Tensor | None = None  # int64 (N, S): the action that produced each frame (action models)
    action_names: list[str] | None = None  # the given actions' names (a sidecar's header), if any


def _seed(cfg: EvalConfig, b0: int, draw: int = 0) -> torch.Generator:
    """Sampler noise of batch b0: the same for every sampler (differences are the sampler's);
    draw > 0 gives the extra rollouts of model_mean their own noise."""
    return torch.Generator().manual_seed(cfg.seed * 100003 + b0 + 7919 * draw)


@torch.no_grad()
def evaluate_windows(model, codec: Codec, win: Windows, cfg: EvalConfig, rollout: Callable,
                     log: Callable[[str], None] = print):
    """Run every condition on every window. Returns (long DataFrame, frames/s per sampler, samples).

    `rollout(model, context, horizon, sampler, generator=, teacher=, actions=)` is
    latentwm.models.sampler's with the context level bound (`evaluate` binds cfg.tau_ctx), passed in
    so tests can use stand-ins.
    """
    C, H = cfg.context, cfg.horizon
    first = cfg.samplers[0]  # the main sampler: also teacher-forced, the mean and the action conditions
    rows: list[pd.DataFrame] = []
    frames_done = {s.name: 0 for s in cfg.samplers}
    seconds = {s.name: 0.0 for s in cfg.samplers}
    samples: list[dict[str, Any]] = []
    device = codec.device
    t_start = time.perf_counter()
    # one tiny untimed rollout first, so one-time costs (allocator, thread pools) hit no sampler's speed
    rollout(model, win.latents[:1, :C].to(device), 1, SamplerConfig("warmup", "euler", 1),
            generator=torch.Generator().manual_seed(0))
    for b0 in range(0, len(win.keys), cfg.batch_size):
        keys = win.keys[b0 : b0 + cfg.batch_size]
        lat = win.latents[b0 : b0 + len(keys)]  # (B, S, C, h, w) normalised
        ctx, truth_z = lat[:, :C].to(device), lat[:, C:]  # (B, C, ...), (B, H, ...)
        window_px = to_float(win.frames[b0 : b0 + len(keys)])  # (B, S, 3, H, W): context and future
        # an action model's rollouts get the actions of the window (inferred from the true future, or
        # the given ones); the action conditions replace the future's with random ones or none
        act = {} if win.actions is None else {"actions": win.actions[b0 : b0 + len(keys)].to(device)}  # (B, S)
        truth_px = window_px[:, C:]  # (B, H, 3, H, W)
        preds, decoded = {}, {}  # label -> normalised latents (B, H, C, h, w); label -> frames decoded already
        for s in cfg.samplers:
            _sync(device)
            t0 = time.perf_counter()
            out = rollout(model, ctx, H, s, generator=_seed(cfg, b0), **act)
            _sync(device)
            seconds[s.name] += time.perf_counter() - t0
            frames_done[s.name] += out.shape[0] * out.shape[1]
            preds[label("model", s.name)] = out.float().cpu()
            if s is first:
                tf = rollout(model, ctx, H, s, generator=_seed(cfg, b0), teacher=truth_z.to(device), **act)
                preds[label("teacher_forced", s.name)] = tf.float().cpu()
                for cond, future in action_conditions(act, C, model.cfg.actions if act else 0, cfg.seed + b0).items():
                    preds[label(cond, s.name)] = rollout(model, ctx, H, s, generator=_seed(cfg, b0),
                                                         actions=future).float().cpu()
        if cfg.mean_samples:
            draws = [preds[label("model", first.name)]] + [
                rollout(model, ctx, H, first, generator=_seed(cfg, b0, r), **act).float().cpu()
                for r in range(1, cfg.mean_samples)
            ]
            preds[label("model_mean", first.name)] = torch.stack(draws).mean(0)
            best = label("model_best", first.name)
            preds[best], decoded[best], decoded[label("model", first.name)] = best_of(draws, codec, truth_px)  # decoded once
        preds["copy_last"] = lat[:, C - 1 : C].expand(-1, H, -1, -1, -1)  # (B, H, C, h, w)
        preds["copy_previous"] = lat[:, C - 1 : C + H - 1]  # the real frame before each target
        preds["ceiling"] = codec.encode(truth_px)
        pixels = {name: decoded[name] if name in decoded else codec.decode(z) for name, z in preds.items()}
        pixels[S.MOTION_ORACLE] = moved_copy(pixels["copy_last"][:, 0], window_px, C)
        preds[S.MOTION_ORACLE] = codec.encode(pixels[S.MOTION_ORACLE])  # for its latent metrics
        preds[S.PIXEL_COPY] = preds["copy_last"]  # its latent metrics are copy_last's, its frames real:
        pixels[S.PIXEL_COPY] = window_px[:, C - 1 : C].expand_as(truth_px)  # (B, H, 3, H, W)
        for name, z in preds.items():
            condition, _, sampler_name = name.partition(":")
            scores = metrics.score(pixels[name], truth_px, lambda b: f"{name} on {keys[b][0]} window {keys[b][1]}", pred_z=z,
                                   truth_z=truth_z, window=window_px)
            for metric, values in scores.items():  # (B, H) each
                rows.append(_long(keys, condition, sampler_name or NO_SAMPLER, metric, values))
        keep = range(b0, min(b0 + len(keys), cfg.samples))  # the windows shown as filmstrips
        samples += filmstrips(keys, win.frames, pixels, [label("model", s.name) for s in cfg.samplers], keep, b0)
        if act and b0 == 0 and samples:  # the action sweep of the first sample: each action held for the horizon
            samples[0]["sweep"] = action_sweep(model, codec, rollout, ctx[:1], act["actions"][:1], H,
                                               first, _seed(cfg, 0), win.action_names)
        done = b0 + len(keys)
        elapsed = time.perf_counter() - t_start
        log(f"[evaluate] windows {done}/{len(win.keys)} done, {elapsed:.0f} s, "
            f"ETA {elapsed / done * (len(win.keys) - done):.0f} s")
    fps = {n: frames_done[n] / max(seconds[n], 1e-9) for n in frames_done}
    return pd.concat(rows, ignore_index=True)[CSV_COLUMNS], fps, samples


def best_of(draws: list[torch.Tensor], codec: Codec, truth_px: torch.Tensor):
    """Per window the draw of best PSNR over the horizon: (its latents, its frames, the first draw's frames)."""
    px = [codec.decode(z) for z in draws]
    score = torch.stack([image.psnr(p.flatten(0, 1), truth_px.flatten(0, 1)).view(truth_px.shape[:2]).mean(1)
                         for p in px])  # (N, B)
    pick, rows = score.argmax(0), torch.arange(len(truth_px))
    return torch.stack(draws)[pick, rows], torch.stack(px)[pick, rows], px[0]


def filmstrips(keys, frames, pixels: dict, rollouts: list[str], keep, b0: int) -> list[dict[str, Any]]:
    """The filmstrip of each window index in `keep` (of the batch starting at b0): its true frames,
    uint8 (S, 3, H, W), and as rows each sampler's rollout, the model mean, copy_last, the motion oracle,
    the ceiling."""
    shown = rollouts + [n for n in pixels if n.startswith("model_mean")] + ["copy_last", S.MOTION_ORACLE, "ceiling"]
    return [{"key": keys[i - b0], "truth": frames[i], "predictions": {n: to_uint8(pixels[n][i - b0]) for n in shown}}
            for i in keep]


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _long(keys, condition, sampler, metric, values: torch.Tensor) -> pd.DataFrame:
    B, H = values.shape
    return pd.DataFrame({
        "video": np.repeat([k[0] for k in keys], H),
        "window": np.repeat([k[1] for k in keys], H),
        "condition": condition,
        "sampler": sampler,
        "step": np.tile(np.arange(1, H + 1), B),
        "metric": metric,
        "value": values.double().numpy().reshape(-1),
    })


def load_windows(videos, frame_paths, latent_paths, cfg: EvalConfig, tokenizer_hash: str, mean, std, name: str, log,
                 action_paths=None, action_expect=None):
    """Read the windows of every test video (and their actions, given `action_paths`); refuse
    mismatched stores, skip too-short videos."""
    keys, frames, latents, short, shape, acts = [], [], [], [], None, []
    norm = Normalisation(mean, std)
    for j, (video, fpath, lpath) in enumerate(zip(videos, frame_paths, latent_paths)):
        lat = open_store(lpath, expect={"tokenizer_hash": tokenizer_hash})
        fr = open_store(fpath)
        attr_shape = list(lat.attrs.get("latent_shape", lat.shape[1:]))
        if shape is None:
            shape = attr_shape
        if attr_shape != shape or list(lat.shape[1:]) != shape or shape[0] != len(mean):
            raise PipelineError(
                f"latent store {lpath}: latent_shape {attr_shape} (array {list(lat.shape[1:])}) differs from {shape} "
                f"or from the {len(mean)} channels of stats.json; rerun encode_latents for every video"
            )
        if lat.shape[0] != fr.shape[0]:
            raise PipelineError(f"{lpath} has {lat.shape[0]} frames but {fpath} has {fr.shape[0]}; rerun encode_latents")
        starts = window_starts(fr.shape[0], cfg)
        if not starts:
            short.append(f"{video} ({fr.shape[0]} frames)")
        a = read_store(action_paths[j], action_expect, frames=lat.shape[0]) if action_paths else None
        for w, s in enumerate(starts):
            keys.append((video, w, s))
            if a is not None:
                acts.append(torch.from_numpy(a[s : s + cfg.span]))
            frames.append(torch.from_numpy(np.asarray(fr[s : s + cfg.span])))
            z = torch.from_numpy(np.asarray(lat[s : s + cfg.span]).astype(np.float32))
            latents.append(norm.apply(z))
    fix = (f"lower evaluations.{name}.context + horizon ({cfg.context} + {cfg.horizon} = {cfg.span}) "
           "or use longer test videos")
    if not keys:
        raise PipelineError(f"evaluation {name}: every test video is shorter than one window: {', '.join(short)}; {fix}")
    if short:
        log(f"WARNING: evaluation {name} skips test videos shorter than {cfg.span} frames: {', '.join(short)}; {fix}")
    names = {json.dumps(dict(open_store(p, scan=False).attrs).get("names")) for p in action_paths or []}
    if len(names) > 1:
        raise PipelineError(f"the test videos' action stores name their actions differently ({' / '.join(sorted(names))}); "
                            "give every video's sidecar the same '# actions:' line")
    names = json.loads(names.pop()) if names else None
    return Windows(keys, torch.stack(frames), torch.stack(latents), torch.stack(acts) if acts else None, names), short


def run(*, dynamics_path, tokenizer_path, stats_path, **kwargs):
    """The evaluate_rollouts rule: checks the dynamics checkpoint's provenance, then `evaluate`s it.

    kwargs are `evaluate`'s. Returns (summary dict, samples) so the caller can draw the samples.
    """
    ckpt = checkpoint.load(dynamics_path)
    check_made(tokenizer_path, ckpt.get("tokenizer_hash"), f"the latents {dynamics_path} was trained on")
    with open(stats_path) as f:
        stats = json.load(f)
    trained = ckpt.get("stats")
    if trained is not None and not (np.allclose(trained["mean"], stats["mean"], atol=1e-6)
                                    and np.allclose(trained["std"], stats["std"], atol=1e-6)):
        raise PipelineError(f"{stats_path} differs from the latent stats {dynamics_path} was trained with; rerun train_dynamics")
    model = checkpoint.build_model(ckpt, kind="dynamics")
    if kwargs["cfg"].tau_ctx is None:  # the context level the model was trained with
        kwargs["cfg"] = dataclasses.replace(kwargs["cfg"], tau_ctx=trained_tau_ctx(ckpt))
    actions = ckpt.get("actions")
    if actions is None and kwargs.get("action_paths"):
        raise PipelineError(f"{dynamics_path} has no action conditioning but action stores were given; rerun train_dynamics")
    if actions is not None:
        if not kwargs.get("action_paths"):
            raise PipelineError(f"{dynamics_path} is conditioned on {actions['kind']} actions but none were given to evaluate "
                                "it with; rerun with the same dynamics.actions")
        kwargs["action_expect"] = {"lam_hash": actions["lam_hash"]} if actions["kind"] == "latent" else {"given": True}
    return evaluate(model, tokenizer_path=tokenizer_path, stats_path=stats_path, **kwargs)


def evaluate(model, *, tokenizer_path, stats_path, videos, frame_paths, latent_paths, cfg: EvalConfig,
             metrics_csv, summary_json, name: str = "default", log: Callable[[str], None] = print,
             rollout: Callable | None = None, action_paths=None,
             action_expect=None, truth_paths=None):
    """Evaluate an already-built model (whatever `rollout` takes) on the test videos; write the CSV
    and summary. `run` is this for a dynamics checkpoint; a benchmark passes its own model and rollout.

    Returns (summary dict, samples) so the caller can draw the samples.
    """
    rollout = functools.partial(rollout or sampler_rollout, tau_ctx=cfg.tau_ctx)
    device = pick_device(cfg.device)
    with open(stats_path) as f:
        stats = json.load(f)
    codec = Codec.load(tokenizer_path, stats, device, f"the latents of {stats_path}")
    mean, std = torch.tensor(stats["mean"], dtype=torch.float32), torch.tensor(stats["std"], dtype=torch.float32)
    win, skipped = load_windows(videos, frame_paths, latent_paths, cfg, stats["tokenizer_hash"], mean, std, name, log,
                                action_paths, action_expect)
    log(f"[evaluate] {name}: {len(win.keys)} windows from {len(videos) - len(skipped)} test videos on {device}")
    model = model.to(device).eval()
    t0 = time.perf_counter()
    df, fps, samples = evaluate_windows(model, codec, win, cfg, rollout, log)
    summary = {
        "evaluation": name,
        "config": to_dict(cfg),
        "device": str(device),
        "seconds": time.perf_counter() - t0,
        "windows": [{"video": v, "window": w, "start": s} for v, w, s in win.keys],
        "skipped_videos": skipped,
        "psnr_cap_db": PSNR_CAP_DB,
        **S.build(df, fps, cfg.horizon),
    }
    if win.actions is not None:
        summary["actions"] = S.action_summary(summary["conditions"], cfg.samplers[0].name, action_paths, truth_paths,
                                              action_expect)
        summary["actions"]["sweep_flow"] = sweep_flows(model, codec, rollout, win, cfg.context, cfg.horizon, cfg.samplers[0],
                                                       cfg.seed, cfg.batch_size, win.action_names, log)
        for line in summary["actions"]["lines"]:
            log(f"[actions] {line}")
    for flag in summary["checks"]["identical_conditions"]:
        log(f"WARNING: {flag} in PSNR at every step: either the evaluation is broken or the model "
            "ignores what it is given (e.g. model == teacher_forced: the context does not matter)")
    df.to_csv(metrics_csv, index=False)
    with open(summary_json, "w") as f:
        json.dump(summary, f, indent=2)
    for n, c in summary["conditions"].items():
        fps_txt = f" {c['frames_per_s']:.1f} frames/s" if "frames_per_s" in c else ""
        means = " ".join(f"{m} {v:.4g}" for m, v in c["mean"].items())
        log(f"[evaluate] {n}: mean over steps: {means}{fps_txt}")
    for line in summary["verdict"]:
        log(f"[verdict] {line}")
    return summary, samples
