"""The conv dynamics network: each frame denoised from its last few frames stacked on channels.

The same contract as the transformer (latentwm.models.dynamics.transformer.Dynamics): z (B, T, C, h, w) latent
frames, each at its own noise level tau (B, T) and shortcut step size d (B, T), -> the clean-frame
prediction x0_hat of the same shape, so the flow objective, the sampler and the evaluation use
either network unchanged.

Frame t is predicted from the K = conv_frames frames before it and its own noisy latent, stacked on
channels ((K + 1) C channels at the full h x w grid, as DIAMOND's denoiser stacks its past
observations; with `conv_patch` P, each P x P block of cells side by side on channels, so a finer
latent grid costs the blocks no more), through `conv_blocks` residual 3x3 conv blocks whose
GroupNorm is modulated (FiLM) by the frame's conditioning: its own level and step size, the levels
of the K frames it sees, and its action. Past frames enter as their best linear guess
`denoised(z, tau)` (a frame at pure noise, or one before the window start, is 0). With `residual`,
the output is added to the previous frame's guess: the untrained network copies the last frame, so
static parts (a HUD) cost nothing. With `conv_warp`, that previous frame is first moved as a whole:
a mixture of its copies shifted by -R..R cells across (R = w / 4) and -R'..R' down (R' = h / 8),
with weights (a softmax per axis) from the frame's conditioning (its action) and how the frame
before it matched the previous one under each shift (the camera's motion so far: a global
block-matching cost, as classical video coding estimates it); the blocks see the moved frame too. A
camera that turns moves the whole frame several cells at once, which 3x3 convs otherwise have to
carry across their receptive field and, unsure of the amount, blur instead; a mixture over every
shift gets a gradient for each of them, where a single predicted shift only learns from its
neighbours (a bilinear shift measured on real footage stayed under a quarter cell). At
initialisation the no-shift copy has most weight.

Why a conv: every latent cell sees its neighbours at full resolution from the first layer, where
the tiny transformer's 4x4 patches blur fine detail; the A/B on real footage is in
docs/EXPERIMENTS.md.
`predict` (B, T) bool names the frames whose prediction the caller uses (the objective's targets,
a rollout's new frame): only those are computed; the others return the previous frame's guess.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latentwm.config.dynamics import DynamicsConfig
from latentwm.models.dynamics.parts import action_index, check_latents, denoised, step_index, tau_features
from latentwm.models.flow import step_sizes

LEVEL_FEATURES = 32  # sinusoidal features per noise level in the conditioning


class FrameCache:
    """The last K committed frames and their levels, for rollouts (the conv's KVCache).

    Same use as KVCache: `model(prefix, ..., cache=cache, commit=P)` keeps the first P frames of
    the call; later calls see them as the frames before their own. `pos` counts committed frames.
    """

    def __init__(self, keep: int):
        self.keep, self.pos = keep, 0
        self.frames = self.tau = None  # (B, <= K, C, h, w), (B, <= K)

    def __len__(self) -> int:
        return 0 if self.frames is None else self.frames.shape[1]

    def commit(self, z: torch.Tensor, tau: torch.Tensor) -> None:
        self.pos += z.shape[1]
        if self.frames is not None:
            z, tau = torch.cat([self.frames, z], 1), torch.cat([self.tau, tau], 1)
        self.frames, self.tau = z[:, -self.keep :], tau[:, -self.keep :]


def shifted(x: torch.Tensor, R: int, dim: int) -> torch.Tensor:
    """x (M, C, h, w) -> (M, 2R + 1, C, h, w): x moved by s = -R..R cells along dim (-1: to the right
    for s > 0; -2: down), the border repeated."""
    n = x.shape[dim]
    xp = F.pad(x, (R, R, 0, 0) if dim == -1 else (0, 0, R, R), mode="replicate")
    return torch.stack([xp.narrow(dim, R - s, n) for s in range(-R, R + 1)], 1)  # out(i) = x(i - s)


def match_costs(before: torch.Tensor, after: torch.Tensor, R: int, dim: int) -> torch.Tensor:
    """(M, 2R + 1): how well `before` (M, C, h, w) moved by each shift matches `after`, as the mean
    squared difference over the frame divided by its mean over the shifts (scale-free)."""
    cost = (shifted(before, R, dim) - after[:, None]).pow(2).mean((2, 3, 4))
    return cost / cost.mean(1, keepdim=True).clamp_min(1e-6)


class GlobalMotion(nn.Module):
    """(conditioning (M, W), the two frames before (M, C, h, w) each) -> the previous frame moved by a
    mixture of whole-frame shifts, across then down (module docstring)."""

    def __init__(self, W: int, h: int, w: int, center: float = 3.0):
        super().__init__()
        self.rx, self.ry = max(1, w // 4), max(1, h // 8)
        n = 2 * self.rx + 1 + 2 * self.ry + 1
        self.mlp = nn.Sequential(nn.Linear(W + n, W), nn.SiLU(), nn.Linear(W, n))
        nn.init.zeros_(self.mlp[2].weight)
        with torch.no_grad():  # the no-shift copy first: softmax weight about 0.7 across, 0.8 down
            bias = torch.zeros(n)
            bias[self.rx] = bias[2 * self.rx + 1 + self.ry] = center
            self.mlp[2].bias.copy_(bias)

    def forward(self, c, prev2, prev):
        prev2, prev = prev2.float(), prev.float()
        costs = torch.cat([match_costs(prev2, prev, self.rx, -1), match_costs(prev2, prev, self.ry, -2)], 1)
        logits = self.mlp(torch.cat([c.float(), costs], 1).to(c.dtype)).float()
        wx, wy = logits[:, : 2 * self.rx + 1].softmax(1), logits[:, 2 * self.rx + 1 :].softmax(1)
        across = (shifted(prev, self.rx, -1) * wx[:, :, None, None, None]).sum(1)
        return (shifted(across, self.ry, -2) * wy[:, :, None, None, None]).sum(1)


class FiLMBlock(nn.Module):
    """Residual block: GroupNorm, FiLM (scale, shift) per sample, two 3x3 convs."""

    def __init__(self, w: int):
        super().__init__()
        self.norm = nn.GroupNorm(8, w)
        self.conv1, self.conv2 = nn.Conv2d(w, w, 3, padding=1), nn.Conv2d(w, w, 3, padding=1)

    def forward(self, x, film):  # x (M, W, h, w); film (M, 2W)
        scale, shift = film[:, :, None, None].chunk(2, 1)
        h = self.norm(x) * (1 + scale) + shift
        return x + self.conv2(F.silu(self.conv1(F.silu(h))))


class ConvDynamics(nn.Module):
    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        self.cfg = cfg
        C, K, W, P = cfg.latent_channels, cfg.conv_frames, cfg.conv_width, cfg.conv_patch
        self.inp = nn.Conv2d((K + 1) * C * P * P, W, 3, padding=1)
        self.levels = nn.Sequential(nn.Linear((K + 1) * LEVEL_FEATURES, W), nn.SiLU(), nn.Linear(W, W))
        self.d_embed = nn.Embedding(len(step_sizes(cfg.k_max)), W)  # d in {1, 1/2, ..., 1/k_max}
        # the action that produced the frame; the last row is the learned "no action"
        self.action_embed = nn.Embedding(cfg.actions + 1, W) if cfg.actions else None
        self.film = nn.Linear(W, cfg.conv_blocks * 2 * W)
        self.blocks = nn.ModuleList(FiLMBlock(W) for _ in range(cfg.conv_blocks))
        self.out = nn.Conv2d(W, C * P * P, 3, padding=1)
        self.warp = None
        if cfg.conv_warp:  # the previous frame moved as a whole; the moved frame joins the input
            self.warp = GlobalMotion(W, *cfg.latent_hw)
            self.warp_in = nn.Conv2d(C, W, 3, padding=1)
        if cfg.residual:  # the untrained model predicts "copy the previous frame" exactly
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        # NHWC weights and activations: oneDNN's fast convolutions on CPU (a training step 1.75x faster)
        self.to(memory_format=torch.channels_last)

    def new_cache(self) -> FrameCache:
        return FrameCache(self.cfg.conv_frames)

    def forward(self, z, tau, d=None, cache: FrameCache | None = None, commit: int = 0, actions=None, predict=None):
        """z (B, T, C, h, w), tau (B, T), d (B, T) or None, actions (B, T) long or None,
        predict (B, T) bool or None (all) -> x0_hat (B, T, C, h, w). With `cache`, z follows the
        cached frames, and its first `commit` frames join the cache afterwards."""
        check_latents(self.cfg, z)
        B, T = z.shape[:2]
        K = self.cfg.conv_frames
        past = len(cache) if cache is not None else 0
        seq, levels = z, tau  # (B, pad + past + T, C, h, w): K frames before every frame of z
        if past:
            seq, levels = torch.cat([cache.frames.to(z.dtype), seq], 1), torch.cat([cache.tau.to(tau.dtype), levels], 1)
        pad = K - past
        seq = torch.cat([seq.new_zeros(B, pad, *seq.shape[2:]), seq], 1)
        levels = torch.cat([levels.new_ones(B, pad), levels], 1)  # missing frames count as pure noise
        guess = denoised(seq, levels)  # (B, K + T, C, h, w); the frame to denoise enters raw below
        idx = torch.arange(T, device=z.device)[:, None] + torch.arange(K + 1, device=z.device)  # (T, K + 1)
        prev = guess[:, K - 1 : K - 1 + T]  # (B, T, C, h, w): each frame's previous frame
        out = prev.clone() if self.cfg.residual else torch.zeros_like(z)
        sel = torch.ones(B, T, dtype=torch.bool, device=z.device) if predict is None else predict.bool()
        if sel.any():
            stack = torch.cat([guess[:, idx[:, :K]], z[:, :, None]], 2)[sel]  # (M, K + 1, C, h, w)
            lv = levels[:, idx][sel]  # (M, K + 1): the K past levels, then the frame's own
            c = self.levels(tau_features(lv, LEVEL_FEATURES).flatten(1).to(z.dtype))
            c = c + self.d_embed(step_index(self.cfg, d, tau)[sel])
            if self.action_embed is not None:
                c = c + self.action_embed(action_index(self.cfg, actions, tau)[sel])
            elif actions is not None:
                action_index(self.cfg, actions, tau)  # refuses actions for a model without them
            films = self.film(F.silu(c)).chunk(len(self.blocks), 1)  # each (M, 2W)
            P = self.cfg.conv_patch  # the blocks' grid is (h / P, w / P)
            h = self.inp(F.pixel_unshuffle(stack.flatten(1, 2), P).contiguous(memory_format=torch.channels_last))
            base = out[sel]  # (M, C, h, w): the previous frame (residual) or 0
            if self.warp is not None:  # stack[:, K - 2], stack[:, K - 1]: the two frames before
                base = self.warp(c, stack[:, K - 2], stack[:, K - 1]).to(out.dtype)
                h = h + self.warp_in(base.to(h.dtype).contiguous(memory_format=torch.channels_last))
            for blk, film in zip(self.blocks, films):
                h = blk(h, film)
            out[sel] = base + F.pixel_shuffle(self.out(F.silu(h)), P).to(out.dtype)
        if cache is not None and commit:
            cache.commit(z[:, :commit], tau[:, :commit])
        return out
