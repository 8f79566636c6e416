"""The conv dynamics network (the tiny preset's): receptive field, predicted frames, rollout cache,
checkpoints, actions, and that it learns a motion the last frame does not show."""

from __future__ import annotations

import pytest
import torch
from conftest import cache_matches_full_forward, conv_model

from latentwm.config.dynamics import DynamicsConfig, ObjectiveConfig
from latentwm.config.evaluation import SamplerConfig
from latentwm.config.fields import to_dict
from latentwm.core.errors import PipelineError
from latentwm.models import checkpoint
from latentwm.models.dynamics import network
from latentwm.models.dynamics.conv import ConvDynamics
from latentwm.models.dynamics.parts import denoised
from latentwm.models.flow import FlowObjective
from latentwm.models.sampler import rollout


def test_preset_network_and_window():
    cfg = DynamicsConfig(arch="conv").resolve([8, 16, 16], 8)
    assert cfg.arch == "conv" and cfg.max_frames == cfg.conv_frames + 1  # what a frame sees, itself included
    assert isinstance(network(cfg), ConvDynamics)
    assert type(network(DynamicsConfig(arch="transformer").resolve([8, 16, 16], 8))).__name__ == "Dynamics"


@pytest.mark.parametrize("patch", [1, 2])
def test_a_frame_sees_itself_and_its_k_past_frames_only(patch):
    m = conv_model(K=2, conv_patch=patch)
    z, tau = torch.randn(2, 7, 4, 8, 8), torch.rand(2, 7)
    z2 = z.clone()
    z2[:, 3] += 1.0
    with torch.no_grad():
        diff = (m(z, tau) - m(z2, tau)).abs().amax((2, 3, 4))  # (B, T)
    assert diff[:, :3].max() == 0  # the past does not see the future
    assert diff[:, 3:6].min() > 1e-4  # frame 3 itself and the K = 2 frames after it do
    assert diff[:, 6:].max() == 0  # beyond the receptive field


def test_only_predicted_frames_are_computed_and_they_match():
    m = conv_model()
    z, tau = torch.randn(3, 6, 4, 8, 8), torch.rand(3, 6)
    predict = torch.rand(3, 6) > 0.5
    predict[0, 0] = True
    with torch.no_grad():
        full, part = m(z, tau), m(z, tau, predict=predict)
    torch.testing.assert_close(part[predict], full[predict], atol=1e-5, rtol=1e-5)
    # the rest is the previous frame's best guess (what the residual network adds to)
    prev = denoised(torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], 1), torch.cat([torch.ones(3, 1), tau[:, :-1]], 1))
    torch.testing.assert_close(part[~predict], prev[~predict])


@pytest.mark.parametrize("T", [3, 8])  # within the receptive field, and past it
def test_frame_cache_equals_full_forward(T):
    m = conv_model(K=2)
    cache = cache_matches_full_forward(m, torch.randn(2, T, 4, 8, 8), torch.rand(2, T))
    assert len(cache) == min(T, 2)  # the K past frames a new frame needs
    ctx = torch.randn(2, 5, 4, 8, 8)
    a = rollout(m, ctx, 4, SamplerConfig("s", "shortcut", 2), torch.Generator().manual_seed(0), use_cache=True, tau_ctx=0.1)
    b = rollout(m, ctx, 4, SamplerConfig("s", "shortcut", 2), torch.Generator().manual_seed(0), use_cache=False, tau_ctx=0.1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("patch", [1, 2])
def test_untrained_residual_network_copies_the_previous_frame(patch):
    torch.manual_seed(0)
    m = network(DynamicsConfig(arch="conv", conv_width=16, conv_blocks=1, conv_patch=patch).resolve([4, 8, 8], 4))
    z = torch.randn(2, 3, 4, 8, 8)
    out = m(z, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    torch.testing.assert_close(out[:, 1:], z[:, :-1])


def test_patches_fold_the_grid_and_must_divide_it():
    """conv_patch 2: the blocks run on a 4x4 grid of 2x2 cells; the output is the latent grid again."""
    m = conv_model(conv_patch=2)
    assert m.blocks[0].conv1.weight.shape[-1] == 3 and m.inp.in_channels == 3 * 4 * 4  # K + 1 frames, C, 2x2
    assert m.out.out_channels == 4 * 2 * 2
    seen = []
    m.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape[-2:])))
    z, tau = torch.randn(1, 3, 4, 8, 8), torch.rand(1, 3)
    with torch.no_grad():
        assert m(z, tau).shape == z.shape
    assert seen and set(seen) == {(4, 4)}
    with pytest.raises(PipelineError, match="conv_patch 3 does not divide the latent grid 8x8"):
        DynamicsConfig(arch="conv", conv_patch=3).resolve([4, 8, 8], 4)


def test_checkpoint_roundtrip(tmp_path):
    m = conv_model()
    checkpoint.save(tmp_path / "d.pt", checkpoint.model_state("dynamics", m, to_dict(m.cfg)))
    m2 = checkpoint.build_model(tmp_path / "d.pt", kind="dynamics")
    z, tau = torch.randn(1, 4, 4, 8, 8), torch.rand(1, 4)
    assert isinstance(m2, ConvDynamics)
    torch.testing.assert_close(m(z, tau), m2(z, tau))


