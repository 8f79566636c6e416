"""Keyframe imputation: a refiner that fills the frames between given keyframes.

Its forward process is not Gaussian noise but "keep the keyframes, interpolate the frames between
them (plus optional noise)"; the network corrects the interpolation toward the true frames. On a
window of T = max(spacings) + 1 normalised latent frames (B, T, C, h, w) and one level (spacing s,
T - 1 a multiple of s):

    keyframes   frames 0, s, 2s, ... (nested: a coarser level's keyframes are a finer one's too)
    interpolate the frames between two keyframes, linearly or from the nearer one (`interpolate`, the
                same for pixels)
    corrupt     the forward process: x_tau = (1 - tau) (interpolation + noise eps) + tau truth on the
                frames between keyframes, keyframes kept (tau 0: the interpolation plus noise)
    Refiner     (x_tau, s, tau) -> the true window predicted: x_tau + a correction per frame (zero
                at initialisation), keyframes replaced by the given ones exactly
    fill        at level s, `steps` Euler steps of the flow from tau 0 to 1 (one: the prediction
                from the interpolation itself); in one level, or down the levels (s; then the
                result's frames at multiples of s/2 kept as keyframes for level s/2; ... down to the
                finest spacing)
    fill_sequence   any number of keyframes at one spacing, in windows of T frames

Noise and the flow (refiner.noise, evaluation.steps): a network that predicts the frames between
keyframes from their interpolation alone learns their mean over every way the scene could have
moved, blurred where the keyframes leave the motion open. Trained on x_tau with noise and moved
toward its own prediction in a few steps, each fill is meant to be one of those ways (the dynamics
model's flow matching, with the interpolation as the place the flow starts). Without noise (the
default: docs/EXPERIMENTS.md) it trains at tau 0 only and fills in one step.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from latentwm.config.refiner import RefinerConfig, RefinerStage
from latentwm.core.errors import PipelineError

DILATIONS = (1, 2, 4)


def keyframe_mask(frames: int, spacing: int) -> torch.Tensor:
    """bool (frames,): the keyframes of a window of `frames` frames at `spacing`."""
    return torch.arange(frames) % spacing == 0


def interpolate(x: torch.Tensor, spacing: int, kind: str = "linear") -> torch.Tensor:
    """(B, T, ...) -> the same with every frame between two keyframes (multiples of `spacing`) filled from
    them: "linear" their linear interpolation, "nearest" the nearer one (the earlier at the middle);
    keyframes unchanged. T - 1 must be a multiple of `spacing`."""
    T = x.shape[1]
    if (T - 1) % spacing:
        raise PipelineError(f"a window of {T} frames has no keyframe at its end for spacing {spacing}")
    t = torch.arange(T)
    left = (t // spacing) * spacing
    right = torch.clamp(left + spacing, max=T - 1)
    a = (t - left).float() / spacing
    a = (a > 0.5).float() if kind == "nearest" else a
    a = a.view(1, T, *([1] * (x.dim() - 2))).to(x.device, x.dtype)
    return x[:, left] * (1 - a) + x[:, right] * a


class Block(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        groups = 8 if width % 8 == 0 else 1
        self.norm1, self.norm2 = nn.GroupNorm(groups, width), nn.GroupNorm(groups, width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h):
        return h + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(h))))))


class Refiner(nn.Module):
    """(B, T, C, h, w) interpolated window, spacing -> the refined window (keyframes exact)."""

    config_class = RefinerConfig

    def __init__(self, cfg: RefinerConfig):
        super().__init__()
        if cfg.latent_channels is None:
            raise PipelineError("refiner.model.latent_channels is unset; build the refiner through fit or a checkpoint")
        self.cfg = cfg
        T, C, L = cfg.window(), cfg.latent_channels, len(cfg.spacings)
        self.stem = nn.Conv2d(T * C + T + L + 1, cfg.width, 3, padding=1)  # latents, keyframe mask, level, tau
        self.blocks = nn.ModuleList(Block(cfg.width, DILATIONS[i % len(DILATIONS)]) for i in range(cfg.blocks))
        self.out = nn.Conv2d(cfg.width, T * C, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # zero correction: a fresh refiner is the interpolation
        nn.init.zeros_(self.out.bias)

    def level(self, spacing: int) -> int:
        if spacing not in self.cfg.spacings:
            raise PipelineError(f"the refiner knows spacings {self.cfg.spacings}, not {spacing}")
        return self.cfg.spacings.index(spacing)

    def forward(self, z: torch.Tensor, spacing: int, tau=0.0, keys: torch.Tensor | None = None) -> torch.Tensor:
        """z: the corrupted window x_tau (B, T, C, h, w) at flow time `tau` (a float or (B,)); keys: the true
        keyframes' window (default z) whose keyframes the output keeps bit-exactly."""
        B, T, C, h, w = z.shape
        mask = keyframe_mask(T, spacing).to(z.device)
        level = F.one_hot(torch.tensor(self.level(spacing)), len(self.cfg.spacings)).to(z.device, z.dtype)
        cond = torch.cat([mask.to(z.dtype), level]).view(1, -1, 1, 1).expand(B, -1, h, w)
        t = torch.as_tensor(tau, dtype=z.dtype, device=z.device).expand(B).view(B, 1, 1, 1).expand(B, 1, h, w)
        x = self.stem(torch.cat([z.reshape(B, T * C, h, w), cond, t], 1))
        for block in self.blocks:
            x = block(x)
        out = z + self.out(F.silu(x)).view(B, T, C, h, w).to(z.dtype)
        keys = z if keys is None else keys
        return torch.where(mask.view(1, T, 1, 1, 1), keys, out)


