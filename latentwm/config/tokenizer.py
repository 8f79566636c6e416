"""The `tokenizer` section: the frame autoencoder (latentwm.models.tokenizer) and its training."""

from __future__ import annotations

from dataclasses import dataclass, field

from latentwm.config.fields import setting
from latentwm.config.train import TrainConfig
from latentwm.core.errors import PipelineError


@dataclass
class TokenizerConfig:
    """The frame autoencoder's shape: H x W x 3 frames -> H/d x W/d x C latents (tanh-bounded)."""

    base_channels: int = setting(16, "Width at full resolution; doubles per downsampling up to base_channels * max_mult.", minimum=1)
    max_mult: int = setting(4, "Cap of the width multiplier.", minimum=1)
    blocks: int = setting(1, "Residual blocks per resolution level (encoder and decoder).", minimum=0)
    downsample: int = setting(4, "Spatial factor, a power of 2: H x W frames -> H/d x W/d latents.", enum=[1, 2, 4, 8, 16, 32])
    latent_channels: int = setting(8, "C of the latents (T, C, h, w).", minimum=1)
    groups: int = setting(8, "GroupNorm groups; every width must be divisible by it.", minimum=1)
    mask_ratio: float = setting(0.0, "MAE-style: fraction of mask_patch input patches hidden from the encoder in training (0: off).",
                                minimum=0, exclusiveMaximum=1)
    mask_patch: int = setting(8, "Side in pixels of a masked patch.", minimum=1)
    ssim_weight: float = setting(0.2, "loss = mse + ssim_weight * (1 - SSIM): keeps edges that MSE blurs on real footage "
                                      "(docs/EXPERIMENTS.md).", minimum=0)
    crop: float = setting(1.0, "Training only: each frame cut to a random window of this fraction of its height and width "
                                "(1: whole frames). The network is convolutional, so it learns from windows as from frames, "
                                "and a step on a quarter of the pixels (0.5) costs about a quarter of the time.",
                          exclusiveMinimum=0, maximum=1)
    augment: bool = setting(True, "Training only: random horizontal flips and, for a `recolour` share of the frames, "
                                  "a random RGB channel order: more palettes and layouts than a few videos hold, so a "
                                  "test video's new colours decode as they are; false: neither (docs/EXPERIMENTS.md).")
    vertical_flip: bool = setting(False, "With augment: frames also flipped upside down half the time. Off: games are "
                                         "upright, and the flips cost reconstruction on upright test frames.")
    shift_weight: float = setting(0.0, "Training only: half the frames' latents, moved by a random part of a cell "
                                       "(bilinear, up to one cell each way), must decode to the frame moved by as many "
                                       "pixels, an MSE term of this weight (EQ-VAE's equivariance, for moves). A camera "
                                       "that turns moves the view by part of a latent cell a frame; with it the dynamics "
                                       "can follow that as a blend of neighbouring cells. 0: off.", minimum=0)
    recolour: float = setting(0.5, "With augment: the share of training frames whose RGB channels are put in a random "
                                   "order, the rest keeping their own colours: 1 spends the most capacity on palettes "
                                   "the footage may never show, 0 keeps none for new ones.", minimum=0, maximum=1)

    def __post_init__(self):
        for w in self.widths():
            if w % self.groups:
                raise PipelineError(
                    f"tokenizer.model: width {w} is not divisible by groups {self.groups}; pick base_channels as a multiple of groups"
                )

    def crop_size(self, height: int, width: int) -> tuple[int, int]:
        """The training window's (height, width) for frames of height x width: `crop` of each side, a
        multiple of downsample (so its latents tile it exactly), at least one latent cell."""
        d = self.downsample
        return tuple(max(d, int(n * self.crop) // d * d) for n in (height, width))

    def levels(self) -> int:
        return self.downsample.bit_length() - 1

    def widths(self) -> list[int]:
        """Channel width at each resolution, full resolution first: levels() + 1 entries."""
        return [self.base_channels * min(2**i, self.max_mult) for i in range(self.levels() + 1)]

    def latent_shape(self, height: int, width: int) -> list[int]:
        """[C, h, w] of the latents of height x width frames."""
        d = self.downsample
        if height % d or width % d:
            raise PipelineError(
                f"frames of {height}x{width} are not divisible by tokenizer.model.downsample {d}; "
                "set frames.height/width to multiples of it"
            )
        return [self.latent_channels, height // d, width // d]


@dataclass
class TokenizerStage:
    """The frame tokenizer (train_tokenizer), a convolutional autoencoder trained on the train
    videos. Changing any key reruns the tokenizer and everything after it."""

    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    train: TrainConfig = setting(lambda: TrainConfig(steps=3000, batch_size=8, bf16=False), "The shared training loop; "
                                 "batch_size is frames per step. Many small steps: the network learns per step more than "
                                 "per frame, and 3000 steps of 8 take the time of 1500 of 16 (docs/EXPERIMENTS.md). "
                                 "fp32: with bf16 the val PSNR trailed all along.")
    collapse_threshold: float = setting(0.5, "The job fails when the reconstructions of the val frames vary less than this "
                                             "fraction of the frames themselves (near 1 faithful, near 0 collapsed).", minimum=0)
    val_frames: int = setting(64, "Val frames (evenly spread over the val videos) for metrics.json and the reconstructions.",
                              minimum=2)