def test_actions_change_the_prediction_and_are_refused_without_conditioning():
    m = conv_model(actions=3)
    with torch.no_grad():
        m.action_embed.weight.normal_(0, 1.0)
    z, tau = torch.randn(1, 4, 4, 8, 8), torch.rand(1, 4)
    a0, a1 = torch.tensor([[0, 0, 0, 0]]), torch.tensor([[0, 0, 0, 2]])
    with torch.no_grad():
        diff = (m(z, tau, actions=a0) - m(z, tau, actions=a1)).abs().amax((2, 3, 4))
    assert diff[0, :3].max() == 0 and diff[0, 3] > 1e-4  # a frame's own action only
    with pytest.raises(PipelineError, match="no action conditioning"):
        conv_model()(z, tau, actions=a0)


def test_learns_a_motion_beyond_copying_the_last_frame():
    """A blob moving one cell per frame: after 150 steps the rollout's first frame beats copy-last."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")

    def batch(n=16, T=5):
        start, v = torch.rand(n, 2, generator=g) * 8, torch.randint(-1, 2, (n, 2), generator=g).float()
        p = (start[:, None] + v[:, None] * torch.arange(T)[None, :, None]) % 8  # (n, T, 2)
        blob = torch.exp(-((yy - p[..., 0, None, None]) ** 2 + (xx - p[..., 1, None, None]) ** 2) / 2)
        return (blob[:, :, None].expand(n, T, 2, 8, 8) - 0.2) * 3  # (n, T, 2, 8, 8)

    cfg = DynamicsConfig(arch="conv", conv_width=32, conv_blocks=2, conv_frames=2, k_max=4).resolve([2, 8, 8], 5)
    m = network(cfg)
    obj, opt = FlowObjective(ObjectiveConfig(shortcut=False), 4), torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(150):
        loss, _ = obj(m, batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = batch(64)
    pred = rollout(m.eval(), x[:, :4], 1, SamplerConfig("s", "shortcut", 4), torch.Generator().manual_seed(1), tau_ctx=0.1)[:, 0]
    model_mse, copy_mse = ((pred - x[:, 4]) ** 2).mean(), ((x[:, 3] - x[:, 4]) ** 2).mean()
    assert model_mse < 0.7 * copy_mse, (model_mse, copy_mse)


def test_warp_moves_the_whole_previous_frame_by_its_mixture_of_shifts():
    """conv_warp: the previous frame as a mixture of its shifted copies; all weight on no shift copies it,
    all weight on two cells to the right moves it by two; untrained, most weight is on no shift."""
    torch.manual_seed(0)
    m = network(DynamicsConfig(arch="conv", conv_width=16, conv_blocks=1, conv_warp=True).resolve([4, 8, 8], 4))
    z = torch.randn(2, 3, 4, 8, 8)
    tau = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    rx, bias = m.warp.rx, m.warp.mlp[2].bias
    with torch.no_grad():
        untrained = m(z, tau)
        bias.zero_()
        bias[rx] = bias[2 * rx + 1 + m.warp.ry] = 50.0  # no shift
        torch.testing.assert_close(m(z, tau)[:, 1:], z[:, :-1])
        bias[rx], bias[rx + 2] = 0.0, 50.0  # two cells to the right
        out = m(z, tau)
    torch.testing.assert_close(out[:, 1:, :, :, 2:], z[:, :-1, :, :, :-2], atol=1e-5, rtol=1e-5)
    assert (untrained[:, 1:] - z[:, :-1]).abs().mean() < 0.5 * z.abs().mean(), "untrained: mostly the copy"
    assert DynamicsConfig.before["conv_warp"] is False
    with pytest.raises(PipelineError, match="conv_warp needs arch: conv"):
        DynamicsConfig(arch="transformer", conv_warp=True)


def test_match_costs_find_the_camera_shift():
    from latentwm.models.dynamics.conv import match_costs

    x = torch.randn(3, 4, 8, 16)
    costs = match_costs(x, x.roll(3, -1), 4, -1)  # moved 3 cells to the right (its border aside)
    assert costs.argmin(1).tolist() == [4 + 3] * 3


def test_warp_learns_an_action_that_turns_the_view():
    """Textured frames that scroll 3 cells per frame left or right by their action: with the warp the
    first rollout frame beats copying the last by far (the plain conv of this size does too: on
    16 x 16 its receptive field covers the shift; the real footage's A/B is in docs/EXPERIMENTS.md)."""
    g = torch.Generator().manual_seed(0)

    def batch(n=16, T=4):
        tex = torch.nn.functional.avg_pool2d(torch.randn(n, 2, 16, 16, generator=g), 3, 1, 1) * 3  # smooth, wraps
        a = torch.randint(0, 2, (n, 1), generator=g).expand(n, T).clone()  # 0: left, 1: right, held
        frames = torch.stack([torch.stack([t.roll(3 * k * (1 if ai[0] else -1), -1) for k in range(T)]) for t, ai in zip(tex, a)])
        return frames, a  # (n, T, 2, 16, 16), (n, T)

    def train(warp: bool = True):
        torch.manual_seed(0)
        cfg = DynamicsConfig(arch="conv", conv_width=32, conv_blocks=2, conv_frames=2, k_max=4, conv_warp=warp,
                             actions=2).resolve([2, 16, 16], 4)
        m = network(cfg)
        obj, opt = FlowObjective(ObjectiveConfig(shortcut=False), 4), torch.optim.AdamW(m.parameters(), lr=3e-3)
        for _ in range(150):
            x, a = batch()
            loss, _ = obj(m, (x, a))
            opt.zero_grad()
            loss.backward()
            opt.step()
        x, a = batch(64)
        pred = rollout(m.eval(), x[:, :3], 1, SamplerConfig("s", "shortcut", 4), torch.Generator().manual_seed(1), actions=a,
                       tau_ctx=0.1)[:, 0]
        return float(((pred - x[:, 3]) ** 2).mean() / ((x[:, 2] - x[:, 3]) ** 2).mean())

    assert train() < 0.3
