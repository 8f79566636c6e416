"""Keyframe imputation by hand (workflow_scripts/refine.py): keyframes from a video or from images,
filled by a trained refiner, written as a GIF or an MP4; and "roll out, then fill": a dynamics
model's rollout kept at every k-th frame and the frames between filled by the refiner, scored
against the plain rollout at the same horizon.

Keyframes pass through the tokenizer (encode, fill, decode), so the keyframes of the output are
the tokenizer's reconstructions of the given ones; a video's in-between frames are scored against
it, the refiner next to linear interpolation of the latents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.core.image import psnr, sharpness, to_float, to_uint8
from latentwm.data.actions import NO_ACTION
from latentwm.data.store import open_store
from latentwm.data.video import encode_mp4, frame_rate, iter_frames, probe
from latentwm.evaluation import summary as S
from latentwm.evaluation.refiner import load
from latentwm.evaluation.steer import load as load_dynamics
from latentwm.figures.samples import frames_gif
from latentwm.models import checkpoint
from latentwm.models.refiner import fill_sequence, interpolate
from latentwm.models.sampler import own_sampler, rollout, trained_tau_ctx

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def frame_size(codec, stats: dict) -> tuple[int, int]:
    """(H, W) of the frames whose latents `stats` describes: the latent grid times the tokenizer's downsampling."""
    _, h, w = stats["latent_shape"]
    return h * codec.tok.cfg.downsample, w * codec.tok.cfg.downsample


def video_frames(path, ceiling: float, height: int, width: int, resize: str = "crop") -> tuple[np.ndarray, float]:
    """Every frame of a video at the rate extraction reads it at under `ceiling` (frame_rate: a slower
    video keeps its own), resized: uint8 (N, 3, H, W), and that rate."""
    if not Path(path).is_file():
        raise PipelineError(f"--video {path} is not a file; give a video file (mp4, mkv, webm, ...)")
    fps = frame_rate(probe(path)["fps"], ceiling)
    return np.concatenate(list(iter_frames(path, fps, height, width, resize))), fps


def image_frames(folder, height: int, width: int) -> np.ndarray:
    """The images of `folder` in name order, cropped to the aspect and resized: uint8 (N, 3, H, W)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if Path(folder).is_dir() else []
    if len(paths) < 2:
        raise PipelineError(f"--images {folder} holds {len(paths)} images ({', '.join(IMAGE_SUFFIXES)}); give a folder "
                            "of at least two keyframe images, named in their order")
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                s = max(width / im.width, height / im.height)
                im = im.resize((max(width, round(im.width * s)), max(height, round(im.height * s))), Image.Resampling.BOX)
                left, top = (im.width - width) // 2, (im.height - height) // 2
                out.append(np.asarray(im.crop((left, top, left + width, top + height))).transpose(2, 0, 1))
        except OSError as e:
            raise PipelineError(f"image {p} cannot be read ({e}); remove it or replace it with a PNG or JPEG") from None
    return np.stack(out)


def impute(model, codec, keys: np.ndarray, spacing: int, levels: bool, noise: float = 0.0, steps: int = 1,
           seed: int = 0) -> dict[str, np.ndarray]:
    """Keyframes uint8 (N, 3, H, W), `spacing` frames apart -> uint8 (M, 3, H, W) frames, M = (N - 1) spacing + 1:
    "refiner" (filled) and "linear" (the latents interpolated linearly), both decoded."""
    if spacing not in model.cfg.spacings:
        raise PipelineError(f"--spacing {spacing}: the refiner is trained on spacings {model.cfg.spacings}; pick one")
    z = codec.encode(to_float(torch.from_numpy(keys))[None])[0]  # (N, C, h, w)
    filled = fill_sequence(model, z, spacing, levels, noise, steps, torch.Generator().manual_seed(seed))
    chain = torch.zeros(len(filled), *z.shape[1:])
    chain[::spacing] = z
    lin = interpolate(chain[None], spacing)[0]
    return {name: to_uint8(codec.decode(x[None])[0]).numpy() for name, x in (("refiner", filled), ("linear", lin))}


def write_video(frames: np.ndarray, out, fps: float) -> None:
    """uint8 (M, 3, H, W) -> a GIF or an MP4 at `out` (by its suffix), whole or not at all."""
    hwc = frames.transpose(0, 2, 3, 1)
    suffix = Path(out).suffix.lower()
    if suffix == ".gif":
        frames_gif(hwc, out, fps)
    elif suffix == ".mp4":
        files.write(out, lambda tmp: encode_mp4(tmp, hwc, fps, *hwc.shape[1:3], str(out)), keep_suffix=True)
    else:
        raise PipelineError(f"--out {out}: write a .gif or an .mp4")


def scored(filled: dict[str, np.ndarray], truth: np.ndarray, spacing: int) -> dict[str, dict[str, float]]:
    """PSNR and sharpness of each filling's in-between frames against the truth (M frames)."""
    free = np.arange(len(truth)) % spacing != 0
    t = to_float(torch.from_numpy(truth[free]))
    return {name: {"psnr": float(psnr(to_float(torch.from_numpy(f[free])), t).mean()),
                   "sharpness": float(sharpness(to_float(torch.from_numpy(f[free])), t).nanmean())}
            for name, f in filled.items()}


