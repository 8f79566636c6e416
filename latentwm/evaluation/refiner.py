"""Keyframe imputation scored on the held-out TEST videos, next to the baselines it must beat.

Windows: in every test video, a window of max(model spacings) + 1 frames starts every `stride`
frames (at most `max_windows` per video, evenly spaced; latentwm.evaluation.rollouts.window_starts).
For each scored spacing s the window's frames at multiples of s are the keyframes (its true
latents, or its real frames for the pixel baselines) and the frames between them are filled by

    refiner         the refiner at level s (`steps` Euler steps of its flow)
    refiner_levels  the refiner down the levels (s, then s/2 with the result's frames at multiples
                    of s/2 kept as keyframes, ...): `steps` network calls per level
    refiner_px      the refiner's change to the interpolation (refiner minus linear, decoded) added
                    onto the crossfade: real pixels where the refiner changes nothing
    linear          the latents interpolated linearly between the keyframes, decoded
    crossfade       the real keyframe frames crossfaded in pixels
    nearest         the nearer real keyframe repeated (the earlier one at the middle)
    ceiling         the true latents decoded: the best any filling can do with this tokenizer

and scored against the real frames by PSNR, SSIM and sharpness (latentwm.evaluation.metrics), per
position between two keyframes (1 .. s - 1; a window's value is the mean over its keyframe gaps).
Per spacing, condition, position and metric: the mean over windows with a bootstrap 95% interval;
the refiners paired with linear, crossfade and nearest by window. A refiner beats a baseline at a
spacing when the paired interval lies above 0 at every position; a refiner whose sharpness at the
middle position is under the blurred line (metrics.BLURRED_BELOW) beats nothing.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from latentwm.config.fields import to_dict
from latentwm.config.refiner import RefinerEval
from latentwm.core import files
from latentwm.core.device import pick_device
from latentwm.core.errors import PipelineError
from latentwm.core.image import to_float, to_uint8
from latentwm.data.store import open_store
from latentwm.evaluation import metrics as M
from latentwm.evaluation import summary as S
from latentwm.evaluation.rollouts import window_starts
from latentwm.models import checkpoint
from latentwm.models.codec import Codec
from latentwm.models.refiner import fill, interpolate

METRICS = ("psnr", "ssim", "sharpness")  # registry entries scored per in-between frame
DECODED = ("refiner", "refiner_levels")  # filled in latents, decoded
REFINERS = (*DECODED, "refiner_px")
BASELINES = ("linear", "crossfade", "nearest")
CONDITIONS = (*REFINERS, *BASELINES, "ceiling")
CSV_COLUMNS = ["video", "start", "spacing", "position", "condition", "metric", "value"]
BATCH = 16  # windows per batch


def load(refiner_path, tokenizer_path, device):
    """(refiner, its checkpoint, the Codec of the latents it was trained on), refusing another tokenizer."""
    ckpt = checkpoint.load(refiner_path)
    model = checkpoint.build_model(ckpt, device, kind="refiner")
    codec = Codec.load(tokenizer_path, ckpt["stats"], device, what=f"the latents refiner {refiner_path} was trained on")
    return model, ckpt, codec


def windows(videos, frame_paths, latent_paths, cfg: RefinerEval, span: int, stats: dict, codec: Codec, log) -> list[dict]:
    """Every window: video, start, real frames uint8 (span, 3, H, W), normalised latents (span, C, h, w)."""
    out, short = [], []
    spec = SimpleNamespace(span=span, stride=cfg.stride, max_windows=cfg.max_windows)
    for video, fpath, lpath in zip(videos, frame_paths, latent_paths):
        lat = open_store(lpath, expect={"tokenizer_hash": stats["tokenizer_hash"], "latent_shape": stats["latent_shape"]})
        fr = open_store(fpath)
        if lat.shape[0] != fr.shape[0]:
            raise PipelineError(f"{lpath} has {lat.shape[0]} frames but {fpath} has {fr.shape[0]}; rerun encode_latents")
        starts = window_starts(fr.shape[0], spec)
        short += [] if starts else [f"{video} ({fr.shape[0]} frames)"]
        for s in starts:
            z = torch.from_numpy(np.asarray(lat[s : s + span]).astype(np.float32))
            out.append({"video": video, "start": s, "frames": torch.from_numpy(np.asarray(fr[s : s + span])),
                        "latents": codec.norm.apply(z)})
    if not out:
        raise PipelineError(f"every test video is shorter than the refiner's window of {span} frames: {', '.join(short)}; "
                            "use longer test videos or smaller refiner.model.spacings")
    if short:
        log(f"WARNING: the refiner's evaluation skips test videos shorter than {span} frames: {', '.join(short)}")
    return out


def onto_pixels(refined: torch.Tensor, linear: torch.Tensor, crossfade: torch.Tensor) -> torch.Tensor:
    """The refiner's change to the interpolation, decoded, added onto the real keyframes' crossfade: what
    the keyframes share keeps their real pixels (the tokenizer's loss is paid only where the refiner
    changes something), and the keyframes stay exact."""
    return (crossfade + refined - linear).clamp(0, 1)


@torch.no_grad()
def fillings(model, codec: Codec, z: torch.Tensor, px: torch.Tensor, spacing: int, noise: float, steps: int,
             seed: int, ceiling: torch.Tensor) -> dict:
    """condition -> frames float (B, T, 3, H, W) of a batch of windows at `spacing` (CONDITIONS); `ceiling`:
    the batch's latents decoded, the same at every spacing."""
    dev = next(model.parameters()).device
    out = {name: codec.decode(fill(model, z.to(dev), spacing, name == "refiner_levels", noise, steps,
                                   torch.Generator().manual_seed(seed)))
           for name in DECODED}
    out["linear"] = codec.decode(interpolate(z, spacing))
    out["crossfade"] = interpolate(px, spacing)
    out["refiner_px"] = onto_pixels(out["refiner"], out["linear"], out["crossfade"])
    out["nearest"] = interpolate(px, spacing, "nearest")
    out["ceiling"] = ceiling
    return out


