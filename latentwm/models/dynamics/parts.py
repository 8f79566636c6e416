"""The helpers both dynamics networks share: noise-level features, the denoised guess of a noisy frame,
step-size and action indices, and the latent-shape check."""

from __future__ import annotations

import math

import torch

from latentwm.config.dynamics import DynamicsConfig
from latentwm.core.errors import PipelineError
from latentwm.data.actions import NO_ACTION
from latentwm.models.flow import step_sizes


def denoised(z: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """The best linear guess of a unit-variance frame from z = (1 - tau) x + tau eps, tau (B, T).

    E[x | z] = (1 - tau) / ((1 - tau)^2 + tau^2) z for x ~ N(0, 1) (normalised latents): about z
    at the context level tau_ctx, 0 for pure noise, so a noisy previous frame adds no noise.
    """
    t = tau.float().view(*tau.shape, *[1] * (z.ndim - tau.ndim))  # (B, T, 1, ...) against z (B, T, ...)
    return z * ((1 - t) / ((1 - t) ** 2 + t**2)).to(z.dtype)


def tau_features(tau: torch.Tensor, n: int) -> torch.Tensor:
    """Sinusoidal features of tau (B, T) in [0, 1] -> (B, T, n); no division, safe at tau = 0."""
    freqs = torch.exp(-math.log(1000.0) * torch.arange(n // 2, device=tau.device, dtype=torch.float32) / (n // 2))
    ang = 1000.0 * tau.float()[..., None] * freqs
    return torch.cat([ang.sin(), ang.cos()], -1)


def check_latents(cfg: DynamicsConfig, z: torch.Tensor) -> None:
    """One line when z (B, T, C, h, w) is not the latent shape the network was built for."""
    C, h, w = z.shape[2:]
    if (C, h, w) != (cfg.latent_channels, *cfg.latent_hw):
        raise PipelineError(
            f"dynamics model expects latents of {cfg.latent_channels}x{cfg.latent_hw[0]}x{cfg.latent_hw[1]}, "
            f"got {C}x{h}x{w}; retrain the dynamics model on these latents"
        )


def step_index(cfg: DynamicsConfig, d: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Step size d (B, T) -> embedding index log2(1/d) in [0, log2 k_max]; None -> finest step."""
    n_steps = len(step_sizes(cfg.k_max))
    if d is None:
        return torch.full(like.shape, n_steps - 1, dtype=torch.long, device=like.device)
    return torch.round(-torch.log2(d.float().clamp_min(1.0 / cfg.k_max))).long().clamp(0, n_steps - 1)


def action_index(cfg: DynamicsConfig, actions: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Actions (B, T) (-1: none) or None -> embedding rows (B, T); "no action" is row cfg.actions."""
    n = cfg.actions
    if actions is None:
        return torch.full(like.shape, n, dtype=torch.long, device=like.device)
    if not n:
        raise PipelineError("this dynamics model has no action conditioning (dynamics.actions: none); pass no actions")
    if actions.shape != like.shape:
        raise PipelineError(f"dynamics model: actions of shape {tuple(actions.shape)} for frames {tuple(like.shape)}")
    if int(actions.max()) >= n:
        raise PipelineError(f"dynamics model knows {n} actions but got id {int(actions.max())}; retrain it on these actions")
    return torch.where(actions == NO_ACTION, torch.full_like(actions, n), actions).long()
