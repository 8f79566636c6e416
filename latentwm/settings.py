"""Every config section as a typed dataclass: the one place a default is written.

config.yaml sets values; these classes hold the defaults, the constraints and the documentation
of every key; `schemas/config.schema.yaml` (what Snakemake validates against and fills defaults
from) is generated from them by `python -m latentwm.config` and a test fails when it differs.
A job builds its section with `config.from_dict(Section, params.cfg)`, a script run by hand gets
the same defaults, and the Snakefile checks the whole config at parse time without torch: this
module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from .config import setting
from .errors import PipelineError
from .evaluation_settings import DEVICES, SAFE_NAME, EvalConfig, SamplerConfig, SamplerSpec  # noqa: F401  (one import for all)



@dataclass
class GeneratorConfig:
    """A `generator:` source: `clips` videos of `frames` frames, size x size pixels."""

    clips: int = setting(24, "Number of clips (videos).", minimum=1)
    frames: int = setting(120, "Frames per clip.", minimum=2)
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
class TrainConfig:
    """The shared training loop (latentwm.train): optimizer, schedule, logging, checkpoints."""

    steps: int = setting(1000, "Optimizer steps.", minimum=1)
    lr: float = setting(0.002, "Peak learning rate (AdamW).", exclusiveMinimum=0)
    min_lr_ratio: float = setting(0.1, "Cosine decay ends at lr * min_lr_ratio.", minimum=0, maximum=1)
    warmup: int = setting(20, "Linear warmup steps.", minimum=0)
    weight_decay: float = setting(0.01, minimum=0)
    beta2: float = setting(0.95, exclusiveMinimum=0, exclusiveMaximum=1)
    grad_clip: float = setting(1.0, exclusiveMinimum=0)
    batch_size: int = setting(16, "Samples per step (frames for the tokenizer, windows for dynamics).", minimum=1)
    log_every: int = setting(50, "Steps per log line and curve row (and collapse probe).", minimum=1)
    checkpoint_every: int = setting(200, "Steps per resume checkpoint (resume.pt next to the output).", minimum=1)
    workers: int = setting(0, "DataLoader worker processes.", minimum=0)
    seed: int = 0
    device: str = setting("auto", enum=DEVICES)
    bf16: bool = setting(True, "bfloat16 autocast on GPU; ignored on CPU.")
    compile: bool = setting(False, "torch.compile the model.")
    grad_checkpointing: bool = setting(False, "Recompute blocks in backward to save memory (dynamics only).")


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
    train: TrainConfig = setting(lambda: TrainConfig(steps=1500), "The shared training loop; batch_size is frames per step "
                                 "(1500 steps with the SSIM term: the default pipeline stays within 15 CPU minutes).")
    collapse_threshold: float = setting(0.5, "The job fails when the reconstructions of the val frames vary less than this "
                                             "fraction of the frames themselves (near 1 faithful, near 0 collapsed).", minimum=0)
    val_frames: int = setting(64, "Val frames (evenly spread over the val videos) for metrics.json and the reconstructions.",
                              minimum=2)


@dataclass
class LatentsConfig:
    """Encoding every video's frames into latents (encode_latents); no retraining on change."""

    batch_size: int = setting(64, "Frames per encoder call.", minimum=1)
    chunk_frames: int = setting(64, "Latent frames per zarr chunk (time axis).", minimum=1)
    device: str = setting("auto", enum=DEVICES)


@dataclass
class LamConfig:
    """The latent action model's shape: an inverse model (z_t, z_t+1) -> one of `codes` discrete
    actions, and a forward model (z_t-1, z_t, action) -> z_t+1; small convnets on the latent grid."""

    codes: int = setting(8, "Discrete latent actions (the VQ codebook size).", minimum=2)
    code_dim: int = setting(16, "Width of a code vector (codes are compared by cosine).", minimum=2)
    width: int = setting(64, "Channels of the conv layers.", minimum=4)
    depth: int = setting(2, "Residual conv blocks of the forward model (the inverse model has as many).", minimum=1)
    latent_channels: int | None = setting(None, "C of the latents; null: from the latents.", minimum=1)


