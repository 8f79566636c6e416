"""Image metrics against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from latentwm.core import image
from latentwm.evaluation import metrics


def test_mse_and_psnr_of_a_constant_error():
    x = torch.rand(2, 3, 16, 16) * 0.8
    y = x + 0.1  # every pixel off by 0.1: mse 0.01, psnr 10 log10(1 / 0.01) = 20 dB
    assert image.mse(x, y).shape == (2,)
    assert torch.allclose(image.mse(x, y), torch.full((2,), 0.01), atol=1e-6)
    assert torch.allclose(image.psnr(x, y), torch.full((2,), 20.0), atol=1e-3)
    assert torch.allclose(image.psnr(x * 255, y * 255, data_range=255.0), torch.full((2,), 20.0), atol=1e-3)


def test_psnr_is_per_sample_and_finite_for_identical_images():
    x = torch.rand(3, 3, 8, 8)
    y = x.clone()
    y[1] += 0.01  # only sample 1 differs: 40 dB
    p = image.psnr(x, y)
    assert p[1].item() == pytest.approx(40.0, abs=1e-2)
    assert p[0].item() == pytest.approx(100.0) and torch.isfinite(p).all()


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 3, 24, 24)
    assert torch.allclose(image.ssim(x, x), torch.ones(2), atol=1e-5)


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.2, 0.6  # no variance: ssim = (2ab + C1) / (a^2 + b^2 + C1), the structure term is C2 / C2
    c1 = (0.01 * 1.0) ** 2
    want = (2 * a * b + c1) / (a**2 + b**2 + c1)
    got = image.ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert got.item() == pytest.approx(want, rel=1e-4)


def test_ssim_of_one_window_matches_the_formula_by_hand():
    # An 11x11 image has exactly one window position: the SSIM map is a single value per channel.
    rng = np.random.default_rng(0)
    x, y = rng.random((11, 11)), rng.random((11, 11))
    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cov = (w * x * y).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    want = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    tx = torch.tensor(x, dtype=torch.float32).expand(1, 3, 11, 11)
    ty = torch.tensor(y, dtype=torch.float32).expand(1, 3, 11, 11)
    assert image.ssim(tx, ty).item() == pytest.approx(want, abs=1e-4)


def _structured(rng, H=40, W=48):
    """Images with edges, gradients and texture (3, H, W) in [0, 1], unlike uniform noise."""
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    base = np.stack([xx, yy, 0.5 + 0.5 * np.sin(12 * xx) * np.cos(9 * yy)])
    base[:, H // 4 : H // 2, W // 3 : W // 2] = rng.random((3, 1, 1))  # a flat sprite with sharp edges
    return base.clip(0, 1)


@pytest.mark.parametrize("case", ["random", "noisy", "structured", "blurred", "shifted", "small"])
def test_ssim_matches_scikit_image(case):
    """image.ssim against skimage.metrics.structural_similarity with Wang et al.'s settings."""
    from scipy.ndimage import gaussian_filter
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(["random", "noisy", "structured", "blurred", "shifted", "small"].index(case))
    if case in ("random", "small"):
        size = (3, 11, 13) if case == "small" else (3, 32, 40)
        x, y = rng.random(size), rng.random(size)
    else:
        x = _structured(rng)
        y = {"noisy": lambda: (x + 0.1 * rng.normal(size=x.shape)).clip(0, 1),
             "structured": lambda: _structured(np.random.default_rng(99)),
             "blurred": lambda: gaussian_filter(x, (0, 1.5, 1.5)),
             "shifted": lambda: np.roll(x, 2, axis=2)}[case]()
    want = structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
                                 channel_axis=0)
    got = image.ssim(torch.tensor(x[None], dtype=torch.float32), torch.tensor(y[None], dtype=torch.float32)).item()
    assert got == pytest.approx(want, abs=2e-5)


def test_ssim_drops_with_noise():
    x = torch.rand(4, 3, 32, 32)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    s = image.ssim(x, noisy)
    assert s.shape == (4,) and (s < 0.9).all()


def test_collapse_ratio():
    x = torch.rand(8, 3, 16, 16)
    assert image.collapse_ratio(x, x).item() == pytest.approx(1.0, rel=1e-5)
    assert image.collapse_ratio(0.5 * x + 0.1, x).item() == pytest.approx(0.5, rel=1e-5)
    constant = torch.full_like(x, 0.3)  # a decoder that ignores its input
    assert image.collapse_ratio(constant, x).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        image.collapse_ratio(x[:1], x[:1])


def test_gaussian_window_sums_to_one():
    w = image.gaussian_window()
    assert w.shape == (11, 11) and math.isclose(w.sum().item(), 1.0, rel_tol=1e-6)


