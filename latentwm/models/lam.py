"""The latent action model (LAM): which of a few discrete actions turned frame t into t+1.

It works on the frames themselves, cut into cells of patch x patch pixels stacked on channels
(`cells`: (..., 3, H, W) -> x (..., 3 patch^2, H/patch, W/patch)), not on the tokenizer's latents:
    inverse  (x_t, x_t+1)                -> e (B, code_dim) -> nearest of `codes` unit code vectors (VQ)
    forward  (x_t-c+1 .. x_t, code vector) -> x_t+1, predicted as x_t plus a change (c = context)
    __call__ (B, c + 1, 3, H, W) frames t-c+1 .. t+1 (uint8 values) -> (loss, logs): the loop's contract

Why pixels: a small sprite's move is a large part of the pixel error but a tiny part of the
normalised latent error, where the floor's texture dominates. On the generator's clips, a forward
model given the player's true action gains 0.041 (of 0.240) in pixels and 0.021 (of 0.338) in
latents; a LAM on latents spends its codes on the camera (NMI with the true actions 0.015), one on
pixels finds the player (0.76). It also leaves the LAM independent of the tokenizer: it trains
beside it, and a new tokenizer does not retrain it.

The inverse model sees only the transition itself, so its code can only say what happened between
t and t+1; the forward model must predict t+1 from the past and that code alone, so the code has
to carry what the past does not. How much past the forward model sees decides what that is. With
one frame (context 1, the default) no motion is predictable, so the code must say how things
moved, and the player's move is the part of it that varies most from one transition to the next:
on the generator's clips the codes then match the true actions (NMI 0.76). With two frames, steady
motion (a camera pan, momentum, and also a player who holds a key) is predictable without the
code, which is left with the rare changes: the codes matched nothing (NMI 0.01-0.02).

Two options for footage whose camera moves (off by default): `shift` lets the forward model move
the whole view by a mixture of whole-cell shifts the code picks, as a turn moves it further than its
convs see; `inverse: motion` has the inverse model read only how well frame t matches frame t+1
under each shift, over the cells that changed, so the code can say how the view moved and not how
the light changed (on a panned texture under a flash it names the pan, NMI 0.64, where reading the
frames names the flash; on the Doom clips neither moved the codes, docs/EXPERIMENTS.md).

Codebook: cosine VQ with a straight-through gradient, codebook + commitment losses, and dead-code
reset (a code that the recent batches hardly use is moved onto a random encoder output), the
usual cure of the usual failure, a collapsed codebook. Logged: usage (fraction of codes used in
the batch), perplexity (exp of the entropy of the batch's code histogram; `codes` at best, 1
collapsed), the forward loss with the code and with the learned "no action" instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from latentwm.config.lam import LamConfig, LamStage
from latentwm.core.errors import PipelineError


class Res(nn.Module):
    """Conv residual block, FiLM-conditioned when given a (B, 2W) scale/shift."""

    def __init__(self, w: int):
        super().__init__()
        self.norm = nn.GroupNorm(8 if w % 8 == 0 else 1, w)
        self.conv1, self.conv2 = nn.Conv2d(w, w, 3, padding=1), nn.Conv2d(w, w, 3, padding=1)

    def forward(self, x, film=None):  # x (B, W, h, w); film (B, 2W) or None
        h = self.norm(x)
        if film is not None:
            scale, shift = film[:, :, None, None].chunk(2, 1)
            h = h * (1 + scale) + shift
        return x + self.conv2(F.silu(self.conv1(F.silu(h))))


class Lam(nn.Module):
    config_class = LamConfig

    def __init__(self, cfg: LamConfig, commitment: float = 0.25, null_action: float = 0.1, dead_code_every: int = 50,
                 diversity: float = 0.0, continuous_steps: int = 0, photometric: float = 0.0):
        super().__init__()
        self.cfg, self.photometric = cfg, photometric
        C, W, K = 3 * cfg.patch**2, cfg.width, cfg.codes
        self.commitment, self.null_action, self.dead_code_every = commitment, null_action, dead_code_every
        self.diversity, self.continuous_steps = diversity, continuous_steps
        # inverse: (B, 2C, h, w) -> two stride-2 convs -> mean and max pool -> (B, code_dim)
        if "frames" in cfg.inverse:
            self.inv_in = nn.Conv2d(2 * C, W, 3, padding=1)
            self.inv_blocks = nn.ModuleList(Res(W) for _ in range(cfg.depth))
            self.inv_down = nn.Sequential(nn.SiLU(), nn.Conv2d(W, W, 3, stride=2, padding=1), nn.SiLU(),
                                          nn.Conv2d(W, W, 3, stride=2, padding=1), nn.SiLU())
            self.inv_out = nn.Linear(2 * W, cfg.code_dim)
        if "motion" in cfg.inverse:  # the view's match under each of the (2S + 1)^2 shifts -> added to the output
            n = (2 * cfg.shift + 1) ** 2
            self.inv_motion = nn.Sequential(nn.Linear(n, 2 * W), nn.SiLU(), nn.Linear(2 * W, cfg.code_dim))
        self.codebook = nn.Parameter(F.normalize(torch.randn(K, cfg.code_dim), dim=1))  # (K, code_dim)
        self.null = nn.Parameter(torch.zeros(cfg.code_dim))  # the "no action" vector
        # forward: cells (B, context * C, h, w) + FiLM of the code vector in every block -> change of z_t
        # the past frames (and frame t shifted), and the code on every cell
        self.fwd_in = nn.Conv2d((cfg.context + bool(cfg.shift)) * C + cfg.code_dim, W, 3, padding=1)
        if cfg.shift:  # the code's weights over shifts -S..S of each axis, "no shift" favoured at the start
            self.fwd_shift = nn.Linear(cfg.code_dim, 2 * (2 * cfg.shift + 1))
            nn.init.zeros_(self.fwd_shift.weight)
            with torch.no_grad():
                self.fwd_shift.bias.zero_().view(2, -1)[:, cfg.shift] = 2.0
        self.fwd_film = nn.Linear(cfg.code_dim, 2 * W * cfg.depth)
        self.fwd_blocks = nn.ModuleList(Res(W) for _ in range(cfg.depth))
        self.fwd_out = nn.Conv2d(W, C, 3, padding=1)
        nn.init.zeros_(self.fwd_out.weight)  # untrained: predicts "copy z_t"
        nn.init.zeros_(self.fwd_out.bias)
        self.register_buffer("pixel_mean", torch.full((3,), 0.5))  # per RGB channel, in [0, 1]: set by `scale_to`
        self.register_buffer("pixel_std", torch.full((3,), 0.25))
        self.register_buffer("usage", torch.full((K,), 1.0 / K))  # recent share of samples per code
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def network(self) -> Lam:
        """What the checkpoint holds (the loop's contract): the model itself."""
        return self

    def features(self, z_t, z_next):
        """(B, C, h, w) x 2 -> the frame-reading inverse network's pooled features (B, 2W)."""
        h = self.inv_in(torch.cat([z_t, z_next], 1))
        for blk in self.inv_blocks:
            h = blk(h)
        h = self.inv_down(h)  # (B, W, h/4, w/4)
        return torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)

    def embed(self, z_t, z_next):
        """(B, C, h, w) x 2 -> unit encoder outputs e (B, code_dim)."""
        e = 0
        if "frames" in self.cfg.inverse:
            e = self.inv_out(self.features(z_t, z_next))
        if "motion" in self.cfg.inverse:
            cost = match(z_t, z_next, self.cfg.shift).flatten(1)  # (B, (2S + 1)^2)
            e = e + self.inv_motion((cost - cost.mean(1, keepdim=True)) / cost.std(1, keepdim=True).clamp_min(1e-6))
        return F.normalize(e, dim=1)

    def quantize(self, e):
        """e (B, code_dim) -> ids (B,), code vectors (B, code_dim) with the straight-through gradient."""
        book = F.normalize(self.codebook, dim=1)
        ids = (e @ book.t()).argmax(1)  # nearest by cosine
        q = book[ids]
        return ids, e + (q - e).detach(), q

    @torch.no_grad()
    def scale_to(self, frames: torch.Tensor) -> None:
        """Standardise inputs by the per-channel mean and std of these frames (..., 3, H, W) from now on
        (saved with the weights). Zero-mean inputs train several times faster than raw pixel levels."""
        x = frames.float().movedim(-3, 0).flatten(1) / 255  # (3, N)
        self.pixel_mean.copy_(x.mean(1))
        self.pixel_std.copy_(x.std(1).clamp_min(1e-3))

    def cells(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) pixel values in [0, 255] -> (..., 3 patch^2, H/patch, W/patch), standardised."""
        x = (frames.float() / 255 - self.pixel_mean[:, None, None]) / self.pixel_std[:, None, None]
        return F.pixel_unshuffle(x.flatten(0, -4), self.cfg.patch).unflatten(0, x.shape[:-3])

    @torch.no_grad()
    def infer(self, frames_t, frames_next) -> torch.Tensor:
        """The action id (B,) of each transition frames_t -> frames_next ((B, 3, H, W) pixel values)."""
        return self.quantize(self.embed(self.cells(frames_t), self.cells(frames_next)))[0]

    def predict(self, past, code):
        """Cells of frame t+1 (B, C, h, w) from those of the past frames (B, context, C, h, w), the last
        being frame t's (z_t), and code vectors (B, code_dim)."""
        # unit code vectors (components ~ 1/sqrt(code_dim)) scaled to the unit scale of the cells
        z_t = past[:, -1]
        grid = (code * code.shape[1] ** 0.5)[:, :, None, None].expand(-1, -1, *z_t.shape[2:])  # (B, code_dim, h, w)
        seen = [past.flatten(1, 2), grid]
        if self.cfg.shift:
            z_t = shifted(z_t, self.fwd_shift(code).unflatten(1, (2, -1)).softmax(2), self.cfg.shift)
            seen.insert(1, z_t)
        h = self.fwd_in(torch.cat(seen, 1))
        films = self.fwd_film(code).chunk(len(self.fwd_blocks), 1)  # each (B, 2W)
        for blk, film in zip(self.fwd_blocks, films):
            h = blk(h, film)
        return z_t + self.fwd_out(F.silu(h))

    def forward(self, batch):
        """batch (B, context + 1, 3, H, W): frames t-context+1 .. t, t+1 (pixel values) -> (loss, logs)."""
        z = self.cells(batch)  # (B, context + 1, C, h, w)
        past, z_t, z_next = z[:, :-1], z[:, -2], z[:, -1]
        B, K = z.shape[0], self.cfg.codes
        if self.training and self.photometric:  # the inverse model sees each frame under its own light
            seen = self.cells(jitter(batch[:, -2:], self.photometric))
            e = self.embed(seen[:, 0], seen[:, 1])
        else:
            e = self.embed(z_t, z_next)
        if self.training and int(self.steps) == self.continuous_steps > 0:  # end of the warmup: codes onto its outputs
            with torch.no_grad():
                self.codebook.data[:] = e[torch.randperm(B, device=e.device)[:K]] if B >= K else self.codebook.data
        ids, q_st, q = self.quantize(e)
        vq = ((q - e.detach()) ** 2).sum(1).mean() + self.commitment * ((e - q.detach()) ** 2).sum(1).mean()
        if self.training and int(self.steps) < self.continuous_steps:
            # warmup: the forward model gets the encoder output itself, so the pair first finds what the
            # past cannot predict; quantizing from the start often settles on one code before that
            q_st, vq = e, vq * 0
        drop = torch.zeros(B, 1, dtype=torch.bool, device=z.device)  # (B, 1): samples given "no action"
        if self.training:
            drop = (torch.rand(B, device=z.device) < self.null_action)[:, None]
        code = torch.where(drop, self.null.expand(B, -1), q_st)
        err = ((self.predict(past, code) - z_next) ** 2).mean((1, 2, 3))  # (B,)
        loss = err.mean() + vq
        if self.diversity:  # soft assignments (B, K): confident per sample, spread over the batch
            p = (e @ F.normalize(self.codebook, dim=1).t() / 0.1).softmax(1)
            avg = p.mean(0)
            spread = (avg * avg.clamp_min(1e-9).log()).sum()  # -H(batch's code use): lowest when uniform
            sharp = -(p * p.clamp_min(1e-9).log()).sum(1).mean()  # H per sample: lowest when one code
            loss = loss + self.diversity * (spread + sharp)
        counts = torch.bincount(ids, minlength=K).float()
        with torch.no_grad():
            without = ((self.predict(past, self.null.expand(B, -1)) - z_next) ** 2).mean()
            with_action = err[~drop[:, 0]].mean() if (~drop).any() else err.mean()
            if self.training:
                self._dead_codes(e.detach(), counts / B)
        logs = {"fwd_loss": with_action, "fwd_loss_without": without, "action_gain": without - with_action, "vq_loss": vq.detach(),
                "usage": (counts > 0).float().mean(), "perplexity": perplexity(counts)}
        return loss, logs

    @torch.no_grad()
    def _dead_codes(self, e, share):
        """Track each code's recent share of samples; every dead_code_every steps move the codes that
        fell below 1/(10 K) onto random encoder outputs of this batch."""
        self.usage.mul_(0.95).add_(0.05 * share)
        self.steps += 1
        if int(self.steps) % self.dead_code_every:
            return
        dead = torch.nonzero(self.usage < 0.1 / self.cfg.codes).flatten()
        if len(dead):
            pick = torch.randint(0, len(e), (len(dead),), device=e.device)
            self.codebook.data[dead] = e[pick] + 0.01 * torch.randn_like(e[pick])
            self.usage[dead] = 1.0 / self.cfg.codes


