"""The measured action sweep: each action held over the horizon, the horizontal flow it causes, with
an interval; a model that turns the view one way per action shows flows of opposite signs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from latentwm.evaluation.actions import SWEEP_WINDOWS, action_names, sweep_flows
from latentwm.evaluation.rollouts import Windows
from latentwm.models.codec import Codec

SHIFT = {0: 2, 1: -2, 2: 0}  # px per step: "left" turns the view so its content moves right, "right" the other way


class Identity(torch.nn.Module):
    def encode(self, x):
        return x

    def decode(self, z):
        return z


def turning_rollout(model, context, horizon, sampler, generator=None, actions=None):
    """(B, K, 3, H, W) frames as latents -> each step the frame before rolled by its action's shift."""
    prev, out = context[:, -1], []
    for t in range(horizon):
        a = actions[:, context.shape[1] + t]
        prev = torch.stack([p.roll(SHIFT[int(k)], -1) for p, k in zip(prev, a)])
        out.append(prev)
    return torch.stack(out, 1)


def windows(n: int, context: int, horizon: int, size: int = 64) -> Windows:
    rng = np.random.default_rng(0)
    seq = []
    for i in range(n):
        x = gaussian_filter(rng.random((3, size, size)), (0, 2, 2), mode="wrap")
        x = torch.tensor((x - x.min()) / (x.max() - x.min()), dtype=torch.float32)
        seq.append(torch.stack([x.roll(-t, -1) for t in range(context + horizon)]))  # the truth turns right: -1 px
    z = torch.stack(seq)
    frames = (z * 255).round().to(torch.uint8)
    acts = torch.full((n, context + horizon), 1)
    return Windows([("v", i, 0) for i in range(n)], frames, frames.float() / 255, acts, ["left", "right", "still"])


def test_sweep_flows_name_each_action_with_its_flow_and_interval():
    win = windows(40, 3, 4)  # more than SWEEP_WINDOWS: an evenly spaced subset, each with its own last frame
    model = SimpleNamespace(cfg=SimpleNamespace(actions=3))
    codec = Codec(Identity(), torch.zeros(3), torch.ones(3), "cpu")
    out = sweep_flows(model, codec, turning_rollout, win, 3, 4, None, 0, 4, win.action_names, log=lambda m: None)
    assert list(out) == ["truth", "left", "right", "still"]
    assert out["left"]["dx"] == pytest.approx(2, abs=0.3) and out["left"]["ci_low"] > 0
    assert out["right"]["dx"] == pytest.approx(-2, abs=0.3) and out["right"]["ci_high"] < 0
    assert abs(out["still"]["dx"]) < 0.05 and out["still"]["ci_low"] <= out["still"]["dx"] <= out["still"]["ci_high"]
    assert out["truth"]["dx"] == pytest.approx(-1, abs=0.2) and out["left"]["windows"] == SWEEP_WINDOWS


def test_action_names():
    assert action_names(2, ["noop", "fire", "use"]) == ["noop", "fire"]
    assert action_names(3, None) == ["action 0", "action 1", "action 2"]
    assert action_names(3, ["a"]) == ["action 0", "action 1", "action 2"], "too few names: numbered, not mislabelled"