def score_batch(wins: list[dict], model, codec: Codec, spacings: list[int], noise: float, steps: int, seed: int) -> list[dict]:
    """Rows of metrics.csv for a batch of windows: per spacing, position, condition and metric."""
    z = torch.stack([w["latents"] for w in wins])
    px = to_float(torch.stack([w["frames"] for w in wins]))
    rows, ceiling = [], codec.decode(z)
    for s in spacings:
        preds = fillings(model, codec, z, px, s, noise, steps, seed + s, ceiling)
        gaps = (px.shape[1] - 1) // s
        for cond, pred in preds.items():
            for name in METRICS:
                v = M.metric(name).fn(pred, px)  # (B, T)
                per_pos = v[:, :-1].reshape(len(wins), gaps, s)[:, :, 1:]  # (B, gaps, s - 1): the in-between frames
                per_pos = per_pos.nanmean(1)  # sharpness is undefined on a flat true frame
                for b, w in enumerate(wins):
                    rows += [{"video": w["video"], "start": w["start"], "spacing": s, "position": p + 1, "condition": cond,
                              "metric": name, "value": float(per_pos[b, p])} for p in range(s - 1)]
    return rows


def matrix(df: pd.DataFrame, spacing: int, condition: str, metric: str) -> np.ndarray:
    """(windows, positions) values of one spacing, condition and metric, windows in a fixed order."""
    d = df[(df.spacing == spacing) & (df.condition == condition) & (df.metric == metric)]
    return d.pivot_table(index=["video", "start"], columns="position", values="value", sort=True, dropna=False).to_numpy()


