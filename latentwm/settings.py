"""Every config section as a typed dataclass: the one place a default is written.

config.yaml sets values; these classes hold the defaults, the constraints and the documentation
of every key; `schemas/config.schema.yaml` (what Snakemake validates against and fills defaults
from) is generated from them by `python -m latentwm.config` and a test fails when it differs.
A job builds its section with `config.from_dict(Section, params.cfg)`, a script run by hand gets
the same defaults, and the Snakefile checks the whole config at parse time without torch: this
module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import setting
from .errors import PipelineError

# one import for all: the sections declared in their own modules
from .dynamics_settings import (  # noqa: F401
    ACTION_KINDS, PRESET, SIZES, AlternatingConfig, DataConfig, DynamicsConfig, DynamicsStage, ObjectiveConfig)
from .evaluation_settings import DEVICES, SAFE_NAME, EvalConfig, SamplerConfig, SamplerSpec  # noqa: F401
from .train_settings import TrainConfig


@dataclass
class GeneratorConfig:
    """A `generator:` source: `clips` videos of `frames` frames, size x size pixels."""

    clips: int = setting(48, "Number of clips (videos).", minimum=1)
    frames: int = setting(60, "Frames per clip.", minimum=2)
    fps: float = setting(15, exclusiveMinimum=0)
    size: int = setting(64, "Rendered width and height in pixels (even, for H.264).", minimum=16, multipleOf=2)
    seed: int = 0
    player: bool = setting(True, "One more sprite, driven by actions (noop + 4 directions, each held 2-8 frames), whose "
                                 "per-frame actions are written next to the clip (the truth latent actions are checked "
                                 "against); false: the same clips without it.")


@dataclass
class DownloadConfig:
    """yt-dlp settings of URL sources (download rule)."""

    max_height: int = setting(360, "Height cap for yt-dlp format selection.", minimum=16)
    retries: int = setting(3, minimum=0)
    socket_timeout: float = setting(30, exclusiveMinimum=0)
    playlist_limit: int = setting(0, "Max entries per playlist/channel; 0 = all.", minimum=0)


@dataclass
class FramesConfig:
    """Frame extraction (extract_frames rule): every video resampled and resized alike."""

    fps: float = setting(15, "Frames are resampled to this rate.", exclusiveMinimum=0)
    height: int = setting(64, minimum=8)
    width: int = setting(64, minimum=8)
    resize: str = setting("crop", "crop: scale to cover then center-crop; pad: scale to fit then pad black; "
                          "stretch: ignore aspect.", enum=["crop", "pad", "stretch"])
    min_frames: int = setting(48, "A shorter video fails its job with a clear error.", minimum=1)
    chunk_frames: int = setting(64, "Frames per zarr chunk (time axis).", minimum=1)


@dataclass
class SplitsConfig:
    """Train / val / test split by video, fixed by seed (splits rule)."""

    val: float = setting(0.125, "Fraction of videos for validation (at least 1).", minimum=0, maximum=1)
    test: float = setting(0.25, "Fraction of videos for test (at least 1).", minimum=0, maximum=1)
    seed: int = 0


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
    ssim_weight: float = setting(0.2, "loss = mse + ssim_weight * (1 - SSIM): keeps edges that MSE blurs (real footage: "
                                      "reconstruction sharpness 0.65 -> 0.85 of the truth; docs/EXPERIMENTS.md).", minimum=0)
    augment: bool = setting(True, "Training only: random flips and RGB channel order per frame (val PSNR 29.4 -> 30.3 dB on "
                                  "the synthetic default: more palettes and layouts than a few videos hold).")

    def __post_init__(self):
        for w in self.widths():
            if w % self.groups:
                raise PipelineError(
                    f"tokenizer.model: width {w} is not divisible by groups {self.groups}; pick base_channels as a multiple of groups"
                )

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
    train: TrainConfig = setting(lambda: TrainConfig(steps=1500, bf16=False), "The shared training loop; batch_size is frames "
                                 "per step (1500 steps with the SSIM term: the default pipeline stays within 15 CPU minutes). "
                                 "fp32: with bf16 the val PSNR trailed by 1.5-2.6 dB all along (docs/EXPERIMENTS.md).")
    collapse_threshold: float = setting(0.5, "The job fails when the reconstructions of the val frames vary less than this "
                                             "fraction of the frames themselves (near 1 faithful, near 0 collapsed).", minimum=0)
    val_frames: int = setting(64, "Val frames (evenly spread over the val videos) for metrics.json and the reconstructions.",
                              minimum=2)


@dataclass
class LatentsConfig:
    """Encoding every video's frames into latents (encode_latents); no retraining on change."""

    videos_per_job: int = setting(64, "Videos one encode job writes (encode_latents, and encode_actions with latent "
                                      "actions): each split's videos in runs of this many, a folder results/latents/"
                                      "SPLIT_NNN each. Every job pays Python, torch and the model's start (seconds); "
                                      "fewer jobs also keep the DAG small (1,000 videos: 2,000 jobs, not 3,000).",
                                  minimum=1)
    batch_size: int = setting(64, "Frames per encoder call.", minimum=1)
    chunk_frames: int = setting(64, "Latent frames per zarr chunk (time axis).", minimum=1)
    device: str = setting("auto", enum=DEVICES)


