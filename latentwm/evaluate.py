"""Rollout evaluation on the held-out TEST videos, every number next to the baselines it must beat.

For each test video, `windows` start positions (a pure function of seed and video id) each give
`context` real frames and the `horizon` frames that follow. Conditions, all decoded by the same
tokenizer and scored in pixel space against the real frames:

    model           autoregressive rollout from the real context, once per configured sampler
    teacher_forced  the real previous frames at every step (first sampler): the one-step skill
                    without error accumulation (seeds/002: AR minus teacher-forced = drift)
    copy_last       the last context latent repeated: the floor any dynamics model must beat
    ceiling         decode(encode(truth)): the best any dynamics model can do with this tokenizer

Metrics per window and horizon step (step 1 = first predicted frame): psnr, ssim, mse on frames
clamped to [0, 1], and latent_mse in the normalised latent space the dynamics model works in.
PSNR of identical frames is capped at PSNR_CAP_DB (metrics.psnr floors the mse at 1e-10), so a
perfect prediction scores a large finite number, never inf, and means stay finite.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from . import checkpoint, metrics
from .config import from_dict, to_dict
from .errors import PipelineError
from .store import open_store
from .tokenizer import to_float, to_uint8
from .train import pick_device

PSNR_CAP_DB = 100.0  # 10 log10(1 / 1e-10): the mse floor of metrics.psnr
METRICS = ("psnr", "ssim", "mse", "latent_mse")
CSV_COLUMNS = ["video", "window", "condition", "sampler", "step", "metric", "value"]
NO_SAMPLER = "none"  # sampler column of the conditions that use none (copy_last, ceiling)


@dataclass
class SamplerSpec:
    name: str
    kind: str  # euler | shortcut (latentwm.sampler)
    steps: int


def _default_samplers() -> list[dict]:
    return [dict(name="euler64", kind="euler", steps=64), dict(name="shortcut4", kind="shortcut", steps=4)]


@dataclass
class EvalConfig:
    context: int = 8  # real frames given to the model
    horizon: int = 8  # frames predicted after them
    windows: int = 4  # windows per test video (fewer if the video is short)
    samplers: list = field(default_factory=_default_samplers)  # [{name, kind, steps}]; the first also runs teacher-forced
    tau_ctx: float = 0.1  # context corruption level, as in training
    samples: int = 2  # the first N windows get a GIF and a filmstrip
    seed: int = 0  # window positions and sampler noise
    batch_size: int = 8  # windows per rollout batch
    device: str = "auto"

    def __post_init__(self):
        self.samplers = [s if isinstance(s, SamplerSpec) else from_dict(SamplerSpec, s, "samplers") for s in self.samplers]
        names = [s.name for s in self.samplers]
        if not names or len(set(names)) != len(names):
            raise PipelineError(f"evaluation samplers {names} must be a non-empty list of distinct names")
        for key in ("context", "horizon", "windows", "batch_size"):
            if getattr(self, key) < 1:
                raise PipelineError(f"evaluation {key} is {getattr(self, key)}; it must be at least 1")

    @property
    def span(self) -> int:
        return self.context + self.horizon


def label(condition: str, sampler: str = NO_SAMPLER) -> str:
    """Name of a condition in the summary and the plots: 'model:euler64', 'copy_last', ..."""
    return condition if sampler == NO_SAMPLER else f"{condition}:{sampler}"


def window_starts(video: str, n_frames: int, cfg: EvalConfig) -> list[int]:
    """Sorted start frames of up to cfg.windows windows; [] when the video is shorter than one window.

    A str seed goes through sha512 in `random.Random`, so positions are the same in every process.
    """
    n_valid = n_frames - cfg.span + 1
    if n_valid < 1:
        return []
    return sorted(random.Random(f"{cfg.seed}:{video}").sample(range(n_valid), min(cfg.windows, n_valid)))


@dataclass
class Windows:
    keys: list[tuple[str, int, int]]  # (video, window index, start frame) per window
    frames: torch.Tensor  # uint8 (N, S, 3, H, W), S = context + horizon
    latents: torch.Tensor  # float32 (N, S, C, h, w), normalised: (z - mean) / std


class Codec:
    """The tokenizer plus the latent normalisation: pixels <-> normalised latents, in batches."""

    def __init__(self, tokenizer, mean: torch.Tensor, std: torch.Tensor, device, batch: int = 64):
        self.tok, self.device, self.batch = tokenizer, device, batch
        self.mean = mean.float().view(-1, 1, 1).to(device)  # (C, 1, 1)
        self.std = std.float().view(-1, 1, 1).to(device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, T, C, h, w) -> frames (B, T, 3, H, W) clamped to [0, 1], on CPU."""
        flat = z.flatten(0, 1).to(self.device) * self.std + self.mean
        out = torch.cat([self.tok.decode(flat[i : i + self.batch]).float().cpu() for i in range(0, len(flat), self.batch)])
        return out.clamp(0, 1).view(*z.shape[:2], *out.shape[1:])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Frames float (B, T, 3, H, W) in [0, 1] -> normalised latents (B, T, C, h, w), on CPU."""
        flat = x.flatten(0, 1).to(self.device)
        z = torch.cat([self.tok.encode(flat[i : i + self.batch]).float() for i in range(0, len(flat), self.batch)])
        return ((z - self.mean) / self.std).cpu().view(*x.shape[:2], *z.shape[1:])


def score(pred_px, pred_z, truth_px, truth_z) -> dict[str, torch.Tensor]:
    """Per-window, per-step metrics (B, H) of predictions against the truth (all (B, H, ...))."""
    B, H = truth_px.shape[:2]
    a, b = pred_px.flatten(0, 1), truth_px.flatten(0, 1)  # (B*H, 3, H, W)
    out = {
        "psnr": metrics.psnr(a, b).clamp(max=PSNR_CAP_DB),
        "ssim": metrics.ssim(a, b),
        "mse": metrics.mse(a, b),
        "latent_mse": (pred_z.float() - truth_z.float()).pow(2).flatten(2).mean(2).flatten(),
    }
    return {k: v.view(B, H).cpu() for k, v in out.items()}


@torch.no_grad()
def evaluate_windows(model, codec: Codec, win: Windows, cfg: EvalConfig, rollout: Callable, sampler_config: Callable,
                     log: Callable[[str], None] = print):
    """Run every condition on every window. Returns (long DataFrame, frames/s per sampler, samples).

    `rollout(model, context, horizon, sampler, generator=, teacher=)` and `sampler_config(kind=,
    steps=, tau_ctx=)` are latentwm.sampler's, passed in so tests can use stand-ins.
    """
    C, H = cfg.context, cfg.horizon
    first = cfg.samplers[0].name
    rows: list[pd.DataFrame] = []
    frames_done = {s.name: 0 for s in cfg.samplers}
    seconds = {s.name: 0.0 for s in cfg.samplers}
    samples: list[dict[str, Any]] = []
    device = codec.device
    # one tiny untimed rollout first, so one-time costs (allocator, thread pools) hit no sampler's speed
    rollout(model, win.latents[:1, :C].to(device), 1, sampler_config(kind="euler", steps=1, tau_ctx=cfg.tau_ctx),
            generator=torch.Generator().manual_seed(0))
    for b0 in range(0, len(win.keys), cfg.batch_size):
        keys = win.keys[b0 : b0 + cfg.batch_size]
        lat = win.latents[b0 : b0 + len(keys)]  # (B, S, C, h, w) normalised
        ctx, truth_z = lat[:, :C].to(device), lat[:, C:]  # (B, C, ...), (B, H, ...)
        truth_px = to_float(win.frames[b0 : b0 + len(keys), C:])  # (B, H, 3, H, W)
        preds: dict[str, torch.Tensor] = {}  # label -> normalised latents (B, H, C, h, w)
        for s in cfg.samplers:
            sampler = sampler_config(kind=s.kind, steps=s.steps, tau_ctx=cfg.tau_ctx)
            # the same noise for every sampler and batch position: differences are the sampler's
            gen = torch.Generator().manual_seed(cfg.seed * 100003 + b0)
            _sync(device)
            t0 = time.perf_counter()
            out = rollout(model, ctx, H, sampler, generator=gen)
            _sync(device)
            seconds[s.name] += time.perf_counter() - t0
            frames_done[s.name] += out.shape[0] * out.shape[1]
            preds[label("model", s.name)] = out.float().cpu()
            if s.name == first:
                gen = torch.Generator().manual_seed(cfg.seed * 100003 + b0)
                tf = rollout(model, ctx, H, sampler, generator=gen, teacher=truth_z.to(device))
                preds[label("teacher_forced", s.name)] = tf.float().cpu()
        preds["copy_last"] = lat[:, C - 1 : C].expand(-1, H, -1, -1, -1)  # (B, H, C, h, w)
        ceiling_z = codec.encode(truth_px)
        pixels = {name: codec.decode(z) for name, z in preds.items()}
        pixels["ceiling"] = codec.decode(ceiling_z)
        preds["ceiling"] = ceiling_z
        for name, z in preds.items():
            condition, _, sampler_name = name.partition(":")
            for metric, values in score(pixels[name], z, truth_px, truth_z).items():  # (B, H) each
                rows.append(_long(keys, condition, sampler_name or NO_SAMPLER, metric, values))
        shown = [label("model", s.name) for s in cfg.samplers] + ["copy_last", "ceiling"]
        for i, key in enumerate(keys):
            if b0 + i < cfg.samples:
                samples.append({
                    "key": key,
                    "truth": win.frames[b0 + i],  # uint8 (S, 3, H, W): context and future
                    # rows of the filmstrip: each sampler's rollout, copy_last, the tokenizer ceiling
                    "predictions": {n: to_uint8(pixels[n][i]) for n in shown},
                })
        log(f"[evaluate] windows {b0 + len(keys)}/{len(win.keys)} done")
    fps = {n: frames_done[n] / max(seconds[n], 1e-9) for n in frames_done}
    return pd.concat(rows, ignore_index=True)[CSV_COLUMNS], fps, samples


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


def summarise(df: pd.DataFrame, fps: dict[str, float], cfg: EvalConfig) -> dict[str, Any]:
    """Per condition: mean per step and over steps of every metric; speed; baselines beaten at step 1."""
    per = df.groupby(["condition", "sampler", "metric", "step"])["value"].mean()
    out: dict[str, Any] = {}
    for (condition, sampler), part in per.groupby(level=["condition", "sampler"]):
        entry: dict[str, Any] = {"condition": condition, "sampler": sampler, "per_step": {}, "mean": {}}
        for metric in METRICS:
            steps = part.xs(metric, level="metric").sort_index(level="step").to_numpy()
            entry["per_step"][metric] = [float(v) for v in steps]
            entry["mean"][metric] = float(steps.mean())
        entry["windows"] = int(df[(df.condition == condition) & (df.sampler == sampler)][["video", "window"]]
                               .drop_duplicates().shape[0])
        if condition == "model":  # timed: the autoregressive rollout of this sampler
            entry["frames_per_s"] = fps[sampler]
        out[label(condition, sampler)] = entry
    copy1, ceil1 = out["copy_last"]["per_step"]["psnr"][0], out["ceiling"]["per_step"]["psnr"][0]
    for entry in out.values():
        if entry["condition"] in ("model", "teacher_forced"):
            p1 = entry["per_step"]["psnr"][0]
            entry["beats_copy_last_step1"] = bool(p1 > copy1)
            entry["beats_copy_last_mean"] = bool(entry["mean"]["psnr"] > out["copy_last"]["mean"]["psnr"])
            entry["psnr_gap_to_ceiling_step1"] = ceil1 - p1
    return out


def checks(conditions: dict[str, Any]) -> dict[str, Any]:
    """Red flags of an evaluation that fools itself (seeds/004: a PSNR of 6.00 that never moved)."""
    psnr = {n: np.array(c["per_step"]["psnr"]) for n, c in conditions.items()}
    names = sorted(psnr)
    identical = [f"{a} == {b}" for i, a in enumerate(names) for b in names[i + 1 :] if np.allclose(psnr[a], psnr[b], atol=1e-9)]
    best = np.max([v for n, v in psnr.items() if n != "ceiling"], axis=0)
    return {
        "identical_conditions": identical,  # two conditions with the same PSNR at every step: a bug
        "ceiling_best_every_step": bool(np.all(psnr["ceiling"] >= best)),
        "any_model_beats_copy_last_step1": any(c.get("beats_copy_last_step1", False) for c in conditions.values()),
    }


def load_windows(videos, frame_paths, latent_paths, cfg: EvalConfig, tokenizer_hash: str, mean, std, name: str, log):
    """Read the windows of every test video; refuse mismatched stores, skip too-short videos."""
    keys, frames, latents, short, shape = [], [], [], [], None
    for video, fpath, lpath in zip(videos, frame_paths, latent_paths):
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
        starts = window_starts(video, fr.shape[0], cfg)
        if not starts:
            short.append(f"{video} ({fr.shape[0]} frames)")
        for w, s in enumerate(starts):
            keys.append((video, w, s))
            frames.append(torch.from_numpy(np.asarray(fr[s : s + cfg.span])))
            z = torch.from_numpy(np.asarray(lat[s : s + cfg.span]).astype(np.float32))
            latents.append((z - mean.view(-1, 1, 1)) / std.view(-1, 1, 1))
    fix = (f"lower evaluations.{name}.context + horizon ({cfg.context} + {cfg.horizon} = {cfg.span}) "
           "or use longer test videos")
    if not keys:
        raise PipelineError(f"evaluation {name}: every test video is shorter than one window: {', '.join(short)}; {fix}")
    if short:
        log(f"WARNING: evaluation {name} skips test videos shorter than {cfg.span} frames: {', '.join(short)}; {fix}")
    return Windows(keys, torch.stack(frames), torch.stack(latents)), short


def run(*, dynamics_path, tokenizer_path, stats_path, videos, frame_paths, latent_paths, cfg: EvalConfig,
        metrics_csv, summary_json, name: str = "default", log: Callable[[str], None] = print,
        rollout: Callable | None = None, sampler_config: Callable | None = None):
    """The evaluate_rollouts rule: checks provenance, evaluates, writes the CSV and summary.

    Returns (summary dict, samples) so the caller can draw the samples.
    """
    if rollout is None or sampler_config is None:
        from .sampler import SamplerConfig, rollout as sampler_rollout

        rollout, sampler_config = rollout or sampler_rollout, sampler_config or SamplerConfig
    device = pick_device(cfg.device)
    ckpt = checkpoint.load(dynamics_path)
    tok_hash = checkpoint.file_hash(tokenizer_path)
    if ckpt.get("tokenizer_hash") != tok_hash:
        raise PipelineError(
            f"{dynamics_path} was trained on latents of tokenizer {ckpt.get('tokenizer_hash')!r} but {tokenizer_path} "
            f"is {tok_hash!r}; rerun encode_latents and train_dynamics (snakemake --forcerun encode_latents)"
        )
    with open(stats_path) as f:
        stats = json.load(f)
    mean, std = torch.tensor(stats["mean"], dtype=torch.float32), torch.tensor(stats["std"], dtype=torch.float32)
    trained = ckpt.get("stats")
    if trained is not None and not (np.allclose(trained["mean"], stats["mean"], atol=1e-6)
                                    and np.allclose(trained["std"], stats["std"], atol=1e-6)):
        raise PipelineError(f"{stats_path} differs from the latent stats {dynamics_path} was trained with; rerun train_dynamics")
    win, skipped = load_windows(videos, frame_paths, latent_paths, cfg, tok_hash, mean, std, name, log)
    log(f"[evaluate] {name}: {len(win.keys)} windows from {len(videos) - len(skipped)} test videos on {device}")
    codec = Codec(checkpoint.build_model(tokenizer_path, device, kind="tokenizer"), mean, std, device)
    model = checkpoint.build_model(ckpt, device, kind="dynamics")
    df, fps, samples = evaluate_windows(model, codec, win, cfg, rollout, sampler_config, log)
    conditions = summarise(df, fps, cfg)
    summary = {
        "evaluation": name,
        "config": to_dict(cfg),
        "device": str(device),
        "windows": [{"video": v, "window": w, "start": s} for v, w, s in win.keys],
        "skipped_videos": skipped,
        "psnr_cap_db": PSNR_CAP_DB,
        "conditions": conditions,
        "checks": checks(conditions),
    }
    for flag in summary["checks"]["identical_conditions"]:
        log(f"WARNING: {flag} in PSNR at every step: either the evaluation is broken (seeds/004) or the model "
            "ignores what it is given (e.g. model == teacher_forced: the context does not matter)")
    df.to_csv(metrics_csv, index=False)
    with open(summary_json, "w") as f:
        json.dump(summary, f, indent=2)
    for n, c in conditions.items():
        fps_txt = f" {c['frames_per_s']:.1f} frames/s" if "frames_per_s" in c else ""
        log(f"[evaluate] {n}: psnr step1 {c['per_step']['psnr'][0]:.2f} mean {c['mean']['psnr']:.2f} "
            f"ssim {c['mean']['ssim']:.3f} latent_mse {c['mean']['latent_mse']:.4f}{fps_txt}")
    return summary, samples