def jitter(frames: torch.Tensor, p: float) -> torch.Tensor:
    """Pixel values (B, T, 3, H, W) in [0, 255], each frame under its own brightness gain exp(U(-p, p)),
    offset U(-p/3, p/3) and per-channel tint exp(U(-p/3, p/3)), clamped to [0, 255]."""
    B, T = frames.shape[:2]

    def u(*shape, r):
        return (torch.rand(B, T, *shape, 1, 1, device=frames.device) * 2 - 1) * r

    x = frames.float() / 255
    x = x * torch.exp(u(1, r=p) + u(3, r=p / 3)) + u(1, r=p / 3)
    return (x.clamp(0, 1) * 255)


def shifted(z: torch.Tensor, weights: torch.Tensor, S: int) -> torch.Tensor:
    """z (B, C, h, w) moved by a mixture of whole-cell shifts: weights (B, 2, 2S + 1) over the shifts
    -S..S along x (row 0; > 0 moves the content right) then y (row 1); the edges repeat."""
    w = z.shape[-1]
    x = F.pad(z, (S, S, S, S), mode="replicate")
    x = sum(weights[:, 0, i, None, None, None] * x[..., S - s:S - s + w] for i, s in enumerate(range(-S, S + 1)))
    h = z.shape[-2]
    return sum(weights[:, 1, i, None, None, None] * x[..., S - s:S - s + h, :] for i, s in enumerate(range(-S, S + 1)))