def test_sharpness_is_one_for_the_truth_below_for_blur_above_for_noise():
    from scipy.ndimage import gaussian_filter

    x = torch.tensor(_structured(np.random.default_rng(0))[None], dtype=torch.float32).repeat(2, 1, 1, 1)
    x[1] = torch.rand(3, 40, 48)  # a texture: every sample is its own reference
    blurred = torch.tensor(gaussian_filter(x.numpy(), (0, 0, 1.5, 1.5)), dtype=torch.float32)
    noisy = (x + 0.15 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert torch.allclose(image.sharpness(x, x), torch.ones(2))
    # smooth ramps keep their gradient under blur; edges and texture lose it
    assert (image.sharpness(blurred, x) < 0.9).all() and image.sharpness(blurred, x)[1] < metrics.BLURRED_BELOW
    assert (image.sharpness(noisy[:1], x[:1]) > metrics.NOISY_ABOVE).all()
    assert torch.allclose(image.sharpness(0.5 * x, x), torch.full((2,), 0.5))  # linear in contrast
    flat = torch.full((1, 3, 16, 16), 0.4)
    assert torch.isnan(image.sharpness(x[:1, :, :16, :16], flat)).all()  # a flat truth has no sharpness


def test_sharpness_in_the_registry_flags_blur_and_noise():
    m = metrics.metric("sharpness")
    assert m.higher_is_better is None and m.ideal == 1.0
    assert {name for name, _, _ in m.flags} == {"blurred", "noisy"}
    x = torch.rand(2, 3, 3, 16, 16)  # (B windows, T steps, 3, H, W)
    assert m.fn(x, x).shape == (2, 3)


def test_static_psnr_scores_only_the_pixels_that_never_change():
    B, S, T = 2, 6, 3  # windows, window frames, horizon steps (the last T frames of the window)
    g = torch.Generator().manual_seed(0)
    window = torch.rand(B, S, 3, 16, 16, generator=g)
    window[:, :, :, :2] = 0.25  # a still strip of 2 rows: 12.5% of the frame
    truth = window[:, -T:]
    assert metrics.static_mask(window).float().mean().item() == pytest.approx(2 / 16)
    m = metrics.metric("static_psnr")
    pred = truth.clone()
    pred[:, :, :, 2:] = 0.0  # everything that moves is wrong: no effect on static pixels
    assert torch.allclose(m.fn(pred, truth, window=window), torch.full((B, T), metrics.PSNR_CAP_DB))
    pred[:, :, :, :2] += 0.1  # the strip off by 0.1: 20 dB
    assert torch.allclose(m.fn(pred, truth, window=window), torch.full((B, T), 20.0), atol=1e-3)
    window[1, 0, :, :2] = 0.9  # in window 1 the strip changes once: nothing is static there
    out = m.fn(pred, truth, window=window)
    assert torch.isnan(out[1]).all() and torch.isfinite(out[0]).all()
    jitter = window.clone()
    jitter[0, ::2, :, :2] += 10 / 255  # coding jitter of a still HUD is still static
    assert metrics.static_mask(jitter)[0, :2].all()


def _scene(size: int = 64, seed: int = 0) -> torch.Tensor:
    """A textured frame (3, size, size) in [0, 1] that wraps around (np.roll is a true shift of it)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random((3, size, size)), (0, 2, 2), mode="wrap")
    x = (x - x.min()) / (x.max() - x.min())
    return torch.tensor(x, dtype=torch.float32)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_global_flow_of_a_shift_is_the_shift_of_a_copy_zero(k):
    x = _scene()
    right, down = torch.roll(x, k, dims=2), torch.roll(x, -k, dims=1)  # content moved right by k; up by k
    flow = metrics.global_flow(x[None].repeat(3, 1, 1, 1), torch.stack([right, down, x]))
    assert flow[0].tolist() == pytest.approx([k, 0], abs=0.15 * k + 0.1)
    assert flow[1].tolist() == pytest.approx([0, -k], abs=0.15 * k + 0.1)
    assert flow[2].abs().max() < 1e-3, "a copy does not move"


def test_flow_metrics_name_a_blurred_or_still_prediction():
    """A world that turns by 3 px a step: the truth scores 0 flow error and motion 1; copying the last
    frame and a blurred copy of it both stand still (motion < STILL_BELOW) and err by the step's shift."""
    from scipy.ndimage import gaussian_filter

    x = _scene(seed=1)
    T = 4
    window = torch.stack([torch.roll(x, 3 * s, dims=2) for s in range(-3, T + 1)])[None]  # 4 context + T, moving right
    truth = window[:, -T:]
    copy = window[:, -T - 1 : -T].expand_as(truth)
    blurred = torch.tensor(gaussian_filter(copy.numpy(), (0, 0, 0, 3, 3)), dtype=torch.float32)  # a mean that stays put
    scores = {n: metrics.score(p, truth, window=window, pred_z=p[:, :, :1], truth_z=truth[:, :, :1])
              for n, p in (("truth", truth.clone()), ("copy", copy), ("blurred", blurred))}
    shift = torch.full((T,), 3.0)
    assert scores["truth"]["flow_epe"].max() < 0.2 and scores["truth"]["flow_global"].max() < 0.2
    assert scores["truth"]["motion"][0].tolist() == pytest.approx([1.0] * T, abs=0.02)
    for name in ("copy", "blurred"):
        s = scores[name]
        assert torch.allclose(s["flow_global"][0], shift, rtol=0.2), f"{name}: the view did not move"
        assert (s["flow_epe"][0] > 0.7 * shift).all()
        assert (s["motion"][0] < metrics.STILL_BELOW).all(), f"{name} is named still"
    m = metrics.metric("motion")
    assert m.flags == (("still", "<", metrics.STILL_BELOW),) and m.higher_is_better is None
    pred = truth.clone()
    before = metrics.score(pred, truth, window=window, pred_z=pred, truth_z=truth)["flow_global"]
    pred.copy_(copy)  # the same tensor, changed in place: its flows are computed anew
    after = metrics.score(pred, truth, window=window, pred_z=pred, truth_z=truth)["flow_global"]
    assert before.max() < 0.2 and torch.allclose(after, scores["copy"]["flow_global"])
    still = window.clone()
    still[:] = x  # nothing moves: motion is undefined, not 0 or 1
    assert torch.isnan(metrics.score(still[:, -T:], still[:, -T:], window=still, pred_z=still, truth_z=still)["motion"]).all()
