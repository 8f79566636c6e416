"""The sampler: Euler and shortcut updates, rollout shapes, determinism, KV cache, teacher forcing."""

from __future__ import annotations

import pytest
import torch

from latentwm.config.dynamics import DynamicsConfig
from latentwm.config.evaluation import SamplerConfig
from latentwm.core.errors import PipelineError
from latentwm.models.dynamics.transformer import Dynamics
from latentwm.models.sampler import denoise_frame, rollout


def tiny_model(max_frames=4) -> Dynamics:
    torch.manual_seed(0)
    cfg = DynamicsConfig(
        arch="transformer", latent_channels=4, latent_hw=(8, 8), dim=32, depth=2, heads=2, temporal_every=1, max_frames=max_frames, k_max=8
    )
    m = Dynamics(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if not p.abs().sum():  # adaLN-zero layers: make every block do something
                p.normal_(0, 0.1)
    return m.eval()


class Const(torch.nn.Module):
    """Predicts the constant c and records the (tau, d) it was called with."""

    def __init__(self, c=2.0):
        super().__init__()
        self.c, self.calls = c, []

    def forward(self, z, tau, d=None, cache=None, commit=0, predict=None):
        self.calls.append((tau[0, -1].item(), d[0, -1].item()))
        return torch.full_like(z, self.c)


def test_euler_update_by_hand():
    m = Const(2.0)
    z = torch.full((1, 1, 1, 1, 1), 1.0)
    s = SamplerConfig("s", "euler", steps=2)
    out = denoise_frame(m, None, None, z, s, d=1 / 8)
    # tau 1 -> 0.5: z = 1 - 0.5 (1 - 2) / 1 = 1.5 ( = 0.5 x_hat + 0.5 eps_hat, eps_hat = z = 1 );
    # tau 0.5 -> 0: the last step returns x_hat = 2.
    assert out.item() == 2.0 and m.calls == [(1.0, 0.125), (0.5, 0.125)]
    m.calls.clear()
    denoise_frame(m, None, None, z, SamplerConfig("s", "shortcut", steps=4), d=SamplerConfig("s", "shortcut", 4).step_size(8))
    assert m.calls == [(1.0, 0.25), (0.75, 0.25), (0.5, 0.25), (0.25, 0.25)]


def test_sampler_config_checks():
    assert SamplerConfig("s", "euler", 8).step_size(8) == 1 / 8  # Euler runs the finest step
    with pytest.raises(PipelineError, match="euler sampling with 64 steps .* k_max 8; use at most 8 steps"):
        SamplerConfig("s", "euler", 64).step_size(8)  # levels between the training grid
    assert SamplerConfig("s", "shortcut", 4).step_size(8) == 0.25
    with pytest.raises(PipelineError, match="power of two"):
        SamplerConfig("s", "shortcut", 3).step_size(8)
    with pytest.raises(PipelineError, match="power of two <= k_max"):
        SamplerConfig("s", "shortcut", 16).step_size(8)
    with pytest.raises(PipelineError, match="unknown"):
        SamplerConfig("s", "ddim", 4)


@pytest.mark.parametrize("kind,steps", [("euler", 6), ("shortcut", 4)])
def test_rollout_shape_and_determinism(kind, steps):
    m = tiny_model()
    ctx = torch.randn(2, 3, 4, 8, 8)
    s = SamplerConfig("s", kind, steps)
    a = rollout(m, ctx, 5, s, generator=torch.Generator().manual_seed(1), tau_ctx=0.1)
    b = rollout(m, ctx, 5, s, generator=torch.Generator().manual_seed(1), tau_ctx=0.1)
    c = rollout(m, ctx, 5, s, generator=torch.Generator().manual_seed(2), tau_ctx=0.1)
    assert a.shape == (2, 5, 4, 8, 8) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize("horizon", [3, 9])  # within the 4-frame window, and past it
def test_cached_rollout_equals_recomputation(horizon):
    m = tiny_model(max_frames=4)
    ctx = torch.randn(2, 2, 4, 8, 8)
    s = SamplerConfig("s", "shortcut", 2)
    a = rollout(m, ctx, horizon, s, generator=torch.Generator().manual_seed(0), use_cache=True, tau_ctx=0.1)
    b = rollout(m, ctx, horizon, s, generator=torch.Generator().manual_seed(0), use_cache=False, tau_ctx=0.1)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_teacher_forcing_feeds_real_frames():
    m = tiny_model()
    ctx, real = torch.randn(1, 2, 4, 8, 8), torch.randn(1, 4, 4, 8, 8)
    s = SamplerConfig("s", "shortcut", 2)
    free = rollout(m, ctx, 4, s, generator=torch.Generator().manual_seed(0), tau_ctx=0.1)
    forced = rollout(m, ctx, 4, s, generator=torch.Generator().manual_seed(0), teacher=real, tau_ctx=0.1)
    torch.testing.assert_close(forced[:, 0], free[:, 0])  # same context and noise: same first frame
    assert not torch.allclose(forced[:, 1:], free[:, 1:])  # later frames see the real past
    nocache = rollout(m, ctx, 4, s, generator=torch.Generator().manual_seed(0), teacher=real, use_cache=False, tau_ctx=0.1)
    torch.testing.assert_close(forced, nocache, atol=1e-4, rtol=1e-4)
    with pytest.raises(PipelineError, match="teacher"):
        rollout(m, ctx, 4, s, teacher=real[:, :2], tau_ctx=0.1)


class Echo(torch.nn.Module):
    """x_hat = z: every Euler step keeps z, so a rollout returns each frame's flow start."""

    def __init__(self, source, noise):
        super().__init__()
        self.cfg = DynamicsConfig(arch="conv", latent_channels=4, latent_hw=(8, 8), k_max=4, source=source, source_noise=noise)

    def forward(self, z, tau, d=None, cache=None, commit=0, predict=None):
        return z.clone()


def test_each_frame_starts_around_the_frame_before_it():
    ctx, real = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 4, 4, 8, 8)
    s = SamplerConfig("s", "euler", 4)  # with a clean history (tau_ctx 0 below)

    def run(source, noise, **kw):
        return rollout(Echo(source, noise), ctx, 4, s, generator=torch.Generator().manual_seed(0), use_cache=False, tau_ctx=0.0, **kw)

    # "previous": the start is the last frame (the last context frame, then each generated one) plus noise
    torch.testing.assert_close(run("previous", 1e-4), ctx[:, -1:].expand(-1, 4, -1, -1, -1), atol=1e-3, rtol=0)
    # teacher forcing: the real frame before; the same draws as the pure-noise start, shifted by it
    before = torch.cat([ctx[:, -1:], real[:, :3]], 1)
    torch.testing.assert_close(run("previous", 0.5, teacher=real) - run("noise", 0.5, teacher=real), before)
    pure = run("noise", 0.5)
    assert abs(pure.std().item() - 0.5) < 0.05 and abs(pure.mean().item()) < 0.05


