"""Sampling and autoregressive rollouts of the dynamics model (apart from the network).

The update is the deterministic flow-matching Euler step in x-prediction form (float32):
    x_hat  = f(z, tau, d)
    z_next = z - (tau - tau_next) * (z - x_hat) / tau
           = (1 - tau_next) x_hat + tau_next eps_hat,   eps_hat = (z - (1 - tau) x_hat) / tau
i.e. the noise is re-used as the model implies it, never drawn afresh: given the seed, a rollout
is a deterministic function of the context. The last step (tau_next = 0) returns x_hat.
Levels are uniform: tau_i = 1 - i / K, i = 0..K.

  "euler"     K <= k_max steps with the finest step size d = 1 / k_max: the plain flow model.
  "shortcut"  K steps (a power of two <= k_max, e.g. 4) passing d = 1 / K: the shortcut model
              takes each large step at once (DreamerV4 shortcut forcing).

Temperature: each frame's flow starts at its trained noise level times `temperature` (1: the trained
start). Below 1 the start is nearer the frame before (source "previous"), so one sampled change
strays less from the likeliest one; for a pure-noise start (source "noise") it is reduced-temperature
sampling, the start nearer 0 (not measured here).

Still cells (`still`): after each frame is sampled, a latent cell whose change from the frame before
is below the threshold (RMS over the channels) keeps the frame before exactly. A still overlay (a
HUD, a static background) is otherwise redrawn a little differently at every step, and the
network, which reads motion off its past frames, carries that drift on.

Action guidance (`guidance`, classifier-free): an action model's prediction is pushed along the
action's effect, the difference between the prediction with the frame's action and with "no
action" (which action dropout trains), at the cost of a second network call per step.

Context corruption: real context frames and every frame fed back into the context
are noised to tau_ctx (the caller's: the evaluation's, or the level the model trained with), as in
training, and the model is told their level is tau_ctx.
"""

from __future__ import annotations

import dataclasses

import torch

from latentwm.config.evaluation import EvalConfig, SamplerConfig
from latentwm.core.errors import PipelineError
from latentwm.data.actions import NO_ACTION
from latentwm.models.flow import euler_step, flow_start


def trained_tau_ctx(ckpt: dict) -> float:
    """The context level a dynamics checkpoint was trained with (0.1 before checkpoints stored it)."""
    return float(ckpt.get("tau_ctx", 0.1))


def own_sampler(model, **overrides) -> SamplerConfig:
    """The sampler a dynamics model was trained for: Euler on its own grid of k_max steps with the
    default evaluation's first sampler's settings (temperature, still, guidance), each overridden by
    a keyword that is not None. Its context level is the checkpoint's (trained_tau_ctx)."""
    first = dataclasses.replace(EvalConfig().samplers[0], kind="euler", steps=model.cfg.k_max)
    return dataclasses.replace(first, **{k: v for k, v in overrides.items() if v is not None})


def _noise(shape, generator, device):
    """Standard normal noise drawn on the generator's device (CPU by default), then moved."""
    gdev = generator.device if generator is not None else "cpu"
    return torch.randn(shape, generator=generator, device=gdev).to(device)


def _last_frame(model, inp, lv, d, cache, commit, actions):
    """The network's clean-frame prediction of the last frame of inp (B, T, C, h, w) -> (B, 1, C, h, w)."""
    new = torch.zeros(lv.shape, dtype=torch.bool, device=inp.device)
    new[:, -1] = True  # only the new frame's prediction is used
    kw = {} if actions is None else {"actions": actions}
    return model(inp, lv, torch.full_like(lv, d), cache=cache, commit=commit, predict=new, **kw)[:, -1:].float()


def denoise_frame(model, prefix, prefix_tau, z, sampler: SamplerConfig, d: float, cache=None, prefix_actions=None,
                  action=None):
    """Denoise one frame z (B, 1, C, h, w) from tau = 1 to 0, given `prefix` (B, P, C, h, w) at
    levels prefix_tau (B, P) that precede it (P may be 0).

    Without a cache, `prefix` is the whole history and is recomputed at every step. With a
    cache, `prefix` holds only the frames not yet cached: they are committed in the first step
    and later steps run the one new frame against the cache. An action model also gets the actions
    of the prefix frames (B, P) and of the new frame (B, 1); None: no action conditioning. With
    `sampler.guidance` g != 1 each step's prediction is x_free + g (x_act - x_free), x_free the same
    call with the new frame's action "none" (the conv sees only that action, so x_free is exactly
    the model that action dropout trains; the transformer keeps the history's actions in both).
    """
    B = z.shape[0]
    levels = sampler.levels()
    guided = action is not None and sampler.guidance != 1 and bool((action != NO_ACTION).any())
    for i in range(sampler.steps):
        tau, tau_next = levels[i], levels[i + 1]
        inp, lv, acts = z, torch.full((B, 1), tau, device=z.device), action
        P = 0 if prefix is None else prefix.shape[1]
        if P:
            inp, lv = torch.cat([prefix, z], 1), torch.cat([prefix_tau, lv], 1)
            acts = None if action is None else torch.cat([prefix_actions, action], 1)
        commit = P if cache is not None else 0
        if guided:  # before the call that commits the prefix: the new frame's action "none"
            x_free = _last_frame(model, inp, lv, d, cache, 0, torch.cat([acts[:, :-1], torch.full_like(action, NO_ACTION)], 1))
        x_hat = _last_frame(model, inp, lv, d, cache, commit, acts)
        if guided:
            x_hat = x_free + sampler.guidance * (x_hat - x_free)
        z = x_hat if tau_next == 0 else euler_step(z, x_hat, tau, tau - tau_next)
        if cache is not None:
            prefix = None  # committed: later steps see it through the cache
    return z