@dataclass
class LamConfig:
    """The latent action model's shape: an inverse model (frames t, t+1) -> one of `codes` discrete
    actions, and a forward model (the last `context` frames, action) -> frame t+1; small convnets on
    the frames cut into cells of patch x patch pixels."""

    codes: int = setting(8, "Discrete latent actions (the VQ codebook size).", minimum=2)
    code_dim: int = setting(16, "Width of a code vector (codes are compared by cosine).", minimum=2)
    width: int = setting(64, "Channels of the conv layers.", minimum=4)
    depth: int = setting(2, "Residual conv blocks of the forward model (the inverse model has as many).", minimum=1)
    context: int = setting(1, "Past frames the forward model sees: 1, so the code must say how things moved (on the "
                              "generator's clips it then finds the player's actions); 2 makes steady motion "
                              "predictable without it (the codes then matched nothing there).", minimum=1, maximum=2)
    patch: int = setting(4, "Pixels per side of a cell of the model's grid: frames are cut into patch x patch blocks "
                            "stacked on channels (3 patch^2 per cell); 4 gives 16x16 cells on 64x64 frames.", minimum=1)


@dataclass
class LamStage:
    """The latent action model (train_lam) on the train videos' frames: in the DAG only with
    `dynamics.actions: latent`. Changing any key reruns it, encode_actions, dynamics and evaluation."""

    model: LamConfig = field(default_factory=LamConfig)
    train: TrainConfig = setting(lambda: TrainConfig(steps=1500, lr=0.001, warmup=50, batch_size=32, log_every=100, bf16=False),
                                 "The shared training loop; batch_size is transitions (windows of context + 1 frames) per step. "
                                 "fp32: its forward model reconstructs pixels, as the tokenizer does, which bf16 set back.")
    commitment: float = setting(0.25, "VQ commitment weight (encoder pulled toward its code).", minimum=0)
    null_action: float = setting(0.1, "Fraction of training samples whose forward model gets the learned 'no action' "
                                      "instead of the code: what the logged loss without the action uses.",
                                 minimum=0, exclusiveMaximum=1)
    dead_code_every: int = setting(50, "Steps between dead-code resets: a code used by less than 1/(10 codes) of the "
                                       "samples lately is moved onto a random encoder output of the batch.", minimum=1)
    diversity: float = setting(0.0, "Weight of the code-use term: soft assignments confident per transition and spread "
                                    "over the batch (against a codebook collapsed onto one code); 0: off.", minimum=0)
    photometric: float = setting(0.0, "Photometric jitter of the inverse model's two frames in training, drawn for each "
                                      "frame on its own: brightness gain exp(U(-p, p)), offset and per-channel tint "
                                      "U(-p/3, p/3); so a change of exposure or tint cannot carry a code. 0: off.",
                                 minimum=0, maximum=1)
    continuous_steps: int = setting(750, "Warmup steps in which the forward model gets the inverse model's continuous "
                                         "output instead of a code; then the codes start on its outputs. 0: codes from "
                                         "the start (on the generator's clips they collapsed onto one code).", minimum=0)
    min_perplexity: float = setting(2.0, "The job fails (collapsed codebook) when the codes' perplexity on the val "
                                         "transitions ends below this.", minimum=1)
    val_windows: int = setting(256, "Val transitions scored at every log step (usage, perplexity, forward loss with "
                                    "and without the action).", minimum=1)


# The sections of config.yaml other than `sources` and `evaluations` (a list and a map, built
# by config.schema around GeneratorConfig and EvalConfig).
SECTIONS = {
    "download": DownloadConfig,
    "frames": FramesConfig,
    "splits": SplitsConfig,
    "tokenizer": TokenizerStage,
    "latents": LatentsConfig,
    "lam": LamStage,
    "dynamics": DynamicsStage,
}
