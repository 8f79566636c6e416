"""The conv dynamics network: each frame denoised from its last few frames stacked on channels.

The same contract as the transformer (latentwm.dynamics.Dynamics): z (B, T, C, h, w) latent
frames, each at its own noise level tau (B, T) and shortcut step size d (B, T), -> the clean-frame
prediction x0_hat of the same shape, so the flow objective, the sampler and the evaluation use
either network unchanged.

Frame t is predicted from the K = conv_frames frames before it and its own noisy latent, stacked
on channels ((K + 1) C channels at the full h x w grid, as DIAMOND's denoiser stacks its past
observations), through `conv_blocks` residual 3x3 conv blocks whose GroupNorm is modulated (FiLM)
by the frame's conditioning: its own level and step size, the levels of the K frames it sees, and
its action. Past frames enter as their best linear guess `denoised(z, tau)` (a frame at pure noise,
or one before the window start, is 0). With `residual`, the output is added to the previous frame's
guess: the untrained network copies the last frame, so static parts (a HUD) cost nothing. With
`conv_warp`, that previous frame is first shifted by a global translation (dx, dy) in latent cells,
predicted from the frame's conditioning (its action, its levels) and the pooled input features
(zero at initialisation: the plain residual model), and the blocks see the shifted frame too: a
turn of the camera moves the whole frame several cells at once, which 3x3 convs otherwise have to
learn to carry across their receptive field and, unsure of the amount, blur instead.

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

from .diffusion import step_sizes
from .dynamics import action_index, check_latents, denoised, step_index, tau_features
from .settings import DynamicsConfig

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


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x (M, C, h, w) moved by shift (M, 2) = (dx, dy) cells (content moves right / down for > 0),
    bilinear, the border repeated; differentiable in the shift."""
    M, _, h, w = x.shape
    theta = torch.zeros(M, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shift[:, 0].float() / w  # output(x) = input(x - dx), in [-1, 1] units
    theta[:, 1, 2] = -2 * shift[:, 1].float() / h
    grid = F.affine_grid(theta, [M, 1, h, w], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False).to(x.dtype)


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
        C, K, W = cfg.latent_channels, cfg.conv_frames, cfg.conv_width
        self.inp = nn.Conv2d((K + 1) * C, W, 3, padding=1)
        self.levels = nn.Sequential(nn.Linear((K + 1) * LEVEL_FEATURES, W), nn.SiLU(), nn.Linear(W, W))
        self.d_embed = nn.Embedding(len(step_sizes(cfg.k_max)), W)  # d in {1, 1/2, ..., 1/k_max}
        # the action that produced the frame; the last row is the learned "no action"
        self.action_embed = nn.Embedding(cfg.actions + 1, W) if cfg.actions else None
        self.film = nn.Linear(W, cfg.conv_blocks * 2 * W)
        self.blocks = nn.ModuleList(FiLMBlock(W) for _ in range(cfg.conv_blocks))
        self.out = nn.Conv2d(W, C, 3, padding=1)
        self.warp = None
        if cfg.conv_warp:  # (conditioning, pooled input features) -> (dx, dy) in cells; the shifted frame joins the input
            self.warp = nn.Linear(2 * W, 2)
            self.warp_in = nn.Conv2d(C, W, 3, padding=1)
            nn.init.zeros_(self.warp.weight)
            nn.init.zeros_(self.warp.bias)
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
            h = self.inp(stack.flatten(1, 2).contiguous(memory_format=torch.channels_last))  # (M, W, h, w)
            base = out[sel]  # (M, C, h, w): the previous frame (residual) or 0
            if self.warp is not None:
                shift = self.warp(F.silu(torch.cat([c, h.mean((2, 3))], 1)))  # (M, 2) cells
                base = translate(base, shift)
                h = h + self.warp_in(base.to(h.dtype).contiguous(memory_format=torch.channels_last))
            for blk, film in zip(self.blocks, films):
                h = blk(h, film)
            out[sel] = base + self.out(F.silu(h)).to(out.dtype)
        if cache is not None and commit:
            cache.commit(z[:, :commit], tau[:, :commit])
        return out