def corrupt(z: torch.Tensor, spacing: int, noise: float, tau=0.0, generator: torch.Generator | None = None,
            kind: str = "linear") -> torch.Tensor:
    """The forward process at flow time `tau` (a float or (B,)): keyframes of `z` kept, the frames between
    (1 - tau) (their interpolation of `kind` + `noise` x N(0, 1)) + tau z."""
    x = interpolate(z, spacing, kind)
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=generator, device="cpu").to(x.device, x.dtype)
    t = torch.as_tensor(tau, dtype=z.dtype, device=z.device).reshape(-1, *([1] * (z.dim() - 1)))
    x = (1 - t) * x + t * z
    return torch.where(keyframe_mask(z.shape[1], spacing).to(z.device).view(1, -1, 1, 1, 1), z, x)


@torch.no_grad()
def fill(model: Refiner, keys: torch.Tensor, spacing: int, levels: bool, noise: float = 0.0, steps: int = 1,
         generator=None) -> torch.Tensor:
    """Windows (B, T, C, h, w) whose frames at multiples of `spacing` are the keyframes (the others are
    ignored) -> filled windows: at level `spacing`, or (levels) down every finer level, each in `steps`
    Euler steps of the flow (the last step lands on the network's prediction)."""
    spacings = [s for s in model.cfg.spacings if s <= spacing and spacing % s == 0][::-1] if levels else [spacing]
    z = keys
    for s in spacings:
        x = corrupt(z, s, noise, 0.0, generator, model.cfg.interpolation)
        for k in range(steps):
            t = k / steps
            x = x + (model(x, s, t, keys=z) - x) / (steps - k)  # Euler with dt = 1/steps on v = (x1 - x) / (1 - t)
        z = x
    return z


def loss_fn(noise: float, reverse: bool = False):
    """The loop's loss: a level drawn per batch and (with noise) a flow time per window, the true window
    corrupted there; MSE of the predicted window on the frames between keyframes (normalised latents). With
    `reverse`, half the windows (drawn per window) are played backwards."""

    def fn(model: Refiner, z: torch.Tensor):
        spacings = model.cfg.spacings
        s = spacings[int(torch.randint(len(spacings), ()))]
        if reverse:  # the frames between two keyframes are as likely played backwards: twice the windows
            back = torch.rand(z.shape[0], device=z.device) < 0.5
            z = torch.where(back.view(-1, 1, 1, 1, 1), z.flip(1), z)
        # without noise the start is the interpolation itself: one step from it is the whole fill
        tau = torch.rand(z.shape[0], device=z.device) if noise > 0 else torch.zeros(z.shape[0], device=z.device)
        out = model(corrupt(z, s, noise, tau, kind=model.cfg.interpolation), s, tau, keys=z)
        free = ~keyframe_mask(z.shape[1], s).to(z.device)
        err = (out.float() - z.float())[:, free].pow(2).mean()
        return err, {f"loss_s{s}": err.detach()}

    return fn


@torch.no_grad()
def fill_sequence(model: Refiner, keys: torch.Tensor, spacing: int, levels: bool, noise: float = 0.0, steps: int = 1,
                  generator=None) -> torch.Tensor:
    """Keyframes (N, C, h, w), `spacing` frames apart -> the (N - 1) * spacing + 1 frames, filled window
    by window (T - 1 = max(spacings) frames each; the last window padded with copies of the last keyframe)."""
    T = model.cfg.window()
    per = (T - 1) // spacing  # keyframe gaps per window
    n = len(keys)
    if n < 2:
        raise PipelineError("filling needs at least two keyframes")
    gaps = -(-(n - 1) // per) * per
    padded = torch.cat([keys, keys[-1:].expand(gaps - (n - 1), *keys.shape[1:])])
    wins = []
    for g in range(0, gaps, per):
        w = torch.zeros(T, *keys.shape[1:], dtype=keys.dtype, device=keys.device)
        w[::spacing] = padded[g : g + per + 1]
        wins.append(w)
    z = fill(model, torch.stack(wins), spacing, levels, noise, steps, generator)  # (W, T, C, h, w)
    frames = torch.cat([z[0, :1], *(wz[1:] for wz in z)])
    return frames[: (n - 1) * spacing + 1]


def build(stage: RefinerStage, latent_shape) -> Refiner:
    """The refiner for latents of `latent_shape` [C, h, w] (a set latent_channels must match)."""
    C = int(latent_shape[0])
    cfg = stage.model
    if cfg.latent_channels not in (None, C):
        raise PipelineError(f"refiner.model.latent_channels is {cfg.latent_channels} but the latents have {C}; set it to "
                            f"{C} or null (null: taken from the latents)")
    return Refiner(RefinerConfig(spacings=list(cfg.spacings), width=cfg.width, blocks=cfg.blocks,
                                 interpolation=cfg.interpolation, latent_channels=C))
