"""A simple learned reference for the quality benchmark: a residual conv next-latent predictor.

The last `context` latents stacked on channels -> `blocks` residual conv blocks -> the change,
added to the last latent (the output layer starts at zero, so the untrained predictor is
copy-last). Deterministic, trained with MSE on the same normalised latent windows as the world
model, for the same wall time. It is the bar the world model must clear: a model that loses to it
is limited by its design or its training, not by the latents.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from latentwm.config.dynamics import DataConfig
from latentwm.data.windows import LatentWindows


class ConvPredictor(nn.Module):
    def __init__(self, channels: int, context: int = 4, width: int = 128, blocks: int = 4):
        super().__init__()
        self.context = context
        self.inp = nn.Conv2d(channels * context, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1),
                          nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1))
            for _ in range(blocks)
        )  # fmt: skip
        self.out = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, past: torch.Tensor) -> torch.Tensor:
        """past (B, T, C, h, w), T >= 1 (the first frame repeated when T < context) -> next (B, C, h, w)."""
        if past.shape[1] < self.context:
            past = torch.cat([past[:, :1].expand(-1, self.context - past.shape[1], -1, -1, -1), past], 1)
        x = past[:, -self.context :]
        h = self.inp(x.flatten(1, 2))
        for blk in self.blocks:
            h = h + blk(h)
        return x[:, -1] + self.out(h)


def fit_reference(latent_paths, stats: dict, seconds: float, batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
                  log=print) -> tuple[ConvPredictor, int]:
    """Train for `seconds` of wall time on windows of context + 1 latents; returns (model, steps)."""
    torch.manual_seed(seed)
    C = int(stats["latent_shape"][0])
    model = ConvPredictor(C)
    data = LatentWindows(latent_paths, DataConfig(window=model.context + 1, batch_size=batch_size), seed=seed, stats=stats, expect={"tokenizer_hash": stats["tokenizer_hash"]}, log=log)  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    t0, step = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        z = data[step]  # (B, context + 1, C, h, w)
        loss = (model(z[:, :-1]) - z[:, -1]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            log(f"[reference] step {step} loss {loss.item():.4f} {time.perf_counter() - t0:.0f}s")
    return model.eval(), step


@torch.no_grad()
def reference_rollout(model, context, horizon, sampler=None, generator=None, teacher=None, tau_ctx=None):
    """The evaluation's rollout contract for the reference: deterministic, sampler and context level ignored."""
    hist, out = context.float(), []
    for t in range(horizon):
        nxt = model(hist)[:, None]  # (B, 1, C, h, w)
        out.append(nxt)
        hist = torch.cat([hist, teacher[:, t : t + 1].float() if teacher is not None else nxt], 1)
    return torch.cat(out, 1)
