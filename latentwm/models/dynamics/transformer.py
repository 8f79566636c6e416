"""The dynamics network: a factorized space/time transformer over patches of latent frames.

Input z (B, T, C, h, w) holds latent frames, each at its own noise level tau (B, T) and shortcut
step size d (B, T); the output is the clean-frame prediction x0_hat of the same shape
(x-prediction, convention: tau = 0 clean, tau = 1 noise).

Tokens are the p x p patches of each frame's latent grid: N = (h / p) * (w / p) per frame.
Every block attends over space (the N tokens of one frame, bidirectional); every
`temporal_every`-th block also attends over time (one spatial position across frames, causal:
a frame sees itself and earlier frames), as in DreamerV4. Each frame is conditioned on its own
(tau, d) through adaLN (shift, scale, gate per sub-layer, computed per frame). With `prev_frame`
(default) each token also embeds its own patch in the previous frame (a causal token shift).

Positions: learned embeddings over space; rotary embeddings over time, so attention depends only
on the distance between frames. That is what lets a rollout cache keys/values (`KVCache`) of the
past and keep a sliding window of them: a frame attends to at most `max_frames` frames (itself
and the `max_frames - 1` before it), in training and in rollouts alike. Frames older than the
window leave the cache; their influence persists only through the frames that saw them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from latentwm.config.dynamics import DynamicsConfig
from latentwm.core.errors import PipelineError
from latentwm.models.dynamics.parts import action_index, check_latents, denoised, step_index, tau_features
from latentwm.models.flow import step_sizes


class KVCache:
    """Keys/values of past frames for every temporal layer, for autoregressive rollouts.

    `pos` counts the frames committed so far (the absolute time index of the next frame). Each
    layer keeps at most `max_frames - 1` frames: all a new frame can attend to (sliding window).
    Tensors are (B * N, heads, frames, head_dim); spatial layers need no cache. With prev_frame,
    `last` / `last_tau` keep the patches and level of the last committed frame (the token shift).
    Usage (what `latentwm.models.sampler.rollout` does):
        cache = model.new_cache()
        model(context, tau_ctx, d, cache=cache, commit=context.shape[1])  # prefill
        x0 = model(z_new, tau_new, d, cache=cache)  # a denoising step of the next frame: not kept
    """

    def __init__(self, max_frames: int):
        self.max_frames = max_frames
        self.pos = 0
        self.last = self.last_tau = None  # patches (B, 1, N, C*p*p) and level (B, 1) of the last frame
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return min(self.pos, self.max_frames - 1)

    def past(self, layer: int):
        return self.k.get(layer), self.v.get(layer)

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        keep = self.max_frames - 1
        if layer in self.k:
            k, v = torch.cat([self.k[layer], k], 2), torch.cat([self.v[layer], v], 2)
        self.k[layer], self.v[layer] = k[:, :, -keep:] if keep else k[:, :, :0], v[:, :, -keep:] if keep else v[:, :, :0]


def rotary(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of x (..., T, Dh) by angles pos (T,) * frequencies (Dh/2,)."""
    half = x.shape[-1] // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    ang = pos.to(torch.float32)[:, None] * freqs  # (T, Dh/2)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class Attention(nn.Module):
    """Multi-head attention with optional QK-norm; `temporal` adds rotary time positions + cache."""

    def __init__(self, dim: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.q_norm = nn.RMSNorm(self.hd) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.hd) if qk_norm else nn.Identity()

    def split(self, x):
        S, L, _ = x.shape  # (S, L, 3D) -> 3 x (S, heads, L, hd)
        q, k, v = self.qkv(x).view(S, L, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        return self.q_norm(q), self.k_norm(k), v

    def forward(self, x, pos=None, mask=None, causal=False, cache=None, layer=0, commit=0):
        """x (S, L, D): S independent sequences of length L (frames for temporal, tokens for spatial)."""
        q, k, v = self.split(x)
        if pos is not None:  # temporal: rotate by absolute frame index
            q, k = rotary(q, pos), rotary(k, pos)
        if cache is not None:
            pk, pv = cache.past(layer)
            if commit:
                cache.store(layer, k[:, :, :commit], v[:, :, :commit])
            if pk is not None:
                k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        return self.out(y.transpose(1, 2).reshape(x.shape))  # (S, L, D)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(ratio * dim * 2 / 3)
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        g, u = self.gate_up(x).chunk(2, -1)
        return self.down(F.silu(g) * u)


def modulate(x, shift, scale):
    """x (B, T, N, D); shift, scale (B, T, D) per frame."""
    return x * (1 + scale[:, :, None]) + shift[:, :, None]


class Block(nn.Module):
    """Spatial attention (+ causal temporal attention if `temporal`) + SwiGLU, each adaLN-gated."""

    def __init__(self, cfg: DynamicsConfig, temporal: bool):
        super().__init__()
        D = cfg.dim
        self.temporal = temporal
        self.n_sub = 3 if temporal else 2
        self.norm = nn.RMSNorm(D, elementwise_affine=False)
        self.space = Attention(D, cfg.heads, cfg.qk_norm)
        self.time = Attention(D, cfg.heads, cfg.qk_norm) if temporal else None
        self.mlp = SwiGLU(D, cfg.mlp_ratio)
        self.ada = nn.Linear(D, 3 * self.n_sub * D)  # (shift, scale, gate) per sub-layer
        nn.init.zeros_(self.ada.weight)  # adaLN-zero: every block starts as the identity
        nn.init.zeros_(self.ada.bias)

    def forward(self, x, c, tctx):
        """x (B, T, N, D); c (B, T, D) per-frame conditioning; tctx: temporal positions/mask/cache."""
        B, T, N, D = x.shape
        mods = self.ada(c).chunk(3 * self.n_sub, -1)  # each (B, T, D)
        h = modulate(self.norm(x), mods[0], mods[1]).reshape(B * T, N, D)
        x = x + mods[2][:, :, None] * self.space(h).view(B, T, N, D)
        if self.temporal:
            h = modulate(self.norm(x), mods[3], mods[4]).permute(0, 2, 1, 3).reshape(B * N, T, D)
            h = self.time(h, **tctx).view(B, N, T, D).permute(0, 2, 1, 3)
            x = x + mods[5][:, :, None] * h
        i = 3 * (self.n_sub - 1)
        return x + mods[i + 2][:, :, None] * self.mlp(modulate(self.norm(x), mods[i], mods[i + 1]))



class Dynamics(nn.Module):
    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        if cfg.arch != "transformer":
            raise PipelineError(f"dynamics: the transformer built for arch {cfg.arch!r}; build it with dynamics.network")
        self.cfg = cfg
        C, (h, w), p, D = cfg.latent_channels, cfg.latent_hw, cfg.patch, cfg.dim
        self.n_tokens = (h // p) * (w // p)
        self.embed = nn.Linear(C * p * p, D)
        # Token shift: the patch at the same place in the previous frame (and that frame's level)
        # enters each token's embedding, so copying the last frame is linear from the start and
        # attention only has to learn the motion. (Without it the tiny CPU model averaged the
        # context frames and lost to copy-last.) Frame 0 sees a "fully noised" empty previous frame.
        self.prev_embed = nn.Linear(C * p * p, D) if cfg.prev_frame else None
        self.pos = nn.Parameter(torch.randn(self.n_tokens, D) * 0.02)  # learned spatial positions
        n_levels = 2 if cfg.prev_frame else 1  # own tau (+ the previous frame's tau)
        self.tau_mlp = nn.Sequential(nn.Linear(n_levels * D, D), nn.SiLU(), nn.Linear(D, D))
        self.d_embed = nn.Embedding(len(step_sizes(cfg.k_max)), D)  # d in {1, 1/2, ..., 1/k_max}
        # Actions (cfg.actions ids): each frame's action joins its conditioning c; the last row is the
        # learned "no action" (frame 0, action dropout, rollouts without actions). None: today's model.
        self.action_embed = nn.Embedding(cfg.actions + 1, D) if cfg.actions else None
        self.blocks = nn.ModuleList(
            Block(cfg, temporal=(i + 1) % cfg.temporal_every == 0) for i in range(cfg.depth)
        )
        if not any(b.temporal for b in self.blocks):
            raise PipelineError(
                f"dynamics.model: depth {cfg.depth} < temporal_every {cfg.temporal_every} leaves no temporal layer; "
                "raise depth or lower temporal_every"
            )
        self.final_norm = nn.RMSNorm(D, elementwise_affine=False)
        self.final_ada = nn.Linear(D, 2 * D)
        nn.init.zeros_(self.final_ada.weight)
        nn.init.zeros_(self.final_ada.bias)
        self.unembed = nn.Linear(D, C * p * p)
        if cfg.residual:  # the untrained model predicts "copy the previous frame" exactly
            nn.init.zeros_(self.unembed.weight)
            nn.init.zeros_(self.unembed.bias)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, on: bool = True) -> None:
        self.grad_checkpointing = on

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.max_frames)

    def patchify(self, z):
        B, T, C, h, w = z.shape
        p = self.cfg.patch  # (B, T, C, h, w) -> (B, T, N, C*p*p)
        z = z.reshape(B, T, C, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return z.reshape(B, T, self.n_tokens, C * p * p)

    def unpatchify(self, x, h, w):
        B, T, N, _ = x.shape
        p, C = self.cfg.patch, self.cfg.latent_channels
        x = x.reshape(B, T, h // p, w // p, C, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(B, T, C, h, w)

    def time_mask(self, T: int, start: int, past: int, device) -> torch.Tensor | None:
        """Boolean (T, past + T) mask: causal and within the window; None when plain causal suffices."""
        W = self.cfg.max_frames
        if past == 0 and T <= W:
            return None
        qpos = torch.arange(start, start + T, device=device)[:, None]
        kpos = torch.arange(start - past, start + T, device=device)[None, :]
        return (kpos <= qpos) & (qpos - kpos < W)

    def forward(self, z, tau, d=None, cache: KVCache | None = None, commit: int = 0, actions=None, predict=None):
        """z (B, T, C, h, w), tau (B, T), d (B, T) or None, actions (B, T) long or None -> x0_hat (B, T, C, h, w).
        `predict` (the frames the caller uses) is ignored: attention computes every frame anyway.

        With `cache`, z holds the frames that follow the cached ones; afterwards the first
        `commit` frames of z are in the cache (their keys/values, positions advanced). Frames
        beyond `commit` (e.g. the frame being denoised) leave the cache unchanged.
        """
        B, T, C, h, w = z.shape
        cfg = self.cfg
        check_latents(cfg, z)
        start = cache.pos if cache is not None else 0
        past = len(cache) if cache is not None else 0
        tctx = dict(
            pos=torch.arange(start, start + T, device=z.device),
            mask=self.time_mask(T, start, past, z.device),
            causal=True,
            cache=cache,
            commit=commit,
        )
        D = cfg.dim
        patches = self.patchify(z)  # (B, T, N, C*p*p)
        x = self.embed(patches) + self.pos  # (B, T, N, D)
        feats = tau_features(tau, D)
        base = 0.0
        if self.prev_embed is not None:
            if cache is not None and cache.last is not None:
                p0, t0 = cache.last, cache.last_tau  # the last committed frame
            else:
                p0, t0 = patches.new_zeros(B, 1, *patches.shape[2:]), tau.new_ones(B, 1)
            prev, prev_tau = torch.cat([p0, patches[:, :-1]], 1), torch.cat([t0, tau[:, :-1]], 1)  # (B, T, N, Cpp), (B, T)
            x = x + self.prev_embed(prev)
            feats = torch.cat([feats, tau_features(prev_tau, D)], -1)
            if cfg.residual:
                base = denoised(prev, prev_tau)  # (B, T, N, C*p*p): the network adds the change
            if cache is not None and commit:
                cache.last, cache.last_tau = patches[:, commit - 1 : commit], tau[:, commit - 1 : commit]
        c = self.tau_mlp(feats.to(z.dtype)) + self.d_embed(step_index(cfg, d, tau))  # (B, T, D)
        if self.action_embed is not None:  # the action that produced each frame (B, T) -> (B, T, D)
            c = c + self.action_embed(action_index(cfg, actions, tau))
        elif actions is not None:
            action_index(cfg, actions, tau)  # refuses actions for a model without them
        c = F.silu(c)
        for i, blk in enumerate(self.blocks):
            ctx = {**tctx, "layer": i}
            if self.grad_checkpointing and self.training and cache is None:
                x = checkpoint(blk, x, c, ctx, use_reentrant=False)
            else:
                x = blk(x, c, ctx)
        if cache is not None:
            cache.pos += commit
        shift, scale = self.final_ada(c).chunk(2, -1)
        x = self.unembed(modulate(self.final_norm(x), shift, scale)) + base  # (B, T, N, C*p*p)
        return self.unpatchify(x, h, w)
