"""The tokenizer: a convolutional autoencoder from frames to continuous latents and back.

    encode  float (B, 3, H, W) in [0, 1]  ->  (B, C, H/d, W/d) in (-1, 1)   d = cfg.downsample
    decode  (B, C, h, w)                 ->  float (B, 3, H, W), roughly [0, 1], unclamped
    forward uint8 frames (B, 3, H, W)    ->  (loss, logs): the shared loop's contract

GroupNorm/SiLU residual blocks, stride-2 convolutions down, nearest upsampling + conv up, no
pretrained weights. The latents pass through tanh (the DreamerV4 bottleneck) so their scale is
bounded whatever the training does; the dynamics model then sees values of a known range.
Training may drop random patches of the encoder input (MAE-style, `mask_ratio`), which makes
the latents robust and the decoder fill in, and may train on random windows of the frames
(`crop`); evaluation never masks or crops.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from latentwm.config.tokenizer import TokenizerConfig
from latentwm.core import image
from latentwm.core.image import to_float


class ResBlock(nn.Module):
    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, ch), nn.Conv2d(ch, ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable from step 0
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):  # (B, ch, H, W) -> same
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        w, g = cfg.widths(), cfg.groups
        self.conv_in = nn.Conv2d(3, w[0], 3, padding=1)
        layers = []
        for i in range(cfg.levels()):
            layers += [ResBlock(w[i], g) for _ in range(cfg.blocks)]
            layers.append(nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1))  # H -> H/2
        layers += [ResBlock(w[-1], g) for _ in range(cfg.blocks)]
        self.body = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(g, w[-1])
        self.conv_out = nn.Conv2d(w[-1], cfg.latent_channels, 3, padding=1)

    def forward(self, x):  # (B, 3, H, W) in [-1, 1] -> (B, C, H/d, W/d) in (-1, 1)
        h = self.body(self.conv_in(x))
        return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        w, g = cfg.widths(), cfg.groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, w[-1], 3, padding=1)
        layers = [ResBlock(w[-1], g) for _ in range(cfg.blocks)]
        for i in reversed(range(cfg.levels())):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w[i + 1], w[i], 3, padding=1)]
            layers += [ResBlock(w[i], g) for _ in range(cfg.blocks)]
        self.body = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(g, w[0])
        self.conv_out = nn.Conv2d(w[0], 3, 3, padding=1)

    def forward(self, z):  # (B, C, h, w) -> (B, 3, H, W) in about [-1, 1]
        return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(z)))))


def moved(x: torch.Tensor, cells: torch.Tensor, cell: int) -> torch.Tensor:
    """x (B, C, H, W) moved right and down by cells (B, 2) * cell pixels (any fraction: bilinear; the
    border repeated)."""
    b, _, h, w = x.shape
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * cells[:, 0].to(x.dtype) * cell / w  # the grid reads where the content came from
    theta[:, 1, 2] = -2 * cells[:, 1].to(x.dtype) * cell / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def inside(x: torch.Tensor, border: int) -> torch.Tensor:
    """x (..., H, W) without `border` pixels on each side: where a move of up to a cell brings nothing in."""
    return x[..., border:-border, border:-border]


class Tokenizer(nn.Module):
    config_class = TokenizerConfig

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def network(self) -> Tokenizer:
        """What the checkpoint holds (the loop's contract): the tokenizer itself."""
        return self

    def latent_shape(self, height: int, width: int) -> list[int]:
        return self.cfg.latent_shape(height, width)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """float (B, 3, H, W) in [0, 1] -> latents (B, C, h, w)."""
        return self.encoder(x * 2 - 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latents (B, C, h, w) -> float (B, 3, H, W), about [0, 1], not clamped."""
        return (self.decoder(z) + 1) / 2

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Hide a random `mask_ratio` of the patches of x (B, 3, H, W) in [0, 1] with mid-grey."""
        p = self.cfg.mask_patch
        b, _, h, w = x.shape
        keep = torch.rand(b, 1, -(-h // p), -(-w // p), device=x.device) >= self.cfg.mask_ratio  # (B, 1, H/p, W/p)
        keep = keep.repeat_interleave(p, 2).repeat_interleave(p, 3)[:, :, :h, :w]
        return torch.where(keep, x, torch.full_like(x, 0.5))

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """Each frame of x (B, 3, H, W), any dtype, cut to its own random window of cfg.crop_size(H, W)."""
        b, _, h, w = x.shape
        ch, cw = self.cfg.crop_size(h, w)
        top = torch.randint(0, h - ch + 1, (b,)).tolist()
        left = torch.randint(0, w - cw + 1, (b,)).tolist()
        return torch.stack([x[k, :, t : t + ch, s : s + cw] for k, (t, s) in enumerate(zip(top, left))])

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame random flips and, for a `recolour` share of frames, a random RGB order: more
        palettes and layouts than a few training videos hold, so unseen videos' colours reconstruct as well."""
        b = x.shape[0]
        flip_w = torch.rand(b, device=x.device) < 0.5
        x = torch.where(flip_w[:, None, None, None], x.flip(3), x)
        if self.cfg.vertical_flip:
            flip_h = torch.rand(b, device=x.device) < 0.5
            x = torch.where(flip_h[:, None, None, None], x.flip(2), x)
        order = torch.rand(b, 3, device=x.device).argsort(1)  # (B, 3) a permutation per frame
        if self.cfg.recolour < 1:
            keep = torch.rand(b, device=x.device) >= self.cfg.recolour
            order = torch.where(keep[:, None], torch.arange(3, device=x.device), order)
        return x.gather(1, order[:, :, None, None].expand_as(x))

    def forward(self, frames: torch.Tensor):
        """uint8 frames (B, 3, H, W) -> (loss, logs). Crops, augmentation and masking apply in training only."""
        if self.training and self.cfg.crop < 1:
            frames = self.crop(frames)  # before the float copy: only the window is converted
        x = to_float(frames)
        if self.training and self.cfg.augment:
            x = self.augment(x)
        inp = self.mask(x) if self.training and self.cfg.mask_ratio > 0 else x
        z = self.encode(inp)
        y = self.decode(z).float()
        err = image.mse(y, x)  # (B,)
        loss = err.mean()
        logs = {"psnr": image.psnr(y.detach(), x).mean()}
        if self.cfg.ssim_weight > 0:
            s = image.ssim(y, x).mean()
            loss = loss + self.cfg.ssim_weight * (1 - s)
            logs["ssim"] = s.detach()
        if self.training and self.cfg.shift_weight > 0:
            eq = self.shift_error(x, z)
            loss = loss + self.cfg.shift_weight * eq
            logs["shift_mse"] = eq.detach()
        return loss, logs

    def shift_error(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Half the batch, each frame with its own move of up to one latent cell each way: the mean
        squared error of decoding the moved latents against the moved frame, away from the border (where
        a move brings in nothing). EQ-VAE's decoder-side equivariance, for translations."""
        half = max(1, len(x) // 2)
        cells = torch.rand(half, 2, device=x.device) * 2 - 1  # (dx, dy) in latent cells
        d = self.cfg.downsample
        err = self.decode(moved(z[:half], cells, 1)).float() - moved(x[:half], cells, d)
        return inside(err, d).pow(2).mean()

    @torch.no_grad()
    def reconstruct(self, frames: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """uint8 frames (N, 3, H, W) -> float reconstructions (N, 3, H, W) on the CPU, in batches."""
        device = next(self.parameters()).device
        out = [
            self.decode(self.encode(to_float(frames[i : i + batch_size].to(device)))).float().cpu()
            for i in range(0, len(frames), batch_size)
        ]
        return torch.cat(out)