@dataclass
class LamStage:
    """The latent action model (train_lam) on the train videos' latents: in the DAG only with
    `dynamics.actions: latent`. Changing any key reruns it, encode_actions, dynamics and evaluation."""

    model: LamConfig = field(default_factory=LamConfig)
    train: TrainConfig = setting(lambda: TrainConfig(steps=1500, lr=0.001, warmup=50, batch_size=32, log_every=100),
                                 "The shared training loop; batch_size is windows of 3 frames (t-1, t, t+1) per step.")
    commitment: float = setting(0.25, "VQ commitment weight (encoder pulled toward its code).", minimum=0)
    null_action: float = setting(0.1, "Fraction of training samples whose forward model gets the learned 'no action' "
                                      "instead of the code: what the logged loss without the action uses.",
                                 minimum=0, exclusiveMaximum=1)
    dead_code_every: int = setting(50, "Steps between dead-code resets: a code used by less than 1/(10 codes) of the "
                                       "samples lately is moved onto a random encoder output of the batch.", minimum=1)
    diversity: float = setting(0.0, "Weight of the code-use term: soft assignments confident per transition and spread "
                                    "over the batch (against a codebook collapsed onto one code); 0: off.", minimum=0)
    continuous_steps: int = setting(750, "Warmup steps in which the forward model gets the inverse model's continuous "
                                         "output instead of a code; then the codes start on its outputs. 0: codes from "
                                         "the start (on the generator's clips they collapsed onto one code).", minimum=0)
    min_perplexity: float = setting(2.0, "The job fails (collapsed codebook) when the codes' perplexity on the val "
                                         "transitions ends below this.", minimum=1)
    val_windows: int = setting(256, "Val transitions scored at every log step (usage, perplexity, forward loss with "
                                    "and without the action).", minimum=1)


# Named sizes of the dynamics network. A preset fills every field the config leaves unset (None);
# a field set in the config always wins. The merged values are what the checkpoint stores, so a
# later change of a preset never changes how an existing checkpoint is rebuilt.
SIZES = {
    # CPU: seconds per test, minutes for the default pipeline; 16 tokens per 16x16 latent frame.
    # k_max 4: the 4-step sampler's step is the finest, trained on the data; at 64 it is trained on
    # 3% of the samples through bootstrap targets, too few at this budget (docs/EXPERIMENTS.md).
    # arch conv: on real footage it beat the tiny transformer from step 2 on and kept the HUD; on the
    # synthetic set by 2.7 dB at step 1 (docs/EXPERIMENTS.md). The transformer keys below are the
    # tiny transformer's, for `arch: transformer`.
    "tiny": dict(arch="conv", patch=4, dim=128, depth=4, heads=4, mlp_ratio=3.0, temporal_every=2, k_max=4),
    # The seeds' model (~60M parameters on 256 x 16 x 16 latents); a GPU size.
    "small": dict(arch="transformer", patch=1, dim=512, depth=12, heads=8, mlp_ratio=4.0, temporal_every=4, k_max=64),
}
PRESET = "null: the size preset's value."


