"""The tokenizer: a convolutional autoencoder from frames to continuous latents and back.

    encode  float (B, 3, H, W) in [0, 1]  ->  (B, C, H/d, W/d) in (-1, 1)   d = cfg.downsample
    decode  (B, C, h, w)                 ->  float (B, 3, H, W), roughly [0, 1], unclamped
    forward uint8 frames (B, 3, H, W)    ->  (loss, logs): the shared loop's contract

GroupNorm/SiLU residual blocks, stride-2 convolutions down, nearest upsampling + conv up, no
pretrained weights. The latents pass through tanh (the DreamerV4 bottleneck) so their scale is
bounded whatever the training does; the dynamics model then sees values of a known range.
Training may drop random patches of the encoder input (MAE-style, `mask_ratio`), which makes
the latents robust and the decoder fill in; evaluation never masks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import atomic, checkpoint, distributed, metrics
from .config import to_dict
from .data import FrameBatches
from .errors import PipelineError
from .store import input_identity, open_store
from .settings import TokenizerConfig, TokenizerStage
from .train import fingerprint, train


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 in [0, 1]."""
    return frames.float() / 255.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] (any range; clamped) -> uint8, rounded."""
    return (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)


class ResBlock(nn.Module):
    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, ch), nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable from step 0
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):  # (B, ch, H, W) -> same
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        w, g = cfg.widths(), cfg.groups
        self.conv_in = nn.Conv2d(3, w[0], 3, padding=1)
        layers = []
        for i in range(cfg.levels()):
            layers += [ResBlock(w[i], g) for _ in range(cfg.blocks)]
            layers.append(nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1))  # H -> H/2
        layers += [ResBlock(w[-1], g) for _ in range(cfg.blocks)]
        self.body = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(g, w[-1])
        self.conv_out = nn.Conv2d(w[-1], cfg.latent_channels, 3, padding=1)

    def forward(self, x):  # (B, 3, H, W) in [-1, 1] -> (B, C, H/d, W/d) in (-1, 1)
        h = self.body(self.conv_in(x))
        return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        w, g = cfg.widths(), cfg.groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, w[-1], 3, padding=1)
        layers = [ResBlock(w[-1], g) for _ in range(cfg.blocks)]
        for i in reversed(range(cfg.levels())):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w[i + 1], w[i], 3, padding=1)]
            layers += [ResBlock(w[i], g) for _ in range(cfg.blocks)]
        self.body = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(g, w[0])
        self.conv_out = nn.Conv2d(w[0], 3, 3, padding=1)

    def forward(self, z):  # (B, C, h, w) -> (B, 3, H, W) in about [-1, 1]
        return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(z)))))


class Tokenizer(nn.Module):
    config_class = TokenizerConfig

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def network(self) -> Tokenizer:
        """What the checkpoint holds (the loop's contract): the tokenizer itself."""
        return self

    def latent_shape(self, height: int, width: int) -> list[int]:
        return self.cfg.latent_shape(height, width)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """float (B, 3, H, W) in [0, 1] -> latents (B, C, h, w)."""
        return self.encoder(x * 2 - 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latents (B, C, h, w) -> float (B, 3, H, W), about [0, 1], not clamped."""
        return (self.decoder(z) + 1) / 2

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Hide a random `mask_ratio` of the patches of x (B, 3, H, W) in [0, 1] with mid-grey."""
        p = self.cfg.mask_patch
        b, _, h, w = x.shape
        keep = torch.rand(b, 1, -(-h // p), -(-w // p), device=x.device) >= self.cfg.mask_ratio  # (B, 1, H/p, W/p)
        keep = keep.repeat_interleave(p, 2).repeat_interleave(p, 3)[:, :, :h, :w]
        return torch.where(keep, x, torch.full_like(x, 0.5))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame random horizontal/vertical flips and RGB order: more palettes and layouts
        than a few training videos hold, so unseen videos' colours reconstruct as well."""
        b = x.shape[0]
        flip_w = torch.rand(b, device=x.device) < 0.5
        flip_h = torch.rand(b, device=x.device) < 0.5
        x = torch.where(flip_w[:, None, None, None], x.flip(3), x)
        x = torch.where(flip_h[:, None, None, None], x.flip(2), x)
        order = torch.rand(b, 3, device=x.device).argsort(1)  # (B, 3) a permutation per frame
        return x.gather(1, order[:, :, None, None].expand_as(x))

    def forward(self, frames: torch.Tensor):
        """uint8 frames (B, 3, H, W) -> (loss, logs). Augmentation and masking apply in training only."""
        x = to_float(frames)
        if self.training and self.cfg.augment:
            x = self.augment(x)
        inp = self.mask(x) if self.training and self.cfg.mask_ratio > 0 else x
        y = self.decode(self.encode(inp)).float()
        err = metrics.mse(y, x)  # (B,)
        loss = err.mean()
        logs = {"psnr": metrics.psnr(y.detach(), x).mean()}
        if self.cfg.ssim_weight > 0:
            s = metrics.ssim(y, x).mean()
            loss = loss + self.cfg.ssim_weight * (1 - s)
            logs["ssim"] = s.detach()
        return loss, logs

    @torch.no_grad()
    def reconstruct(self, frames: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """uint8 frames (N, 3, H, W) -> float reconstructions (N, 3, H, W) on the CPU, in batches."""
        device = next(self.parameters()).device
        out = [
            self.decode(self.encode(to_float(frames[i : i + batch_size].to(device)))).float().cpu()
            for i in range(0, len(frames), batch_size)
        ]
        return torch.cat(out)


def evaluate(model: Tokenizer, frames: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    """Reconstruction metrics of uint8 frames (N, 3, H, W), plus the reconstructions (N, 3, H, W).

    Next to each metric, the baseline it must beat: predicting the mean frame for every input
    (what a collapsed tokenizer does at best).
    """
    was_training = model.training
    model.eval()
    x = to_float(frames)
    y = model.reconstruct(frames)
    model.train(was_training)
    mean = x.mean(0, keepdim=True).expand_as(x)
    out = {
        "psnr": metrics.psnr(y.clamp(0, 1), x).mean().item(),
        "ssim": metrics.ssim(y.clamp(0, 1), x).mean().item(),
        "mse": metrics.mse(y, x).mean().item(),
        "collapse_ratio": metrics.collapse_ratio(y, x).item(),
        "baseline_mean_frame_psnr": metrics.psnr(mean, x).mean().item(),
        "baseline_mean_frame_ssim": metrics.ssim(mean, x).mean().item(),
    }
    return out, y


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
        ratio = metrics.collapse_ratio(y, to_float(probe_frames)).item()
        psnr = metrics.psnr(y.clamp(0, 1), to_float(probe_frames)).mean().item()
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
    if not distributed.context().main:
        return  # rank 0 evaluates and writes the outputs
    result, recon = evaluate(model, val)
    log(f"[tokenizer] val psnr {result['psnr']:.2f} dB ssim {result['ssim']:.4f} collapse ratio {result['collapse_ratio']:.3f}")
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
    atomic.write(out.metrics, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    from . import plots  # matplotlib: only for the job that draws

    plots.reconstructions(out.recon, val, to_uint8(recon))
    Path(resume).unlink(missing_ok=True)
    log(f"[tokenizer] wrote {out.checkpoint}")
