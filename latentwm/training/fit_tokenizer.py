"""The tokenizer stage: fit (train_tokenizer's job) and the reconstruction scores it writes.

Trains latentwm.models.tokenizer on frames of the train videos through the shared loop, probes the
val frames for collapse at every log step, and writes tokenizer.pt, metrics.json, the curve and a
reconstructions figure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from latentwm.config.fields import to_dict
from latentwm.config.tokenizer import TokenizerStage
from latentwm.core import files, image, ranks
from latentwm.core.errors import PipelineError
from latentwm.core.image import to_float, to_uint8
from latentwm.data.store import input_identity, open_store
from latentwm.data.windows import FrameBatches
from latentwm.models import checkpoint
from latentwm.models.tokenizer import Tokenizer, inside, moved
from latentwm.training.loop import fingerprint, train


def evaluate(model: Tokenizer, frames: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    """Reconstruction metrics of uint8 frames (N, 3, H, W), plus the reconstructions (N, 3, H, W).

    Next to each metric, the baseline it must beat: predicting the mean frame for every input
    (what a collapsed tokenizer does at best).
    """
    was_training = model.training
    model.eval()
    x = to_float(frames)
    y = model.reconstruct(frames)
    with torch.no_grad():
        moved_x, moved_y = moved_frames(model, x)
    model.train(was_training)
    mean = x.mean(0, keepdim=True).expand_as(x)
    inner = lambda t: inside(t, model.cfg.downsample)  # noqa: E731
    out = {
        "psnr": image.psnr(y.clamp(0, 1), x).mean().item(),
        "ssim": image.ssim(y.clamp(0, 1), x).mean().item(),
        "mse": image.mse(y, x).mean().item(),
        "collapse_ratio": image.collapse_ratio(y, x).item(),
        "baseline_mean_frame_psnr": image.psnr(mean, x).mean().item(),
        "baseline_mean_frame_ssim": image.ssim(mean, x).mean().item(),
        "moved_psnr": image.psnr(inner(moved_y).clamp(0, 1), inner(moved_x)).mean().item(),
        "baseline_moved_copy_psnr": image.psnr(inner(x), inner(moved_x)).mean().item(),
    }
    return out, y


def moved_frames(model: Tokenizer, x: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames x (N, 3, H, W) moved right by half a latent cell, and the decoding of their latents
    moved as far: what the dynamics get when they follow a camera turning by part of a cell a frame
    as a blend of neighbouring cells (moved_psnr, next to the recon psnr and to not moving at all)."""
    device, d = next(model.parameters()).device, model.cfg.downsample
    half = lambda n: torch.tensor([[0.5, 0.0]], device=device).expand(n, 2)  # noqa: E731
    xs, ys = [], []
    for i in range(0, len(x), batch):
        b = x[i : i + batch].to(device)
        xs.append(moved(b, half(len(b)), d).cpu())
        ys.append(model.decode(moved(model.encode(b), half(len(b)), 1)).float().cpu())
    return torch.cat(xs), torch.cat(ys)


def check_collapse(ratio: float, threshold: float, where: str = "val frames") -> None:
    """Raise the one-line PipelineError of a collapsed tokenizer (its output no longer follows its input)."""
    if not ratio >= threshold:  # NaN counts as collapsed
        raise PipelineError(
            f"tokenizer collapsed: output varies {ratio:.3f} as much as input on {where} "
            f"(threshold tokenizer.collapse_threshold = {threshold}); likely causes: learning rate too "
            "high or too low (tokenizer.train.lr), too few steps (tokenizer.train.steps), mask_ratio too high, "
            "or near-identical training frames; fix the config and rerun"
        )


def sample_frames(paths, n: int) -> torch.Tensor:
    """n frames spread evenly over the given stores (same count from each): uint8 (n, 3, H, W)."""
    if not paths:
        raise PipelineError("no val videos to evaluate the tokenizer on; raise splits.val")
    per = [n // len(paths) + (i < n % len(paths)) for i in range(len(paths))]
    out = []
    for p, k in zip(paths, per):
        arr = open_store(p)
        idx = np.linspace(0, arr.shape[0] - 1, k).round().astype(int) if k else []
        out += [np.asarray(arr[int(t)]) for t in idx]
    return torch.from_numpy(np.stack(out))


def fit(stage: TokenizerStage, inputs, out, resume, log: Callable[[str], None] = print) -> None:
    """Train a tokenizer on the frame stores `inputs.train`, evaluate it on frames of `inputs.val`,
    refuse a collapsed one; write `out.checkpoint`, `out.metrics`, `out.curve` and `out.recon`.

    Resumes from `resume` and deletes it when done. On collapse: one PipelineError line, after
    deleting the curve so no output is left behind.
    """
    train_paths, val_paths = list(inputs.train), list(inputs.val)
    val = sample_frames(val_paths, stage.val_frames)  # (N, 3, H, W) uint8
    torch.manual_seed(stage.train.seed)  # the initial weights are part of the run's determinism
    model = Tokenizer(stage.model)
    shape = model.latent_shape(val.shape[2], val.shape[3])
    probe_frames = val[:16]

    def probe(m):  # called by the loop in eval mode under no_grad: is the output still input-driven?
        y = m.reconstruct(probe_frames)
        ratio = image.collapse_ratio(y, to_float(probe_frames)).item()
        psnr = image.psnr(y.clamp(0, 1), to_float(probe_frames)).mean().item()
        return {"collapsed": ratio < stage.collapse_threshold, "collapse_ratio": ratio, "val_psnr": psnr}

    n_params = sum(p.numel() for p in model.parameters())
    log(f"[tokenizer] {n_params / 1e6:.2f}M parameters; frames {tuple(val.shape[1:])} -> latents {shape}")
    t0 = time.perf_counter()
    state = train(
        model,
        FrameBatches(train_paths, stage.train.batch_size, stage.train.seed),
        stage.train,
        name="tokenizer",
        model_config=to_dict(stage.model),
        resume_path=resume,
        curve_path=out.curve,
        fingerprint=fingerprint(to_dict(stage), input_identity([*train_paths, *val_paths])),
        log=log,
        probe=probe,
    )
    wall = time.perf_counter() - t0
    if not ranks.context().main:
        return  # rank 0 evaluates and writes the outputs
    result, recon = evaluate(model, val)
    log(f"[tokenizer] val psnr {result['psnr']:.2f} dB ssim {result['ssim']:.4f} collapse ratio {result['collapse_ratio']:.3f}; "
        f"latents moved half a cell decode at {result['moved_psnr']:.2f} dB (not moving: "
        f"{result['baseline_moved_copy_psnr']:.2f})")
    if result["psnr"] <= result["baseline_mean_frame_psnr"]:
        log(f"WARNING: val psnr does not beat the mean-frame baseline ({result['baseline_mean_frame_psnr']:.2f} dB)")
    try:
        check_collapse(result["collapse_ratio"], stage.collapse_threshold)
    except PipelineError:
        Path(out.curve).unlink(missing_ok=True)
        raise
    result.update(steps=state["step"], wall_time_s=wall, parameters=n_params, latent_shape=shape, val_frames=len(val),
                  val_videos=[Path(p).name.removesuffix(".zarr") for p in val_paths], health=state.pop("health"))
    checkpoint.save(out.checkpoint, state)
    files.write(out.metrics, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    from latentwm.figures import plots

    plots.reconstructions(out.recon, val, to_uint8(recon))
    Path(resume).unlink(missing_ok=True)
    log(f"[tokenizer] wrote {out.checkpoint}")