@dataclass
class DynamicsConfig:
    """Network shape. `size` names a preset (SIZES); every other key left out (or null) takes the
    preset's value, a key given here overrides it."""

    # what a checkpoint saved before a field existed meant (checkpoints store every field resolved)
    before: ClassVar[dict] = {"residual": False, "arch": "transformer"}

    size: str = setting("tiny", "tiny: CPU minutes; small: ~60M parameters (a GPU size).", enum=sorted(SIZES))
    arch: str | None = setting(None, "transformer: patches of each frame attend over space and causally over time "
                                     "(DreamerV4); conv: the last conv_frames latents stacked on channels with the noisy "
                                     "frame, residual conv blocks conditioned by FiLM (DIAMOND-like; docs/EXPERIMENTS.md); "
                                     + PRESET,
                               enum=["transformer", "conv", None])
    latent_channels: int | None = setting(None, "C of the latents; null: from the latents. Set, it must match.", minimum=1)
    latent_hw: tuple[int, int] | None = setting(None, "(h, w) of the latent grid; null: from the latents.",
                                                items={"type": "integer", "minimum": 1}, minItems=2, maxItems=2)
    actions: int = setting(0, "Action ids each frame's conditioning embeds (plus a learned 'no action'); 0: none. Set by "
                              "the stage from dynamics.actions and the action stores; leave it 0 here.", minimum=0)
    patch: int | None = setting(None, "Spatial patch size on the latent grid (tokens per frame = h*w / patch^2); " + PRESET,
                                minimum=1)
    dim: int | None = setting(None, "Transformer width; " + PRESET, minimum=8)
    depth: int | None = setting(None, "Blocks, each with spatial attention and a SwiGLU MLP; " + PRESET, minimum=1)
    heads: int | None = setting(None, "Attention heads (dim / heads must be even); " + PRESET, minimum=1)
    mlp_ratio: float | None = setting(None, "SwiGLU hidden width = mlp_ratio * dim * 2/3; " + PRESET, exclusiveMinimum=0)
    temporal_every: int | None = setting(None, "Causal temporal attention in every Nth block (DreamerV4: 4); " + PRESET,
                                         minimum=1)
    max_frames: int | None = setting(None, "Transformer: temporal attention window in frames (the KV cache length); null: "
                                           "the longest training window, so rollouts never attend farther back than training "
                                           "did. Conv: always conv_frames + 1.", minimum=1)
    k_max: int | None = setting(None, "Finest shortcut step is 1/k_max (a power of two; DreamerV4: 64); " + PRESET, minimum=1)
    qk_norm: bool = setting(True, "RMSNorm on queries and keys.")
    prev_frame: bool = setting(True, "Token shift: each token also embeds its patch in the previous frame.")
    residual: bool = setting(True, "Predict the change from the previous frame: the untrained model copies it and static "
                                   "parts (a HUD) cost nothing (real footage, teacher-forced: -2.2 -> -1.3 dB against "
                                   "copy-previous; docs/EXPERIMENTS.md). Needs prev_frame.")

    conv_width: int = setting(96, "conv: channels of the residual blocks.", minimum=8)
    conv_blocks: int = setting(4, "conv: residual blocks (full resolution, 3x3).", minimum=1)
    conv_frames: int = setting(4, "conv: past frames a frame is predicted from (its max_frames is this + 1); in training "
                                  "a frame nearer the window start sees the missing ones as pure noise.", minimum=1)

    def __post_init__(self):
        if self.size not in SIZES:
            raise PipelineError(f"dynamics.model.size {self.size!r} is unknown; expected one of {sorted(SIZES)}")
        for f in fields(self):
            if getattr(self, f.name) is None and f.name in SIZES[self.size]:
                setattr(self, f.name, SIZES[self.size][f.name])
        if self.latent_hw is not None:
            self.latent_hw = tuple(int(x) for x in self.latent_hw)
        if self.arch == "conv":
            if self.conv_width % 8:
                raise PipelineError(f"dynamics.model.conv_width {self.conv_width} must be a multiple of 8 (GroupNorm groups)")
        elif self.latent_hw is not None:
            h, w = self.latent_hw
            if h % self.patch or w % self.patch:
                raise PipelineError(f"dynamics.model.patch {self.patch} does not divide the latent grid {h}x{w}; pick a divisor")
        if self.arch == "transformer" and (self.dim % self.heads or (self.dim // self.heads) % 2):
            raise PipelineError(f"dynamics.model.dim {self.dim} must split into {self.heads} heads of even width")
        if self.residual and not self.prev_frame:
            raise PipelineError("dynamics.model.residual needs dynamics.model.prev_frame: true (the change is taken from it)")
        if self.k_max < 1 or self.k_max & (self.k_max - 1):
            raise PipelineError(f"dynamics.model.k_max {self.k_max} must be a power of two")

    def resolved(self, latent_shape, max_frames: int) -> DynamicsConfig:
        """This config for latents of `latent_shape` [C, h, w], the window unset filled in: what
        the network is built from and the checkpoint stores. Set latent keys must agree."""
        C, h, w = (int(x) for x in latent_shape)
        out = dict(vars(self))
        for key, want in (("latent_channels", C), ("latent_hw", (h, w))):
            got = out[key]
            if got is None:
                out[key] = want
            elif got != want:
                raise PipelineError(
                    f"dynamics.model.{key} is {list(got) if isinstance(got, tuple) else got} but the latents have "
                    f"{list(want) if isinstance(want, tuple) else want} (latent_shape {[C, h, w]}); set dynamics.model.{key} "
                    "to that or null (null: taken from the latents)"
                )
        if out["arch"] == "conv":  # what a frame sees; training windows may be longer
            out["max_frames"] = out["conv_frames"] + 1
        elif out["max_frames"] is None:
            out["max_frames"] = max_frames
        if out["arch"] == "transformer" and max_frames > out["max_frames"]:
            raise PipelineError(
                f"dynamics.data window {max_frames} exceeds dynamics.model.max_frames {out['max_frames']}; "
                "raise max_frames or shorten the window"
            )
        return DynamicsConfig(**out)


@dataclass
class ObjectiveConfig:
    """Flow matching with x-prediction, diffusion forcing, shortcut forcing (latentwm.diffusion)."""

    schedule: str = setting("context", "context: first frames at tau_ctx, later targets with tau rising toward 1 (seeds); "
                                       "independent: a level per frame (DreamerV4).", enum=["context", "independent"])
    tau_ctx: float = setting(0.0, "Noise level of context frames (the context schedule); the conv network predicts real "
                                  "footage better from a clean context (docs/EXPERIMENTS.md).", minimum=0, maximum=1)
    context_frames: int = setting(4, "Context frames per window (at most window - 1); 0: drawn per window in [1, T-1]. "
                                     "With window = context_frames + 1 every window trains one rollout step.", minimum=0)
    ramp_weight: bool = setting(False, "DreamerV4's loss weight 0.9 (1 - tau) + 0.1; false: 1, so the pure-noise first "
                                       "step of a rollout weighs as much as the rest (measured better at the tiny size: "
                                       "latent MSE 0.232 vs 0.259).")
    shortcut: bool = setting(False, "Shortcut forcing (d with P(d) ~ 1/d, bootstrap loss); needed by shortcut samplers "
                                    "with fewer steps than k_max. Off: at k_max 4 the 4-step sampler is the model's own "
                                    "step, and the bootstrap cost the conv network 0.3 dB at step 1 (docs/EXPERIMENTS.md).")


@dataclass
class AlternatingConfig:
    """DreamerV4 3.4: many short batches, occasionally a long one (then data.window / batch_size
    are unused); for long videos and GPUs."""

    enabled: bool = False
    short_window: int = setting(8, minimum=2)
    long_window: int = setting(16, minimum=2)
    short_batch: int = setting(16, minimum=1)
    long_batch: int = setting(8, minimum=1)
    long_ratio: float = setting(0.1, "Probability that a batch is long.", minimum=0, maximum=1)


@dataclass
class DataConfig:
    """Training windows of latent frames."""

    window: int = setting(5, "Frames per training window (a rollout step per window is what teaches prediction: "
                             "short windows, many of them).", minimum=2)
    stride: int = setting(1, "Window starts are multiples of stride.", minimum=1)
    batch_size: int = setting(32, "Windows per batch.", minimum=1)
    shift: int = setting(0, "Roll each training window by a random offset of up to this many latent cells in each "
                            "direction (the same for all its frames), so the network cannot learn where things sit in "
                            "its few training videos; 0: off (3 held a deterministic model's held-out loss flat, but "
                            "did not help the default; docs/EXPERIMENTS.md).", minimum=0)
    alternating: AlternatingConfig = field(default_factory=AlternatingConfig)

    def windows(self) -> dict[str, int]:
        """Config key -> length of every window training uses."""
        alt = self.alternating
        if alt.enabled:
            return {"dynamics.data.alternating.short_window": alt.short_window,
                    "dynamics.data.alternating.long_window": alt.long_window}
        return {"dynamics.data.window": self.window}

    def longest(self) -> int:
        return max(self.windows().values())


ACTION_KINDS = ["latent", "given"]  # what dynamics.actions may condition on besides none (latentwm.actions)


@dataclass
class DynamicsStage:
    """The latent dynamics model (train_dynamics), trained on the train videos' latents."""

    model: DynamicsConfig = field(default_factory=DynamicsConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = setting(
        lambda: TrainConfig(steps=1500, lr=0.001, min_lr_ratio=0.0, beta2=0.999, warmup=50, log_every=25),
        "The shared training loop; its batch_size is unused here (data.batch_size is the batch).",
    )
    actions: str = setting("none", "none: a video predictor (no actions); latent: conditioned on the latent action "
                                   "model's actions (train_lam, encode_actions); given: on the videos' own actions "
                                   "(generator player or sidecar files).", enum=["none", *ACTION_KINDS])
    action_dropout: float = setting(0.1, "Probability that a training window's actions are all replaced by the learned "
                                         "'no action' (so the model also predicts without them).", minimum=0, maximum=1)
    val_windows: int = setting(32, "Windows of the val videos scored at every log step: the next-frame loss from a clean "
                                    "context (curve column probe_val_next_loss, beside probe_val_copy_loss); 0: off.", minimum=0)
    keep_best: bool = setting(False, "Return the weights of the log step with the lowest val next-frame loss, not the last "
                                     "ones (health.json `selected`): a guard for long runs on few videos. Off: on the real set "
                                     "at 1200 steps it picked step 1025 and changed nothing beyond noise (docs/EXPERIMENTS.md).")

    def __post_init__(self):
        self.train.batch_size = self.data.batch_size  # one batch size: the loader's

    def model_config(self, latent_shape) -> DynamicsConfig:
        return self.model.resolved(latent_shape, self.data.longest())


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