def _check_context(context):
    if context.ndim != 5 or context.shape[1] < 1:
        raise PipelineError(f"rollout context must be (B, frames >= 1, C, h, w), got {tuple(context.shape)}")


class Rollout:
    """One autoregressive rollout, a frame at a time: `rollout` runs it for a horizon, the play server
    for as long as a player holds keys. The same seed and actions give the same frames either way,
    and with the cache its memory is what the model reads (its window of past frames), however long
    it runs. context (B, C_ctx, C, h, w) normalised latents; context_actions (B, C_ctx) for an action
    model (-1: none), None without action conditioning; tau_ctx the context frames' noise level."""

    def __init__(self, model, context, sampler: SamplerConfig, generator=None, use_cache=True, context_actions=None, *,
                 tau_ctx: float):
        _check_context(context)
        self.model, self.sampler, self.generator, self.use_cache = model, sampler, generator, use_cache
        self.tau_ctx = tau_ctx
        self.device, self.shape = context.device, (context.shape[0], 1, *context.shape[2:])
        self.d = sampler.step_size(model.cfg.k_max)
        self.history = self.corrupt(context)  # frames not yet in the cache (all of them without a cache)
        self.hist_actions = context_actions  # (B, frames in history)
        self.cache = model.new_cache() if use_cache else None
        self.last = context[:, -1:].float()  # the frame before the next one, uncorrupted (B, 1, C, h, w)

    def corrupt(self, x):  # (B, n, C, h, w) -> noised to tau_ctx, float32
        t_ctx = self.tau_ctx
        return (1 - t_ctx) * x.float() + t_ctx * _noise(x.shape, self.generator, self.device)

    @torch.no_grad()
    def step(self, action=None, teacher=None):
        """The next frame (B, 1, C, h, w) under `action` (B, 1) (None for a model without actions);
        `teacher` (B, 1, C, h, w): the real frame that joins the history instead of the sampled one."""
        s, history = self.sampler, self.history
        # the flow's start: noise, around the frame before (the last of the history: real or generated)
        z = flow_start(_noise(self.shape, self.generator, self.device), history[:, -1:].float(), self.model.cfg.source,
                       s.temperature * self.model.cfg.source_noise)
        z = denoise_frame(self.model, history, torch.full(history.shape[:2], self.tau_ctx, device=self.device), z, s,
                          self.d, cache=self.cache, prefix_actions=self.hist_actions, action=action)
        if s.still > 0:  # cells that barely changed keep the frame before exactly
            change = (z - self.last).pow(2).mean(2, keepdim=True).sqrt()  # (B, 1, 1, h, w)
            z = torch.where(change < s.still, self.last, z)
        self.last = (teacher if teacher is not None else z).float()
        fed = self.corrupt(self.last)
        self.history = fed if self.use_cache else torch.cat([history, fed], 1)
        if action is not None:
            self.hist_actions = action if self.use_cache else torch.cat([self.hist_actions, action], 1)
        return z


@torch.no_grad()
def rollout(model, context, horizon: int, sampler: SamplerConfig, generator=None, use_cache=True, teacher=None,
            actions=None, *, tau_ctx: float):
    """Autoregressive rollout: context (B, C_ctx, C, h, w) normalised latents -> (B, horizon, C, h, w).

    Each new frame starts from seeded noise (around the frame before it for a model whose
    `source` is "previous"; the trained noise level times `sampler.temperature`) and is denoised
    with `sampler`; then it is corrupted to tau_ctx and appended to the context. With `teacher` (B, horizon, C, h, w), the real frame t
    is appended instead of the generated one (teacher forcing, the drift diagnostic): each
    prediction is then one step ahead of real history. `use_cache` keeps keys/values of past
    frames (the network's `new_cache`), so the cost per frame stays flat up to the model's max_frames
    window (a sliding window past it); without it the whole history is recomputed at every step
    (same result within float tolerance, cost growing with the horizon). Put the model in eval mode.
    An action model takes `actions` (B, C_ctx + horizon) long: the action that produced each context
    frame and each frame to predict (-1: none); None: no action conditioning.
    """
    _check_context(context)
    if teacher is not None and (teacher.shape[0] != context.shape[0] or teacher.shape[1] < horizon):
        raise PipelineError(f"rollout teacher {tuple(teacher.shape)} must hold {horizon} frames per context")
    B, n_ctx = context.shape[:2]
    if actions is not None and tuple(actions.shape) != (B, n_ctx + horizon):
        raise PipelineError(f"rollout actions {tuple(actions.shape)} must be (B, context + horizon) = {(B, n_ctx + horizon)}")
    run = Rollout(model, context, sampler, generator, use_cache, None if actions is None else actions[:, :n_ctx],
                  tau_ctx=tau_ctx)
    return torch.cat([run.step(None if actions is None else actions[:, n_ctx + t : n_ctx + t + 1],
                               None if teacher is None else teacher[:, t : t + 1]) for t in range(horizon)], 1)
