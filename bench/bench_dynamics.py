"""Training speed of the factorized space/time model vs full attention over all tokens of a window.

    python bench/bench_dynamics.py [--windows 8 16] [--batch 8] [--steps 5] [--threads 2]

Both models have the same width, depth, heads, MLP and adaLN conditioning; the full-attention
one replaces every block's spatial (+ every Nth temporal) attention by one attention over all
T * N tokens of the window, frame-causal (a token sees every token of its own and earlier frames).
One training step = the real objective (FlowObjective, shortcut forcing on) + backward + AdamW.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from latentwm.config.dynamics import DynamicsConfig, ObjectiveConfig
from latentwm.models.dynamics.transformer import Attention, Dynamics, SwiGLU, modulate
from latentwm.models.flow import FlowObjective


class FullBlock(nn.Module):
    """Attention over all tokens of the window (frame-causal) + SwiGLU, adaLN per frame."""

    def __init__(self, cfg: DynamicsConfig):
        super().__init__()
        D = cfg.dim
        self.norm = nn.RMSNorm(D, elementwise_affine=False)
        self.attn, self.mlp = Attention(D, cfg.heads, cfg.qk_norm), SwiGLU(D, cfg.mlp_ratio)
        self.ada = nn.Linear(D, 6 * D)

    def forward(self, x, c, tctx):
        B, T, N, D = x.shape
        m = self.ada(c).chunk(6, -1)
        frame = torch.arange(T, device=x.device).repeat_interleave(N)
        mask = frame[:, None] >= frame[None, :]  # (T*N, T*N) frame-causal
        h = modulate(self.norm(x), m[0], m[1]).reshape(B, T * N, D)
        x = x + m[2][:, :, None] * self.attn(h, mask=mask).view(B, T, N, D)
        return x + m[5][:, :, None] * self.mlp(modulate(self.norm(x), m[3], m[4]))


def full_attention(cfg: DynamicsConfig) -> Dynamics:
    model = Dynamics(cfg)
    model.blocks = nn.ModuleList(FullBlock(cfg) for _ in range(cfg.depth))
    return model


def steps_per_s(model, T, batch, steps, cfg):
    obj = FlowObjective(ObjectiveConfig(), cfg.k_max)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, T, cfg.latent_channels, *cfg.latent_hw)

    def step():
        loss, _ = obj(model, x)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", type=int, nargs="+", default=[8, 16])
    p.add_argument("--batch", type=int, default=8), p.add_argument("--steps", type=int, default=5)
    p.add_argument("--patch", type=int, default=2), p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print("| window | tokens/frame | factorized steps/s | full steps/s | factorized tokens/s | full tokens/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for T in a.windows:
        cfg = DynamicsConfig(size="tiny", arch="transformer", latent_channels=8, latent_hw=(16, 16), patch=a.patch, max_frames=T)
        torch.manual_seed(0)
        fact = steps_per_s(Dynamics(cfg).train(), T, a.batch, a.steps, cfg)
        full = steps_per_s(full_attention(cfg).train(), T, a.batch, a.steps, cfg)
        tok = a.batch * T * (16 // a.patch) ** 2
        print(f"| {T} | {tok // (a.batch * T)} | {fact:.2f} | {full:.2f} | {fact * tok:.0f} | {full * tok:.0f} | {fact / full:.2f}x |")


if __name__ == "__main__":
    main()