def match(z: torch.Tensor, target: torch.Tensor, S: int, still: float = 0.01) -> torch.Tensor:
    """Mean squared difference (B, 2S + 1, 2S + 1) between target (B, C, h, w) and z moved by every
    whole-cell shift (dy, dx) in -S..S (as `shifted`: > 0 moves the content down / right), over the
    target's cells that changed (mean squared change above `still`): a still HUD or weapon, which
    matches only unmoved, would pull every view's match to no shift."""
    h, w = z.shape[-2:]
    moved = (((target - z) ** 2).mean(1) > still).float()  # (B, h, w)
    weight = moved / moved.sum((1, 2), keepdim=True).clamp_min(1)
    x = F.pad(z, (S, S, S, S), mode="replicate")

    def cost(dy: int, dx: int) -> torch.Tensor:  # (B,)
        return (((x[..., S - dy:S - dy + h, S - dx:S - dx + w] - target) ** 2).mean(1) * weight).sum((1, 2))

    return torch.stack([torch.stack([cost(dy, dx) for dx in range(-S, S + 1)], 1) for dy in range(-S, S + 1)], 1)


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of a histogram of codes (K,): K when all are used equally, 1 for one code."""
    p = counts / counts.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


def build(stage: LamStage, frame_shape) -> Lam:
    """The model for frames of frame_shape (3, H, W), whose sides must be multiples of the patch."""
    p, (_, H, W) = stage.model.patch, frame_shape
    if H % p or W % p:
        raise PipelineError(f"frames of {W}x{H} cannot be cut into cells of lam.model.patch {p} pixels; set lam.model.patch "
                            f"to a divisor of both sides (e.g. {math.gcd(math.gcd(H, W), 4)})")
    return Lam(stage.model, stage.commitment, stage.null_action, stage.dead_code_every, stage.diversity, stage.continuous_steps,
               stage.photometric)