def summarise(df: pd.DataFrame, spacings: list[int]) -> dict[str, Any]:
    """Per spacing: conditions' means and intervals per position; the refiners minus each baseline."""
    out: dict[str, Any] = {}
    for s in spacings:
        mats = {(c, m): matrix(df, s, c, m) for c in CONDITIONS for m in METRICS}
        idx = S.resamples(len(mats[CONDITIONS[0], METRICS[0]]))
        conds = {c: {m: dict(zip(("mean", "ci_low", "ci_high"), map(S.floats, S.bootstrap(mats[c, m], idx))))
                     for m in METRICS} for c in CONDITIONS}
        paired = {}
        for r in REFINERS:
            for b in BASELINES:
                for m in ("psnr", "ssim"):
                    mean, lo, hi = S.bootstrap(mats[r, m] - mats[b, m], idx)
                    paired.setdefault(r, {}).setdefault(b, {})[m] = {
                        "mean": S.floats(mean), "ci_low": S.floats(lo), "ci_high": S.floats(hi),
                        "beats_every_position": bool((lo > 0).all())}
        out[str(s)] = {"windows": len(idx[0]), "middle": s // 2, "conditions": conds, "paired": paired}
    return out


def verdict(by_spacing: dict) -> list[str]:
    """One sentence per refiner and spacing: blurred, or which baselines it beats in PSNR at every position."""
    lines = []
    for s, e in by_spacing.items():
        mid = e["middle"] - 1
        for r in REFINERS:
            sharp = e["conditions"][r]["sharpness"]["mean"][mid]
            lin_sharp = e["conditions"]["linear"]["sharpness"]["mean"][mid]
            what = {"refiner": "one level", "refiner_levels": "down the levels", "refiner_px": "onto the crossfade"}[r]
            head = f"spacing {s}, refiner ({what}):"
            if not sharp >= M.BLURRED_BELOW:
                lines.append(f"{head} is blurred (sharpness {sharp:.2f} of the truth's at the middle position, under "
                             f"{M.BLURRED_BELOW}), so it beats nothing")
                continue
            p = e["paired"][r]
            wins = [b for b in BASELINES if p[b]["psnr"]["beats_every_position"]]
            gains = ", ".join(f"{b} {p[b]['psnr']['mean'][mid]:+.2f} dB [{p[b]['psnr']['ci_low'][mid]:+.2f}, "
                              f"{p[b]['psnr']['ci_high'][mid]:+.2f}]" for b in BASELINES)
            beats = f"beats {', '.join(wins)} in PSNR at every position" if wins else "beats no baseline at every position"
            lines.append(f"{head} {beats}; at the middle: {gains}; sharpness {sharp:.2f} of the truth's "
                         f"(linear {lin_sharp:.2f})")
    return lines


def samples(wins: list[dict], model, codec: Codec, spacing: int, noise: float, steps: int, seed: int) -> list[dict]:
    """Filmstrip rows of the first windows at `spacing`: truth, nearest keyframe, linear, refiners."""
    px = to_float(torch.stack([w["frames"] for w in wins]))
    z = torch.stack([w["latents"] for w in wins])
    preds = fillings(model, codec, z, px, spacing, noise, steps, seed + spacing, codec.decode(z))
    shown = ("nearest", "linear", "crossfade", *REFINERS)
    return [{"name": f"{w['video']}_{w['start']:05d}_s{spacing}", "spacing": spacing, "truth": w["frames"],
             "predictions": {c: to_uint8(preds[c][b, 1:]) for c in shown}} for b, w in enumerate(wins)]


def evaluate(*, refiner_path, tokenizer_path, videos, frame_paths, latent_paths, cfg: RefinerEval, metrics_csv, summary_json,
             log=print) -> tuple[dict, list[dict]]:
    """The evaluate_refiner rule: metrics.csv and summary.json written; the filmstrips' frames returned."""
    device = pick_device(cfg.device)
    model, ckpt, codec = load(refiner_path, tokenizer_path, device)
    noise, seed = float(ckpt.get("noise", 0.0)), 0
    spacings = cfg.scored(model.cfg.spacings)
    wins = windows(videos, frame_paths, latent_paths, cfg, model.cfg.window(), ckpt["stats"], codec, log)
    rows = []
    for i in range(0, len(wins), BATCH):
        rows += score_batch(wins[i : i + BATCH], model, codec, spacings, noise, cfg.steps, seed + i)
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    files.write(metrics_csv, lambda tmp: df.to_csv(tmp, index=False))
    by_spacing = summarise(df, spacings)
    summary = {"verdict": verdict(by_spacing), "spacings": by_spacing, "windows": len(wins), "noise": noise,
               "metrics": [d for d in M.describe() if d["name"] in METRICS], "conditions": list(CONDITIONS),
               "refiner_steps": ckpt.get("step"), "config": to_dict(cfg)}
    files.write(summary_json, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))
    for line in summary["verdict"]:
        log(f"[refiner] {line}")
    return summary, samples(wins[: cfg.samples], model, codec, max(spacings), noise, cfg.steps, seed)
