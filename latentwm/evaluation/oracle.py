"""The motion oracle: the last frame moved by the true motion.

A reference level, not a model: at every step the last context frame is warped by the dense optical
flow from the true frame back to it (latentwm.evaluation.metrics.dense_flow, measured on the real
frames, so it knows the truth), and the window's still pixels (metrics.static_mask: a HUD) stay
where they are. It scores what a prediction that moves what was last seen as the scene moved can
reach; the gap from copy_last to it is what following the motion is worth on this footage, the gap
from it to the ceiling what no move explains (new content, light, a sprite's own animation). An
upper bound: a warp this free also lowers the error onto a frame it has nothing to do with
(docs/EXPERIMENTS.md measures how much).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latentwm.evaluation.metrics import dense_flow, static_mask


def warp(frames: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """frames (N, 3, H, W), flow (N, H, W, 2) px -> (N, 3, H, W): out(p) = frames(p + flow(p)),
    bilinear, edges repeated."""
    H, W = frames.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    x = (xs + flow[..., 0]) * (2 / max(W - 1, 1)) - 1
    y = (ys + flow[..., 1]) * (2 / max(H - 1, 1)) - 1
    return F.grid_sample(frames.float(), torch.stack([x, y], -1), mode="bilinear", padding_mode="border",
                         align_corners=True)


@torch.no_grad()
def moved_copy(last: torch.Tensor, window: torch.Tensor, context: int) -> torch.Tensor:
    """last (B, 3, H, W): the frame to move (copy_last's, decoded); window (B, S, 3, H, W): the real
    frames, S = context + T -> (B, T, 3, H, W): `last` warped by the flow from each true future frame
    to the real last context frame, the still pixels kept."""
    B, S = window.shape[:2]
    T = S - context
    real_last = window[:, context - 1 : context].expand(-1, T, -1, -1, -1).flatten(0, 1)
    flow = dense_flow(window[:, context:].flatten(0, 1), real_last)  # (B T, H, W, 2): where each true pixel was
    out = warp(last[:, None].expand(-1, T, -1, -1, -1).flatten(0, 1), flow).view(B, T, *last.shape[1:])
    still = static_mask(window)[:, None, None]  # (B, 1, 1, H, W)
    return torch.where(still, last.float()[:, None], out)