def test_temperature_scales_the_start_noise_around_the_frame_before():
    """A sampler at temperature t starts each frame at the frame before plus t times the trained noise:
    with the Echo model the first frame is the last context frame plus exactly t times the noise the
    temperature-1 sampler drew (the same seed)."""
    ctx = torch.randn(2, 3, 4, 8, 8)

    def first(temperature):
        s = SamplerConfig("s", "euler", 4, temperature=temperature)
        return rollout(Echo("previous", 0.25), ctx, 1, s, generator=torch.Generator().manual_seed(0), use_cache=False,
                      tau_ctx=0.0)[:, 0]

    noise = first(1.0) - ctx[:, -1]
    assert abs(noise.std().item() - 0.25) < 0.03
    torch.testing.assert_close(first(0.4) - ctx[:, -1], 0.4 * noise, atol=1e-5, rtol=1e-4)
    # every frame of a longer rollout, around the one before it; a pure-noise start is scaled alike
    s = lambda t: SamplerConfig("s", "euler", 4, temperature=t)  # noqa: E731
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    hot, cool = (rollout(Echo("previous", 0.25), ctx, 3, s(t), generator=gen(), use_cache=False, tau_ctx=0.0) for t in (1.0, 0.4))
    steps = lambda x: x - torch.cat([ctx[:, -1:], x[:, :-1]], 1)  # noqa: E731
    torch.testing.assert_close(steps(cool), 0.4 * steps(hot), atol=1e-5, rtol=1e-4)
    hot, cool = (rollout(Echo("noise", 0.5), ctx, 3, s(t), generator=gen(), use_cache=False, tau_ctx=0.0) for t in (1.0, 0.4))
    torch.testing.assert_close(cool, 0.4 * hot, atol=1e-5, rtol=1e-4)
    with pytest.raises(PipelineError, match="temperature"):
        SamplerConfig("s", "euler", 4, temperature=0.0)


def test_still_cells_keep_the_frame_before_exactly():
    """With `still`, a latent cell whose sampled change from the frame before is below it (RMS over the
    channels) is the frame before exactly; the cells above it are the sample unchanged. With the Echo
    model each frame is the frame before plus its start noise (0.25 x temperature), so half the
    cells fall under the median change."""
    ctx = torch.randn(2, 3, 4, 8, 8)

    def run(still, horizon=1):
        s = SamplerConfig("s", "euler", 4, still=still)
        return rollout(Echo("previous", 0.25), ctx, horizon, s, generator=torch.Generator().manual_seed(0), use_cache=False,
                       tau_ctx=0.0)

    free = run(0.0)
    change = (free - ctx[:, -1:]).pow(2).mean(2, keepdim=True).sqrt()  # (B, 1, 1, h, w)
    median = change.median().item()
    held = run(median)
    kept = (change < median).expand_as(free)
    assert 0.4 < kept.float().mean() < 0.6
    assert torch.equal(held[kept], ctx[:, -1:].expand_as(free)[kept]) and torch.equal(held[~kept], free[~kept])
    # a threshold above every change: the whole rollout is the last context frame, at every step
    assert torch.equal(run(1e6, horizon=3), ctx[:, -1:].expand(-1, 3, -1, -1, -1))
    with pytest.raises(PipelineError, match="still"):
        SamplerConfig("s", "euler", 4, still=-0.1)
