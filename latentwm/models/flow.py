"""The dynamics objective: flow matching with x-prediction, diffusion forcing, shortcut forcing.

Convention: tau = 0 clean, tau = 1 the flow's start; z_tau = (1 - tau) z0 + tau s, where the start s is
noise (source "noise": s = sigma eps) or the previous frame plus noise (source "previous": s = z_prev +
sigma eps, so the steps resolve the change from it; `flow_start`); the network predicts z0
("x-prediction"). Below, eps stands for the start. A denoising step of size d from tau to tau - d moves along the
velocity the prediction implies, v_hat = (z_tau - x_hat) / tau (= eps_hat - x_hat):
    z_{tau-d} = z_tau - d * (z_tau - x_hat) / tau
which equals re-noising x_hat with the noise the model implies, (1 - tau + d) x_hat + (tau - d) eps_hat.

Diffusion forcing: every frame has its own tau (B, T). Two named schedules:
  "context"      the seeds' schedule: the first n_ctx frames are context at tau_ctx (n_ctx drawn per
                 sample in [1, T-1], or fixed by `context_frames`); the first target draws its
                 level as 1 - (1 - u)^2 (u uniform; noise-heavy: P(tau > 0.9) ~ 1/3), the later
                 targets rise linearly from it to 1. Only targets carry loss. The first target is
                 exactly a rollout step (clean-ish past, any level now); sorted independent draws
                 would rarely put a high level right after the context, yet every rollout frame
                 starts there, and the ramp weight already favours the low levels.
  "independent"  DreamerV4 / Diffusion Forcing: every frame draws its own level; all frames are
                 targets. Teaches denoising under any mix of past noise levels.
Shortcut forcing (DreamerV4): each sample draws a step size d in {1/k_max, ..., 1/2, 1} with
P(d) proportional to 1/d, and its target levels lie on the grid of d: tau in {d, 2d, ..., 1}.
Samples at the finest step d = 1/k_max train on the plain x-loss against the data (loss_std);
the others on the bootstrap loss (loss_boot) against two half-steps of the model itself.
Loss weight (ramp, DreamerV4 in our convention): w = 0.9 (1 - tau) + 0.1, more weight on
nearly clean frames, which is what a rollout needs most.
"""

from __future__ import annotations

from typing import Callable

import torch

from latentwm.config.dynamics import ObjectiveConfig
from latentwm.core import image
from latentwm.data.actions import NO_ACTION


def step_sizes(k_max: int) -> torch.Tensor:
    """(S,) step sizes 1, 1/2, ..., 1/k_max."""
    n = k_max.bit_length()  # log2(k_max) + 1
    return 0.5 ** torch.arange(n, dtype=torch.float32)


def sample_step_sizes(B: int, k_max: int, shortcut: bool, generator=None) -> torch.Tensor:
    """(B,) step sizes with P(d) proportional to 1/d; all 1/k_max when shortcut is off."""
    ds = step_sizes(k_max)
    if not shortcut:
        return torch.full((B,), 1.0 / k_max)
    idx = torch.multinomial(1.0 / ds, B, replacement=True, generator=generator)
    return ds[idx]


def sample_levels(cfg: ObjectiveConfig, B: int, T: int, d: torch.Tensor, generator=None):
    """Per-frame tau (B, T) on the grid of d (B,), and the target mask (B, T) bool."""
    n = torch.round(1.0 / d).long()  # grid points per sample: tau in {d, 2d, ..., 1}
    j = (torch.rand(B, T, generator=generator) * n[:, None]).long().clamp_max(n[:, None] - 1) + 1
    tau = j.float() * d[:, None]  # (B, T) in (0, 1]
    target = torch.ones(B, T, dtype=torch.bool)
    if cfg.schedule == "context" and T > 1:
        if cfg.context_frames:
            n_ctx = torch.full((B,), min(cfg.context_frames, T - 1))
        else:
            n_ctx = torch.randint(1, T, (B,), generator=generator)
        target = torch.arange(T)[None, :] >= n_ctx[:, None]
        # First target: its own level, uniform on the grid (right after a clean-ish context, as in
        # a rollout's every step). Later targets: rising linearly from it to 1, snapped to the grid.
        u = torch.rand(B, 1, generator=generator)
        first = torch.ceil((1 - (1 - u) ** 2) / d[:, None] - 1e-6).clamp(min=1) * d[:, None]  # (B, 1) noise-heavy
        k = (torch.arange(T)[None, :] - n_ctx[:, None]).clamp_min(0).float()  # 0 at the first target
        frac = k / (T - n_ctx[:, None]).clamp_min(2).sub(1).float()  # 0 .. 1 along the targets
        ramp = torch.ceil((first + (1 - first) * frac) / d[:, None] - 1e-6) * d[:, None]
        tau = torch.where(target, ramp.clamp(max=1.0), torch.full_like(tau, cfg.tau_ctx))
    return tau, target


