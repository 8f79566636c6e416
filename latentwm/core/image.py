"""Frames as floats, and the per-sample image measures every layer uses.

Functions on float images (B, 3, H, W) in [0, data_range]; each returns one value per sample.

    to_float, to_uint8   uint8 frames <-> floats in [0, 1]
    mse, psnr, ssim      per-sample (B,) tensors, computed in float32
    sharpness            mean gradient magnitude of x relative to y's (B,): 1 as sharp, < 1 blur, > 1 noise
    collapse_ratio       how much outputs vary across a batch relative to their inputs (a scalar):
                         about 1 for a faithful model, near 0 for one that ignores its input
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# SSIM constants of Wang et al. (2004): K1 = 0.01, K2 = 0.03, an 11x11 Gaussian window, sigma 1.5.
SSIM_K1, SSIM_K2, SSIM_WINDOW, SSIM_SIGMA = 0.01, 0.03, 11, 1.5


def check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two images of the same shape (B, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample: (B,)."""
    check_pair(x, y)
    return (x.float() - y.float()).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample: (B,). Identical images cap at 100 dB (mse 1e-10)."""
    return psnr_of_mse(mse(x, y), data_range)


def psnr_of_mse(err: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """dB of a mean squared error; floored at 1e-10, so identical images give 100 dB, never inf."""
    return 10 * torch.log10(data_range**2 / err.clamp_min(1e-10))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2-D Gaussian (size, size), the outer product of a 1-D one."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per sample: (B,), the mean of the SSIM map over channels and pixels.

    Local statistics use the Gaussian window without padding ('valid', as in the reference
    implementation); an image smaller than 11 px uses a window as large as the image.
    """
    check_pair(x, y)
    x, y = x.float(), y.float()
    c = x.shape[1]
    size = min(SSIM_WINDOW, x.shape[2], x.shape[3])
    w = gaussian_window(size).to(x.device).expand(c, 1, size, size)  # depthwise: (C, 1, k, k)

    def blur(t):  # (B, C, H, W) -> (B, C, H-k+1, W-k+1) local weighted means
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).flatten(1).mean(1)


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Mean spatial gradient magnitude per sample (B,): forward differences on the (H-1, W-1) grid,
    sqrt(dx^2 + dy^2), averaged over channels and pixels."""
    x = x.float()
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2)).sqrt().flatten(1).mean(1)


def sharpness(x: torch.Tensor, y: torch.Tensor, min_gradient: float = 1e-3) -> torch.Tensor:
    """Gradient magnitude of x over y's, per sample (B,): 1 = as sharp as y, blur < 1, noise > 1.
    NaN where y is (almost) flat: a flat frame has no sharpness to keep."""
    check_pair(x, y)
    gy = gradient_magnitude(y)
    return torch.where(gy > min_gradient, gradient_magnitude(x) / gy.clamp_min(min_gradient), torch.nan)


def collapse_ratio(outputs: torch.Tensor, inputs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(std across the batch of the outputs, averaged over pixels) / (the same for the inputs).

    A model whose output ignores its input (mode collapse) scores near 0; a faithful
    reconstruction scores near 1. Needs a batch of at least 2 different inputs.
    """
    check_pair(outputs, inputs)
    if len(inputs) < 2:
        raise ValueError("collapse_ratio needs a batch of at least 2 samples")
    out = outputs.float().std(dim=0).mean()
    ref = inputs.float().std(dim=0).mean()
    return out / ref.clamp_min(eps)


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 in [0, 1]."""
    return frames.float() / 255.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] (any range; clamped) -> uint8, rounded."""
    return (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