def fill_file(refiner_path, tokenizer_path, out, spacing: int, levels: bool, steps: int, fps: float, video=None,
              images=None, start: int = 0, keys: int | None = None, log: Callable[[str], None] = print,
              resize: str = "crop") -> dict:
    """Keyframes of a video (every `spacing`-th frame from `start`, `keys` of them or as many as fit) or of a
    folder of images, filled and written to `out` (GIF or MP4) at `fps`; a video's in-between frames scored.
    For a video `fps` is a ceiling, as frames.fps is for extraction: a slower video keeps its own rate."""
    model, ckpt, codec = load(refiner_path, tokenizer_path, "cpu")
    h, w = frame_size(codec, ckpt["stats"])
    truth = None
    if video is not None:
        frames, fps = video_frames(video, fps, h, w, resize)
        n = (len(frames) - 1 - start) // spacing + 1 if keys is None else keys
        truth = frames[start : start + (n - 1) * spacing + 1]
        if n < 2 or len(truth) < (n - 1) * spacing + 1:
            raise PipelineError(f"--video {video} has {len(frames)} frames at {fps} fps: {n} keyframes every {spacing} "
                                f"from {start} do not fit; lower --start, --keys or --spacing")
        key_frames = truth[::spacing]
    else:
        key_frames = image_frames(images, h, w)
    filled = impute(model, codec, key_frames, spacing, levels, float(ckpt.get("noise", 0.0)), steps)
    write_video(filled["refiner"], out, fps)
    log(f"[refine] wrote {out}: {len(filled['refiner'])} frames from {len(key_frames)} keyframes every {spacing}")
    result = scored(filled, truth, spacing) if truth is not None else {}
    for name, m in result.items():
        log(f"[refine] {name}: in-between frames {m['psnr']:.2f} dB, sharpness {m['sharpness']:.2f} of the video's")
    return result


@torch.no_grad()
def rollout_then_fill(dynamics_path, tokenizer_path, refiner_path, latent_paths, frame_paths, every: int, horizon: int,
                      context: int, max_windows: int, levels: bool, steps: int, out_json,
                      log: Callable[[str], None] = print) -> dict:
    """The dynamics model's rollout (its own sampler, no actions) over `horizon` frames from real contexts of the
    stores; "filled": its frames at every `every`-th step kept, the refiner fills the rest; per step, PSNR and
    sharpness of both against the truth, filled minus plain paired by window with bootstrap intervals."""
    model, codec, ckpt = load_dynamics(dynamics_path, tokenizer_path, need_actions=False)
    rckpt = checkpoint.load(refiner_path)  # the dynamics model's codec serves both: the same latents, checked here
    refiner = checkpoint.build_model(rckpt, "cpu", kind="refiner")
    if rckpt["stats"] != ckpt["stats"]:
        raise PipelineError(f"{refiner_path} and {dynamics_path} were trained on different latents; retrain one of them")
    if horizon % every:
        raise PipelineError(f"--horizon {horizon} is not a multiple of --every {every}: the last frame must be a keyframe")
    sampler, tau_ctx = own_sampler(model), trained_tau_ctx(ckpt)
    vals: dict[str, dict[str, list]] = {"plain": {"psnr": [], "sharpness": []}, "filled": {"psnr": [], "sharpness": []}}
    for lpath, fpath in zip(latent_paths, frame_paths):
        lat, fr = open_store(lpath, {"tokenizer_hash": ckpt["tokenizer_hash"]}), open_store(fpath)
        span = context + horizon
        for s in list(range(0, lat.shape[0] - span + 1, span))[:max_windows]:
            z = codec.norm.apply(torch.from_numpy(np.asarray(lat[s : s + span], np.float32)))[None]
            acts = torch.full((1, span), NO_ACTION) if model.cfg.actions else None
            plain = rollout(model, z[:, :context], horizon, sampler, generator=torch.Generator().manual_seed(s),
                            actions=acts, tau_ctx=tau_ctx)[0]
            chain = torch.cat([z[0, context - 1 : context], plain])[::every]  # keyframes: the last context frame, then every k-th
            filled = fill_sequence(refiner, chain, every, levels, float(rckpt.get("noise", 0.0)), steps,
                                   torch.Generator().manual_seed(s))[1:]
            truth = to_float(torch.from_numpy(np.asarray(fr[s + context : s + span])))
            for name, x in (("plain", plain), ("filled", filled)):
                px = codec.decode(x[None])[0]
                vals[name]["psnr"].append(psnr(px, truth).numpy())
                vals[name]["sharpness"].append(sharpness(px, truth).numpy())
    if not vals["plain"]["psnr"]:
        raise PipelineError(f"no test video holds context + horizon = {context + horizon} frames; lower them")
    arr = {c: {m: np.stack(v) for m, v in ms.items()} for c, ms in vals.items()}  # (windows, horizon)
    idx = S.resamples(len(arr["plain"]["psnr"]))
    res = {"every": every, "horizon": horizon, "windows": len(idx[0]), "levels": levels,
           **{f"{c}_{m}": S.floats(a.mean(0)) for c, ms in arr.items() for m, a in ms.items()}}
    mean, lo, hi = S.bootstrap(arr["filled"]["psnr"] - arr["plain"]["psnr"], idx)
    res["filled_minus_plain_psnr"] = {"mean": S.floats(mean), "ci_low": S.floats(lo), "ci_high": S.floats(hi)}
    files.write(out_json, lambda tmp: tmp.write_text(json.dumps(res, indent=2) + "\n"))
    for t in range(horizon):
        log(f"step {t + 1}: plain {res['plain_psnr'][t]:.2f} dB (sharpness {res['plain_sharpness'][t]:.2f}), filled "
            f"{res['filled_psnr'][t]:.2f} dB ({res['filled_sharpness'][t]:.2f}); filled - plain {mean[t]:+.2f} "
            f"[{lo[t]:+.2f}, {hi[t]:+.2f}]")
    return res
