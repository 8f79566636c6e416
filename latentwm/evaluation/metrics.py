"""METRICS: the registry every evaluation output derives from, and the flow measures.

The per-sample image measures (mse, psnr, ssim, sharpness) are latentwm.core.image's; here:

    dense_flow, global_flow  classical dense optical flow between frames (OpenCV's Farneback: no
                         learned weights) and its mean, in pixels of the frames

METRICS (bottom of the file) lists what the rollout evaluation scores: its CSV rows, summary,
intervals, verdict, plots and report tables all loop over it. Adding a metric = one entry here
(and its test); nothing else names metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch

from latentwm.core.errors import PipelineError
from latentwm.core.image import check_pair, mse, psnr, psnr_of_mse, sharpness, ssim

BLURRED = "blurred"  # the sharpness flag that disqualifies a condition from beating anything (latentwm.evaluation.summary)
BLURRED_BELOW = 0.7  # sharpness under this at any step: the prediction is blurred (a mean, not a sample)
NOISY_ABOVE = 1.5  # sharpness over this at any step: noise or artefacts, not detail


# Motion: Farneback flow on the frames' luma. A window of 9 px and 3 pyramid levels follow shifts of
# up to about 10 px on 64 px frames; a blurred copy of a frame has next to no flow to it.
FLOW_PARAMS = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)
MIN_MOTION = 0.25  # px: true frames whose mean flow magnitude is under this do not move; motion is NaN
STILL = "still"  # the motion flag the verdict names first: a condition that does not move with the scene
STILL_BELOW = 0.5  # motion (predicted over true flow magnitude) under this at any step: the scene stays put


def _luma(x: torch.Tensor) -> np.ndarray:
    """Float frames (N, 3, H, W) in [0, 1] -> uint8 luma (N, H, W)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32)[:, None, None]
    return (x.float().cpu().clamp(0, 1) * w).sum(1).mul(255).round().to(torch.uint8).numpy()


def dense_flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Optical flow from frames a to frames b (N, 3, H, W) in [0, 1]: (N, H, W, 2) px, (dx, dy):
    the content at (x, y) in a is at (x + dx, y + dy) in b."""
    check_pair(a, b)
    la, lb = _luma(a), _luma(b)
    return torch.from_numpy(np.stack([cv2.calcOpticalFlowFarneback(p, q, None, **FLOW_PARAMS) for p, q in zip(la, lb)]))


def global_flow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The mean flow from a to b (N, 3, H, W): (N, 2) px, (dx, dy); dx > 0: the view's content moved right."""
    return dense_flow(a, b).mean((1, 2))


_FLOWS: dict[tuple[int, int], tuple] = {}  # score() asks three metrics
FLOW_CACHE = 8  # (frames, window) pairs remembered: the truth's and a few conditions'


def _step_flows(frames: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, 2): each frame's flow from the frame before it in the same sequence (step 1: from
    the window's last context frame; window (B, S, ...), S = context + T), for frames (B, T, 3, H, W).
    Step to step, not from the last context frame: a turn's shift grows with the step and leaves
    the tracker's range within two steps. Remembered for the same unmodified tensors (the truth's is
    asked for by every condition)."""
    key = (id(frames), frames._version)
    hit = _FLOWS.get(key)
    if hit is not None and hit[0] is frames and hit[1] is window and window._version == hit[3]:
        _FLOWS[key] = _FLOWS.pop(key)  # most recently used: the truth's stays while conditions come and go
        return hit[2]
    B, T = frames.shape[:2]
    before = torch.cat([window[:, -T - 1 : -T], frames[:, :-1]], 1)  # (B, T, 3, H, W): the last context frame first
    out = dense_flow(before.flatten(0, 1), frames.flatten(0, 1)).view(B, T, *frames.shape[3:], 2)
    while len(_FLOWS) >= FLOW_CACHE:
        _FLOWS.pop(next(iter(_FLOWS)))  # the least recently used
    _FLOWS[key] = (frames, window, out, window._version)
    return out


def _flow_epe(pred, truth, window):
    """Endpoint error (B, T): the mean distance between the predicted step's flow and the true one's."""
    return (_step_flows(pred, window) - _step_flows(truth, window)).norm(dim=-1).flatten(2).mean(2)


def _flow_global(pred, truth, window):
    """(B, T): distance between the predicted and the true mean flow: did the view move as far, the same way?"""
    d = _step_flows(pred, window).mean((2, 3)) - _step_flows(truth, window).mean((2, 3))
    return d.norm(dim=-1)


def _motion(pred, truth, window):
    """(B, T): mean flow magnitude of the prediction over the truth's; NaN where the truth stays still."""
    mp = _step_flows(pred, window).norm(dim=-1).flatten(2).mean(2)
    mt = _step_flows(truth, window).norm(dim=-1).flatten(2).mean(2)
    return torch.where(mt >= MIN_MOTION, mp / mt.clamp_min(MIN_MOTION), torch.nan)


# ---------------------------------------------------------------- the registry of rollout metrics

PSNR_CAP_DB = 100.0  # 10 log10(1 / 1e-10): psnr floors the mse at 1e-10, so identical frames stay finite
# What a metric may ask for besides (pred, truth), by name in Metric.needs (B windows, T horizon steps):
INPUTS = {
    "pred_z": "predicted latents (B, T, C, h, w), normalised as the dynamics model sees them",
    "truth_z": "true latents (B, T, C, h, w), normalised",
    "window": "the window's real frames (B, S, 3, H, W), S = context + horizon, float in [0, 1]",
}


