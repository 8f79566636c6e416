"""How an action model is evaluated beyond its rollout: the action conditions (random actions, none),
and the action sweep (each action held over the horizon from the same context).

The sweep is measured, not only drawn: every action is held from up to SWEEP_WINDOWS test contexts,
and the horizontal global flow of each predicted step (latentwm.evaluation.metrics.global_flow, from the frame
before it) is averaged per window, then over windows with a bootstrap 95% interval. A model that
has learned "turn left" moves the view's content right (dx > 0) under it, "turn right" left; a code
of a latent action model that means a move shows as a flow of its own sign.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from latentwm.core.image import to_float, to_uint8
from latentwm.evaluation import summary as S
from latentwm.evaluation.metrics import global_flow

SWEEP_WINDOWS = 32  # evenly spaced test windows each held action is rolled out from


def action_names(n: int, names: list[str] | None) -> list[str]:
    """Display names of action ids 0..n-1: the videos' own (a sidecar's header), else 'action k'."""
    return list(names[:n]) if names and len(names) >= n else [f"action {a}" for a in range(n)]


def action_conditions(act: dict, context: int, n_actions: int, seed: int) -> dict[str, torch.Tensor]:
    """The action conditions of a batch: condition -> actions (B, S) whose horizon part is replaced,
    random_actions by ids drawn uniformly (seeded), no_action by -1; {} for a model without actions."""
    if not act:
        return {}
    a = act["actions"]
    g = torch.Generator().manual_seed(seed)
    rand, none = a.clone(), a.clone()
    rand[:, context:] = torch.randint(0, n_actions, rand[:, context:].shape, generator=g).to(a.device)
    none[:, context:] = -1
    return {"random_actions": rand, "no_action": none}


def held(actions: torch.Tensor, context: int, action: int) -> torch.Tensor:
    """Actions (B, S) with `action` over the horizon (the context keeps its own)."""
    out = actions.clone()
    out[:, context:] = action
    return out


def action_sweep(model, codec, rollout: Callable, ctx, actions, horizon: int, sampler, generator, names) -> dict:
    """One context (1, C, C_lat, h, w) rolled out once per action held over the whole horizon, the
    context's own actions (1, S) before it: row name -> uint8 frames (horizon, 3, H, W)."""
    n = model.cfg.actions
    acts = torch.cat([held(actions, ctx.shape[1], a) for a in range(n)])  # (n, S)
    sweep = rollout(model, ctx.expand(n, -1, -1, -1, -1), horizon, sampler, generator=generator, actions=acts)
    px = codec.decode(sweep.float().cpu())  # (n, horizon, 3, H, W)
    return {name: to_uint8(px[a]) for a, name in enumerate(action_names(n, names))}


def step_dx(last: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """(B,): the mean horizontal global flow of each step of frames (B, T, 3, H, W) from the frame
    before it (step 1: from last (B, 3, H, W))."""
    before = torch.cat([last[:, None], frames[:, :-1]], 1)
    return global_flow(before.flatten(0, 1), frames.flatten(0, 1))[:, 0].view(frames.shape[:2]).mean(1)


@torch.no_grad()
def sweep_flows(model, codec, rollout: Callable, win, context: int, horizon: int, sampler, seed: int, batch: int,
                names=None, log: Callable[[str], None] = print) -> dict:
    """Per action held over the horizon from up to SWEEP_WINDOWS windows (Windows with actions): the
    mean horizontal flow per step (px, > 0: content moves right) with its bootstrap interval, and the
    same for the true future (each window's real frames)."""
    idx = np.unique(np.linspace(0, len(win.keys) - 1, min(SWEEP_WINDOWS, len(win.keys))).round().astype(int))
    device = codec.device
    last = to_float(win.frames[idx, context - 1])
    rows = {"truth": step_dx(last, to_float(win.frames[idx, context : context + horizon]))}
    for a, name in enumerate(action_names(model.cfg.actions, names)):
        dx = []
        for b0 in range(0, len(idx), batch):
            j = idx[b0 : b0 + batch]
            acts = held(win.actions[j], context, a).to(device)
            z = rollout(model, win.latents[j, :context].to(device), horizon, sampler,
                        generator=torch.Generator().manual_seed(seed + b0), actions=acts)
            dx.append(step_dx(last[b0 : b0 + len(j)], codec.decode(z.float().cpu())))
        rows[name] = torch.cat(dx)
    out = {}
    for name, v in rows.items():
        mean, lo, hi = S.bootstrap(v.double().numpy()[:, None], S.resamples(len(v)))
        out[name] = {"dx": float(mean[0]), "ci_low": float(lo[0]), "ci_high": float(hi[0]), "windows": len(v)}
    log("[actions] sweep, mean horizontal flow per step (px, 95% CI): "
        + "; ".join(f"{n} {r['dx']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" for n, r in out.items()))
    return out
