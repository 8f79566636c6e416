"""Action-conditioned dynamics: `actions: none` is today's model bit for bit; the dropout path; the
action windows line up with their latents; rollouts take actions with and without the cache."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import conv_model

from latentwm.config.dynamics import DataConfig, DynamicsStage
from latentwm.config.evaluation import SamplerConfig
from latentwm.config.fields import from_dict
from latentwm.core.errors import PipelineError
from latentwm.data.actions import conditioning, write_store
from latentwm.data.store import StoreWriter
from latentwm.data.windows import LatentWindows
from latentwm.models.dynamics.transformer import Dynamics
from latentwm.models.flow import FlowObjective
from latentwm.models.sampler import rollout
from latentwm.training.fit_dynamics import fit

# the transformer with the objective of the code the pinned numbers below were taken from
TINY = {"model": {"arch": "transformer", "dim": 32, "depth": 2, "heads": 2, "temporal_every": 1, "k_max": 8,
                   "source": "noise", "source_noise": 1.0},
        "objective": {"tau_ctx": 0.1, "context_frames": 0, "shortcut": True}, "data": {"window": 4}}


def test_actions_none_is_todays_model_bit_for_bit():
    """Parameters, a training loss and a rollout for fixed seeds, as the model before actions gave them
    (the numbers were taken from that code: any change to the none path shows here)."""
    stage = from_dict(DynamicsStage, TINY, "dynamics")
    assert stage.actions == "none"
    cfg = stage.model_config([4, 8, 8])
    torch.manual_seed(0)
    net = Dynamics(cfg)
    assert net.action_embed is None
    assert sum(p.numel() for p in net.parameters()) == 59584
    assert float(sum(p.detach().double().sum() for p in net.parameters())) == 138.08176333683696
    z = torch.randn(3, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    loss, _ = FlowObjective(stage.objective, cfg.k_max)(net, z)
    assert float(loss.detach()) == 0.8969075679779053
    out = rollout(net.eval(), z[:, :2], 2, SamplerConfig("s", "shortcut", 4), generator=torch.Generator().manual_seed(3),
                  tau_ctx=0.1)
    assert float(out.double().sum()) == 31.202575503557455


def _action_net(n=5):
    stage = from_dict(DynamicsStage, {**TINY, "actions": "given"}, "dynamics")
    cfg = stage.model_config([4, 8, 8])
    torch.manual_seed(0)
    net = Dynamics(type(cfg)(**{**vars(cfg), "actions": n}))
    with torch.no_grad():  # adaLN-zero hides the conditioning at init; wake it up
        for lin in [*(blk.ada for blk in net.blocks), net.final_ada, net.unembed]:
            lin.weight.normal_(0, 0.05)
    return stage, net.eval()


def test_actions_enter_the_conditioning_and_dropout_means_no_action():
    stage, net = _action_net()
    z, tau = torch.randn(2, 4, 4, 8, 8), torch.full((2, 4), 0.5)
    a = torch.tensor([[-1, 1, 2, 3], [-1, 0, 0, 4]])
    with torch.no_grad():
        y = net(z, tau, actions=a)
        assert not torch.equal(y, net(z, tau, actions=a.roll(1, 1).clamp_min(0))), "the actions matter"
        assert torch.equal(net(z, tau), net(z, tau, actions=torch.full_like(a, -1))), "None is 'no action' everywhere"
    obj = FlowObjective(stage.objective, 8, action_dropout=1.0)
    assert (obj.drop_actions(a) == -1).all()
    assert torch.equal(FlowObjective(stage.objective, 8, action_dropout=0.0).drop_actions(a), a)
    torch.manual_seed(0)
    kept = FlowObjective(stage.objective, 8, action_dropout=0.3).drop_actions(a.repeat(500, 1))
    assert 0.2 < (kept == -1).all(1).float().mean() < 0.4, "whole windows dropped at the rate asked"
    with pytest.raises(PipelineError, match="knows 5 actions but got id 7"):
        net(z, tau, actions=torch.full_like(a, 7))
    loss, _ = obj(net.train(), (z, a))  # the training path with actions
    assert torch.isfinite(loss)


def test_rollout_with_actions_is_the_same_with_and_without_the_cache():
    _, net = _action_net()
    ctx = torch.randn(2, 3, 4, 8, 8)
    acts = torch.randint(0, 5, (2, 6))
    kw = dict(generator=None, actions=acts)
    a = rollout(net, ctx, 3, SamplerConfig("s", "shortcut", 2), use_cache=True, tau_ctx=0.1, **{**kw, "generator": torch.Generator().manual_seed(0)})
    b = rollout(net, ctx, 3, SamplerConfig("s", "shortcut", 2), use_cache=False, tau_ctx=0.1, **{**kw, "generator": torch.Generator().manual_seed(0)})
    assert torch.allclose(a, b, atol=1e-4)
    c = rollout(net, ctx, 3, SamplerConfig("s", "shortcut", 2), actions=(acts + 1) % 5, generator=torch.Generator().manual_seed(0),
                tau_ctx=0.1)
    assert not torch.allclose(a[:, 0], c[:, 0], atol=1e-4), "the first predicted frame follows its action"


def _stores(tmp_path, n=3, T=24, given=True):
    """Latent stores where frame t of video i holds the value 100 i + t, and action stores with
    action (i + t) % 5 at frame t (frame 0: none)."""
    lat, act = [], []
    for i in range(n):
        z = np.broadcast_to((100 * i + np.arange(T, dtype=np.float32))[:, None, None, None], (T, 4, 8, 8))
        p = tmp_path / f"latents/v{i}.zarr"  # each video's stores under the same name, as the rules write them
        with StoreWriter(p, (4, 8, 8), "float16", 8, {"tokenizer_hash": "tok", "latent_shape": [4, 8, 8]}) as w:
            w.append(z)
            w.commit()
        a = (i + np.arange(T)) % 5
        a[0] = -1
        q = tmp_path / f"actions/v{i}.zarr"
        write_store(q, a if given else np.full(T, -1), {"given": given, "n_actions": 5 if given else 0, "video": f"v{i}"})
        lat.append(str(p))
        act.append(str(q))
    return lat, act


def test_action_windows_line_up_with_their_latents(tmp_path):
    lat, act = _stores(tmp_path)
    data = LatentWindows(lat, DataConfig(window=5, batch_size=16), action_paths=act, action_expect={"given": True})
    z, a = data[3]
    assert z.shape == (16, 5, 4, 8, 8) and a.shape == (16, 5) and a.dtype == torch.int64
    v = z[:, :, 0, 0, 0].round().long()  # 100 i + t
    i, t = v // 100, v % 100
    want = torch.where(t == 0, torch.full_like(t, -1), (i + t) % 5)
    assert torch.equal(a, want), "each frame comes with the action that produced it"


def test_given_actions_missing_for_a_video_is_one_line(tmp_path):
    lat, act = _stores(tmp_path, given=False)
    with pytest.raises(PipelineError, match=r"^video v0 has no actions of its own .* but dynamics.actions is given"):
        conditioning("given", act)


def test_fit_with_given_actions_writes_an_action_model(tmp_path):
    lat, act = _stores(tmp_path, T=40)
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"mean": [0.0] * 4, "std": [100.0] * 4, "tokenizer_hash": "tok", "latent_shape": [4, 8, 8]}))
    cfg = {**TINY, "actions": "given", "data": {"window": 4, "batch_size": 4},
           "train": {"steps": 4, "warmup": 1, "log_every": 2, "checkpoint_every": 2}, "val_windows": 4}
    out = SimpleNamespace(checkpoint=tmp_path / "d.pt", curve=tmp_path / "c.csv", health=tmp_path / "h.json")
    inputs = SimpleNamespace(latents=lat[:2], val=lat[2:], stats=stats, train_actions=act[:2], val_actions=act[2:])
    fit(from_dict(DynamicsStage, cfg, "dynamics"), inputs, out, tmp_path / "r.pt", lambda m: None)
    from latentwm.models import checkpoint

    ckpt = checkpoint.load(out.checkpoint)
    assert ckpt["actions"] == {"kind": "given", "n": 5, "lam_hash": None}
    assert checkpoint.build_model(ckpt, kind="dynamics").cfg.actions == 5
    assert "probe_val_next_loss" in out.curve.read_text().splitlines()[0]


@pytest.mark.parametrize("arch", ["transformer", "conv"])
def test_action_guidance_pushes_along_the_actions_effect(arch):
    """With guidance g each step's prediction is x_free + g (x_act - x_free), x_free the same call
    with the new frame's action "none". One step from noise makes the frame that prediction itself:
    g 0 is the rollout without the new frame's action, g 3 lies three times as far along the action's
    effect; the cache gives the same over several frames; a rollout without actions ignores g."""
    net = _action_net()[1] if arch == "transformer" else conv_model(actions=5)
    ctx = torch.randn(2, 3, 4, 8, 8)
    acts = torch.randint(0, 5, (2, 6))
    free = acts[:, :4].clone()
    free[:, 3] = -1  # the new frame's action "none", the context's kept

    def run(g, a=acts[:, :4], horizon=1, cache=True):
        s = SamplerConfig("s", "euler", 1, guidance=g)
        return rollout(net, ctx, horizon, s, generator=torch.Generator().manual_seed(0), use_cache=cache, actions=a, tau_ctx=0.1)

    act, none = run(1), run(1, free)
    assert not torch.allclose(act, none, atol=1e-3), "the action changes the prediction"
    torch.testing.assert_close(run(0), none, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(run(3), none + 3 * (act - none), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(run(3, acts, 3), run(3, acts, 3, cache=False), atol=1e-4, rtol=1e-4)
    assert torch.equal(run(3, torch.full_like(acts, -1), 3), run(1, torch.full_like(acts, -1), 3))
    with pytest.raises(PipelineError, match="guidance"):
        SamplerConfig("s", "euler", 1, guidance=-1.0)