@dataclass(frozen=True)
class Metric:
    """One rollout metric. fn(pred, truth, **needs) -> (B, T) float: pred and truth are float frames
    (B, T, 3, H, W) in [0, 1] (B windows, T horizon steps); NaN where the metric is undefined (means
    skip it)."""

    name: str
    fn: Callable[..., torch.Tensor]
    higher_is_better: bool | None  # None: not ranked; read against `ideal` and `flags`
    description: str  # one line, shown in plots and the report
    unit: str = ""
    needs: tuple[str, ...] = ()  # keys of INPUTS passed to fn as keyword arguments
    headline: bool = True  # in the verdict sentence and the per-video tables
    undefined: bool = False  # NaN on some windows by design (no still pixels, no true motion); else NaN is a fault
    ideal: float | None = None  # the value of a perfect prediction, for unranked metrics
    flags: tuple[tuple[str, str, float], ...] = ()  # (name, "<" or ">", threshold) on the per-step mean


def per_frame(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A per-image metric (N, 3, H, W) x 2 -> (N,) as a registry function (B, T, 3, H, W) x 2 -> (B, T)."""

    def fn(pred, truth):
        B, T = truth.shape[:2]
        return f(pred.flatten(0, 1), truth.flatten(0, 1)).view(B, T)

    return fn


# Static pixels: max - min over the window's real frames below STATIC_RANGE on every channel. Not 1-2
# levels: mp4 coding makes a still HUD jitter by 4-15 grey levels (measured on the default data),
# while motion changes pixels by 30 levels or more.
STATIC_RANGE = 16 / 255
STATIC_MIN_FRACTION = 0.01  # fewer static pixels than this share of the frame: static_psnr is NaN


def static_mask(window: torch.Tensor) -> torch.Tensor:
    """bool (B, H, W): pixels whose value stays within STATIC_RANGE over the window (B, S, 3, H, W)."""
    return ((window.amax(1) - window.amin(1)).amax(1) < STATIC_RANGE)


def _static_psnr(pred, truth, window):
    """PSNR (B, T) on the pixels that never change in the real window (HUD, overlays, borders)."""
    mask = static_mask(window)[:, None, None].float()  # (B, 1, 1, H, W)
    n = mask.sum((2, 3, 4)) * pred.shape[2]  # static values per frame: pixels x channels
    err = ((pred.float() - truth.float()).pow(2) * mask).sum((3, 4)).sum(2) / n.clamp_min(1)  # (B, T)
    out = psnr_of_mse(err)
    enough = mask.mean((2, 3, 4)) >= STATIC_MIN_FRACTION  # (B, 1)
    return torch.where(enough, out, torch.nan)


def _latent_mse(pred, truth, pred_z, truth_z):
    return (pred_z.float() - truth_z.float()).pow(2).flatten(2).mean(2)  # (B, T)


METRICS: tuple[Metric, ...] = (
    Metric("psnr", per_frame(psnr), True,
           "PSNR of the decoded frame against the real one (rewards blur when the future is uncertain)", "dB"),
    Metric("ssim", per_frame(ssim), True, "structural similarity, 11x11 Gaussian window (Wang et al. 2004)"),
    Metric("static_psnr", _static_psnr, True,
           "PSNR on the pixels that stay still in the real window (a HUD, an overlay): does it survive the rollout?",
           "dB", needs=("window",), undefined=True),
    Metric("sharpness", per_frame(sharpness), None,
           "mean spatial gradient magnitude of the prediction over the truth's: 1 = as sharp, < 1 blur, > 1 noise",
           ideal=1.0, flags=((BLURRED, "<", BLURRED_BELOW), ("noisy", ">", NOISY_ABOVE)), undefined=True),
    Metric("flow_epe", _flow_epe, False,
           "optical flow of each step (from the frame before): endpoint error of the prediction's against the truth's",
           "px", needs=("window",)),
    Metric("flow_global", _flow_global, False,
           "optical flow of each step: error of the mean flow (did the view move as far, the same way?)",
           "px", needs=("window",)),
    Metric("motion", _motion, None,
           "flow magnitude of each predicted step over the true step's: 1 = moves as much, "
           "0 = stands still", needs=("window",), ideal=1.0, flags=((STILL, "<", STILL_BELOW),), undefined=True),
    Metric("mse", per_frame(mse), False, "pixel mean squared error", headline=False),
    Metric("latent_mse", _latent_mse, False, "mean squared error in the normalised latent space of the dynamics model",
           needs=("pred_z", "truth_z"), headline=False),
)


def metric(name: str) -> Metric:
    return next(m for m in METRICS if m.name == name)


def score(pred: torch.Tensor, truth: torch.Tensor, where: Callable[[int], str] = str, **inputs) -> dict[str, torch.Tensor]:
    """Every registry metric of predictions against the truth: name -> (B, T) float32 on CPU. A NaN
    where the metric is always defined (or an inf anywhere) is a fault upstream (a model that
    diverged): one line naming the metric and `where(b)` of the first such window b."""
    out = {}
    for m in METRICS:
        v = out[m.name] = m.fn(pred, truth, **{k: inputs[k] for k in m.needs}).float().cpu()
        bad = v.isinf() | (v.isnan() & (not m.undefined))
        if bad.any():
            b, t = (int(i) for i in bad.nonzero()[0])
            raise PipelineError(f"{m.name} is {float(v[b, t])} at step {t + 1} of {where(b)}: the prediction holds "
                                "non-finite values; check the dynamics model's health.json and retrain it")
    return out


def describe() -> list[dict]:
    """The registry as plain data (summary.json carries it, so plots and report need no import of it)."""
    return [dict(name=m.name, higher_is_better=m.higher_is_better, description=m.description, unit=m.unit,
                 headline=m.headline, ideal=m.ideal, flags=[list(f) for f in m.flags]) for m in METRICS]