def flow_start(eps, prev, source: str, noise: float):
    """The level-1 end of a frame's flow (tau = 1): noise * eps, around the frame before it (prev) when
    source is "previous". eps, prev: (B, T, C, h, w) (prev may be None for "noise")."""
    return noise * eps + prev if source == "previous" else noise * eps


def euler_step(z, x_hat, tau, d):
    """One denoising step of size d from level tau (broadcastable (B, T, 1, 1, 1)); float32."""
    return z - d * (z - x_hat) / tau


class FlowObjective:
    """`objective(model, batch) -> (loss, logs)`, the shared training loop's contract.

    batch: float32 (B, T, C, h, w) of normalised clean latents, or (those, int64 (B, T) actions).
    """

    def __init__(self, cfg: ObjectiveConfig, k_max: int, generator: torch.Generator | None = None, action_dropout: float = 0.0,
                 decode: Callable | None = None, source: tuple[str, float] = ("noise", 1.0)):
        self.cfg, self.k_max = cfg, k_max  # finest step 1 / k_max: the model's
        self.source = source  # (kind, noise) of each target's flow start: the model's (flow_start)
        self.generator = generator  # None: the global RNG (seeded and saved by the loop)
        self.action_dropout = action_dropout  # P(a window's actions all become "no action")
        # normalised latents (M, C, h, w) -> frames (M, 3, H, W) in about [0, 1]: the pixel loss's decoder.
        # None: the latent loss alone (the stage, latentwm.training.fit_dynamics.build, always passes one when
        # pixel_weight > 0; tests and benchmarks of the network may leave it out)
        self.decode = decode if cfg.pixel_weight > 0 else None

    def weight(self, tau):
        return 0.9 * (1 - tau) + 0.1 if self.cfg.ramp_weight else torch.ones_like(tau)

    def weighted_mean(self, err, w, mask):
        """err (B, T) per-frame MSE; mean of w * err over the frames in mask (B, T)."""
        m = (w * mask).float()
        return (err * m).sum() / mask.sum().clamp_min(1)

    @torch.no_grad()
    def bootstrap_target(self, model, z, tau, d, target, **kw):
        """x0 target of one step of size d, from two half-steps of the model (no gradient).

        Derivation (x-prediction, tau = 0 clean). One step of size s from level t with prediction x:
            z' = z - s (z - x) / t                                         (module docstring)
        Half-step 1: x1 = f(z, tau, d/2);      z_mid = z - (d/2) (z - x1) / tau,  tau_mid = tau - d/2
        Half-step 2: x2 = f(z_mid, tau_mid, d/2); z_end = z_mid - (d/2) (z_mid - x2) / tau_mid
        A single step of size d with prediction x* must land on z_end:
            z_end = z - d (z - x*) / tau   =>   x* = z - tau (z - z_end) / d
        Equivalently in velocity v = (z - x) / tau: v* = (v1 + v2) / 2, x* = z - tau v*, so the
        x-space MSE to x* is the tau^2-scaled velocity loss of DreamerV4. Both half-steps re-noise
        with the noise eps_hat the model itself implies (not the true eps, which would leak the
        answer): this is the model's own ODE trajectory. Context frames (not targets) stay as
        they are in both half-steps.
        """
        shape = (*tau.shape, 1, 1, 1)
        # a clean context frame (tau_ctx 0) takes no step: keep 0 / 0 out of its (unused) update
        t, h = tau.view(shape).clamp_min(1e-6), (d / 2).view(-1, 1, 1, 1, 1).expand(shape)
        step = torch.where(target.view(shape), h, torch.zeros_like(h))  # 0 for context frames
        dh = (d / 2)[:, None].expand_as(tau)
        x1 = model(z, tau, dh, predict=target, **kw).float()
        z_mid = euler_step(z, x1, t, step)
        tau_mid = torch.where(target, tau - dh, tau)
        x2 = model(z_mid, tau_mid, dh, predict=target, **kw).float()
        z_end = euler_step(z_mid, x2, tau_mid.view(shape).clamp_min(1e-6), step)
        return z - t * (z - z_end) / (2 * step).clamp_min(1e-12)

    def pixel_loss(self, x_hat, x_star, w, target, logs):
        """The decoded targets' weighted mean of MSE + pixel_ssim * (1 - SSIM), over the first
        pixel_frames targets of the batch (its windows are shuffled: a random subset)."""
        cfg = self.cfg
        pick = target.flatten().nonzero().squeeze(1)  # (M,) indices into the B*T frames
        if cfg.pixel_frames:
            pick = pick[: cfg.pixel_frames]
        with torch.autocast(x_hat.device.type, enabled=False):  # fp32: under bf16 the SSIM term reached -inf in 28 steps
            return self._pixel_loss(x_hat.float(), x_star.float(), w, pick, logs)

    def _pixel_loss(self, x_hat, x_star, w, pick, logs):
        cfg = self.cfg
        with torch.no_grad():
            want = self.decode(x_star.flatten(0, 1)[pick]).float()  # (M, 3, H, W)
        got = self.decode(x_hat.flatten(0, 1)[pick]).float()
        err = ((got - want) ** 2).mean((1, 2, 3))  # (M,)
        logs["loss_pixel"] = err.detach().mean()
        if cfg.pixel_ssim > 0:
            s = image.ssim(got.clamp(0, 1), want.clamp(0, 1))  # (M,)
            err = err + cfg.pixel_ssim * (1 - s)
            logs["pixel_ssim"] = s.detach().mean()
        return (err * w.flatten()[pick]).mean()

    def drop_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, T) actions with each window's replaced by -1 ("no action") with probability action_dropout."""
        g = self.generator
        keep = torch.rand(actions.shape[0], generator=g).to(actions.device) >= self.action_dropout  # (B,)
        return torch.where(keep[:, None], actions, torch.full_like(actions, NO_ACTION))

    def __call__(self, model, batch):
        batch, actions = batch if isinstance(batch, (tuple, list)) else (batch, None)
        z0 = batch.float()  # (B, T, C, h, w)
        B, T = z0.shape[:2]
        g, cfg = self.generator, self.cfg
        d = sample_step_sizes(B, self.k_max, cfg.shortcut, g)  # (B,)
        tau, target = sample_levels(cfg, B, T, d, g)  # (B, T)
        eps = torch.randn(z0.shape, generator=g) if g is not None else torch.randn_like(z0)
        tau, target, d, eps = tau.to(z0.device), target.to(z0.device), d.to(z0.device), eps.to(z0.device)
        t = tau.view(B, T, 1, 1, 1)
        # targets start at the model's flow start around the clean frame before them (the first frame of a
        # window: around 0); context frames are noised with plain eps, as the sampler's context corruption
        prev = torch.cat([torch.zeros_like(z0[:, :1]), z0[:, :-1]], 1)  # (B, T, C, h, w)
        start = torch.where(target.view(B, T, 1, 1, 1), flow_start(eps, prev, *self.source), eps)
        z = (1 - t) * z0 + t * start
        d_bt = d[:, None].expand(B, T)
        # drawn after every other draw: without actions the random stream is today's
        kw = {} if actions is None else {"actions": self.drop_actions(actions)}
        # only the targets' predictions are used (a conv network computes only those)
        x_hat = model(z, tau, d_bt, predict=target, **kw).float()  # (B, T, C, h, w)

        fine = d <= 1.0 / self.k_max + 1e-9  # (B,) samples trained on the data
        x_star = z0.clone()
        boot = ~fine
        if boot.any():
            x_star[boot] = self.bootstrap_target(model, z[boot], tau[boot], d[boot], target[boot],
                                                 **{k: v[boot] for k, v in kw.items()})
        w = self.weight(tau)
        err = ((x_hat - x_star) ** 2).mean((2, 3, 4))  # (B, T)
        loss = self.weighted_mean(err, w, target)

        logs = {}
        if self.decode is not None:
            loss = loss + cfg.pixel_weight * self.pixel_loss(x_hat, x_star, w, target, logs)
        with torch.no_grad():
            if fine.any():
                logs["loss_std"] = self.weighted_mean(err[fine], w[fine], target[fine])
            if boot.any():
                logs["loss_boot"] = self.weighted_mean(err[boot], w[boot], target[boot])
            # The baseline: predict a frame by the previous clean frame, scored like the
            # loss (same weights) on the frames where the model has the same information as the
            # copy: targets at pure noise (tau = 1, so nothing of the frame itself leaks through)
            # of finest-step samples (trained on the data) whose previous frame is clean-ish
            # (level <= tau_ctx): the first denoising step of a rollout. next_loss is the model's
            # loss there.
            err_x = ((x_hat - z0) ** 2).mean((2, 3, 4))  # (B, T)
            prev_clean = tau[:, :-1] <= cfg.tau_ctx + 1e-6
            comparable = (target & fine[:, None] & (tau >= 1 - 1e-6))[:, 1:] & prev_clean  # (B, T-1)
            if comparable.any():
                err_copy = ((z0[:, :-1] - z0[:, 1:]) ** 2).mean((2, 3, 4))  # (B, T-1)
                logs["next_loss"] = self.weighted_mean(err_x[:, 1:], w[:, 1:], comparable)
                logs["copy_last_loss"] = self.weighted_mean(err_copy, w[:, 1:], comparable)
            # (T,) per-timestep x-loss against the data over the targets at each position; NaN where
            # this batch has none (the curve averages over the batches that do)
            m = target.float()
            logs["loss_t"] = (err_x * w * m).sum(0) / m.sum(0).where(m.sum(0) > 0, torch.nan)
            tt, xt = tau[target], x_hat[target]  # (M,), (M, C, h, w): the predictions used
            logs["tau_min"], logs["tau_max"] = tt.min(), tt.max()
            logs["pred_var"] = xt.var(0).mean() if len(xt) > 1 else xt.var()
            logs["pred_min"], logs["pred_max"] = xt.min(), xt.max()
        return loss, logs
