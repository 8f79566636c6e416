"""The objective: step-size sampling, schedules, the shortcut bootstrap target, logs, learning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentwm.config.dynamics import DynamicsConfig, ObjectiveConfig
from latentwm.config.fields import from_dict
from latentwm.core.errors import PipelineError
from latentwm.models.dynamics.transformer import Dynamics
from latentwm.models.flow import FlowObjective, sample_levels, sample_step_sizes, step_sizes


class Linear(nn.Module):
    """A stand-in model whose half-steps are easy by hand: f(z, tau, d) = a z + b tau + c d."""

    def __init__(self, a=0.5, b=0.2, c=0.1):
        super().__init__()
        self.a, self.b, self.c = a, b, c

    def forward(self, z, tau, d=None, cache=None, commit=0, predict=None):
        d = torch.zeros_like(tau) if d is None else d
        return self.a * z + (self.b * tau + self.c * d)[..., None, None, None]


def test_step_sizes_probability_inverse_to_d():
    torch.manual_seed(0)
    assert step_sizes(8).tolist() == [1.0, 0.5, 0.25, 0.125]
    d = sample_step_sizes(40000, 8, shortcut=True)
    freq = torch.stack([(d == s).float().mean() for s in step_sizes(8)])
    want = torch.tensor([1.0, 2.0, 4.0, 8.0]) / 15  # P(d) proportional to 1/d
    torch.testing.assert_close(freq, want, atol=0.01, rtol=0)
    assert (sample_step_sizes(100, 8, shortcut=False) == 0.125).all()


@pytest.mark.parametrize("schedule", ["context", "independent"])
def test_schedule_levels(schedule):
    torch.manual_seed(0)
    cfg = ObjectiveConfig(schedule=schedule, tau_ctx=0.1, context_frames=0)  # context length drawn per window
    d = sample_step_sizes(512, 8, True)
    tau, target = sample_levels(cfg, 512, 6, d)
    t = tau[target]
    assert t.min() > 0 and t.max() <= 1 and t.max() == 1
    on_grid = tau / d[:, None]
    assert torch.allclose(on_grid[target], on_grid[target].round(), atol=1e-5)  # tau in {d, 2d, ..., 1}
    if schedule == "independent":
        assert target.all()
    else:
        assert (tau[~target] == 0.1).all() and (~target[:, 0]).all() and target[:, -1].all()
        n_ctx = (~target).sum(1)
        assert n_ctx.min() == 1 and n_ctx.max() == 5  # drawn in [1, T-1]
        assert (target[:, 1:] >= target[:, :-1]).all()  # context first, then targets
        rising = torch.where(target[:, 1:] & target[:, :-1], tau[:, 1:] - tau[:, :-1], torch.zeros(()))
        assert (rising >= 0).all()  # tau rises toward 1 along the targets
    fixed = sample_levels(ObjectiveConfig(schedule="context", context_frames=2), 64, 6, d[:64])[1]
    assert ((~fixed).sum(1) == 2).all()
    with pytest.raises(PipelineError, match="schedule"):
        from_dict(ObjectiveConfig, {"schedule": "pyramid"}, "dynamics.objective")


def test_bootstrap_target_by_hand():
    obj = FlowObjective(ObjectiveConfig(), 8)
    z = torch.ones(2, 2, 1, 1, 1)
    tau = torch.tensor([[0.5, 1.0], [0.1, 1.0]])
    d = torch.tensor([0.5, 0.5])
    target = torch.tensor([[True, True], [False, True]])  # frame (1, 0) is context: not stepped
    x = obj.bootstrap_target(Linear(), z, tau, d, target).flatten().tolist()
    # tau 0.5, d 0.5: x1 = .5 + .1 + .025 = .625; z_mid = 1 - .25 (1 - .625) / .5 = .8125 at tau .25;
    # x2 = .40625 + .05 + .025 = .48125; z_end = .8125 - .25 (.8125 - .48125) / .25 = .48125 at tau 0;
    # x* = z - tau (z - z_end) / d = .48125 (one step to tau 0 lands on x*).
    # tau 1, d 0.5: x1 = .725, v1 = .275; z_mid = .93125 at .75; x2 = .640625, v2 = .3875;
    # x* = z - tau (v1 + v2) / 2 = 1 - .33125 = .66875.
    assert x[0] == pytest.approx(0.48125) and x[1] == pytest.approx(0.66875) and x[3] == pytest.approx(0.66875)
    assert x[2] == pytest.approx(1.0)  # a context frame is left as it is


def test_objective_logs_and_copy_last_baseline():
    torch.manual_seed(0)
    B, T = 16, 5
    z0 = torch.randn(B, 1, 2, 3, 3).expand(B, T, 2, 3, 3).clone()  # static video: copy-last is exact
    obj = FlowObjective(ObjectiveConfig(schedule="context", context_frames=0, tau_ctx=0.1, shortcut=True), 4)
    loss, logs = obj(Linear(a=0.0, b=0.0, c=0.0), z0)  # predicts 0 everywhere
    assert torch.isfinite(loss) and loss > 0
    assert logs["copy_last_loss"] == 0 and logs["next_loss"] > 0
    assert logs["loss_t"].shape == (T,) and logs["pred_var"] == 0
    assert torch.isnan(logs["loss_t"][0]) and torch.isfinite(logs["loss_t"][1:]).all()  # frame 0 is never a target
    for k in ("loss_std", "loss_boot", "tau_min", "tau_max", "pred_min", "pred_max"):
        assert k in logs
    assert 0 < logs["tau_min"] <= logs["tau_max"] <= 1
    _, logs = FlowObjective(ObjectiveConfig(shortcut=False), 4)(Linear(), z0)
    assert "loss_boot" not in logs  # no shortcut: every sample on the plain x-loss


def test_ramp_weight():
    obj = FlowObjective(ObjectiveConfig(ramp_weight=True), 64)
    torch.testing.assert_close(obj.weight(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([1.0, 0.55, 0.1]))
    assert (FlowObjective(ObjectiveConfig(ramp_weight=False), 64).weight(torch.rand(4)) == 1).all()


def test_loss_falls_on_a_tiny_dataset():
    """A tiny model on blobs moving with constant velocity: the loss falls well below its start."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")

    def batch(n=8, T=4):
        p0, v = torch.rand(n, 2) * 4 + 2, torch.rand(n, 2) - 0.5
        t = torch.arange(T, dtype=torch.float32)
        p = p0[:, None] + v[:, None] * t[None, :, None]  # (n, T, 2)
        blob = torch.exp(-((yy - p[..., 0, None, None]) ** 2 + (xx - p[..., 1, None, None]) ** 2) / 3)
        return (blob[:, :, None].expand(n, T, 2, 8, 8) - 0.2) * 3  # (n, T, 2, 8, 8)

    cfg = DynamicsConfig(arch="transformer", latent_channels=2, latent_hw=(8, 8), patch=2, dim=32, depth=2, heads=2, temporal_every=1, max_frames=4, k_max=4)
    model = Dynamics(cfg)
    obj = FlowObjective(ObjectiveConfig(ramp_weight=True), 4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, _ = obj(model, batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_clean_context_with_shortcut_bootstrap_stays_finite():
    """tau_ctx 0 puts context frames at level 0, where the Euler update divides by tau: the
    bootstrap must leave them alone, not turn them (and the loss) into NaN."""
    torch.manual_seed(0)
    obj = FlowObjective(ObjectiveConfig(tau_ctx=0.0, context_frames=2, shortcut=True), 4)
    for _ in range(4):
        loss, logs = obj(Linear(), torch.randn(8, 4, 2, 3, 3))
        assert torch.isfinite(loss) and torch.isfinite(logs.get("loss_boot", loss))


def test_pixel_loss_is_the_decoded_targets_mse_and_trains_through_the_decoder():
    """objective.pixel_weight adds w * MSE(decode(x_hat), decode(target)) over the first pixel_frames
    targets, with the gradient reaching the network through the (frozen) decoder."""
    torch.manual_seed(0)
    z0 = torch.randn(3, 5, 4, 2, 2)
    up = nn.ConvTranspose2d(4, 3, 2, stride=2).requires_grad_(False)  # a stand-in decoder: (M, 4, 2, 2) -> (M, 3, 4, 4)
    cfg = dict(schedule="context", context_frames=4, tau_ctx=0.0, shortcut=False, pixel_ssim=0.0)
    model = Linear(a=0.0)  # x_hat = 0.2 tau + 0.1 d; k_max 1: the target at tau 1, d 1, so x_hat = 0.3 everywhere
    plain, _ = FlowObjective(ObjectiveConfig(**cfg, pixel_weight=0.0), 1, decode=up)(model, z0)
    pix = ((up(torch.full((3, 4, 2, 2), 0.3)) - up(z0[:, 4])) ** 2).mean((1, 2, 3))  # the last frame: the one target
    for frames, want in ((0, pix.mean()), (8, pix.mean()), (2, pix[:2].mean())):
        loss, logs = FlowObjective(ObjectiveConfig(**cfg, pixel_weight=2.0, pixel_frames=frames), 1, decode=up)(model, z0)
        torch.testing.assert_close(logs["loss_pixel"], want)
        torch.testing.assert_close(loss, plain + 2.0 * want)
    net = Dynamics(DynamicsConfig(latent_channels=4, latent_hw=(2, 2), patch=1, max_frames=5, arch="transformer"))
    obj = FlowObjective(ObjectiveConfig(**{**cfg, "pixel_ssim": 0.2}, pixel_weight=1.0), 4, decode=up)
    loss, logs = obj(net, z0)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad) and up.weight.grad is None
    assert 0 < logs["pixel_ssim"] <= 1


class Record(nn.Module):
    """Predicts 0 and keeps the inputs (z, tau) of its last call."""

    def forward(self, z, tau, d=None, cache=None, commit=0, predict=None):
        self.z, self.tau = z.clone(), tau.clone()
        return torch.zeros_like(z)


@pytest.mark.parametrize("source", ["noise", "previous"])
def test_targets_start_at_the_models_flow_start(source):
    """z_tau = (1 - tau) z0 + tau s: s is noise * eps, around the clean frame before for "previous";
    context frames stay as the sampler corrupts them (clean at tau_ctx 0)."""
    torch.manual_seed(0)
    z0 = torch.randn(64, 3, 2, 4, 4)
    rec = Record()
    FlowObjective(ObjectiveConfig(context_frames=2, tau_ctx=0.0, shortcut=False), 4, source=(source, 1e-4))(rec, z0)
    assert torch.equal(rec.z[:, :2], z0[:, :2])
    t = rec.tau[:, 2].view(-1, 1, 1, 1)
    assert t.min() < 0.5 and t.max() == 1  # levels across the grid
    start = z0[:, 1] if source == "previous" else torch.zeros_like(z0[:, 1])
    torch.testing.assert_close(rec.z[:, 2], (1 - t) * z0[:, 2] + t * start, atol=1e-3, rtol=0)
