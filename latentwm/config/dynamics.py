"""The `dynamics` section: the network's shape and size presets, the objective, the training windows
and the stage, declared as latentwm.config declares every section: defaults, constraints and
documentation, torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from latentwm.config.fields import setting
from latentwm.config.train import TrainConfig
from latentwm.core.errors import PipelineError

# Named sizes of the dynamics network. A preset fills every field the config leaves unset (None);
# a field set in the config always wins. The merged values are what the checkpoint stores, so a
# later change of a preset never changes how an existing checkpoint is rebuilt.
SIZES = {
    # CPU: seconds per test, minutes for the default pipeline; 16 tokens per 16x16 latent frame.
    # k_max 4: the 4-step sampler's step is the finest, trained on the data; at 64 it is trained on
    # 3% of the samples through bootstrap targets, too few at this budget (docs/EXPERIMENTS.md).
    # arch conv: at this size it predicts better than the tiny transformer and keeps the HUD
    # (docs/EXPERIMENTS.md). The transformer keys below are the tiny transformer's, for `arch: transformer`.
    # source previous, noise 0.25: each frame's flow starts at the frame before it plus noise of about the size of
    # a real frame's change, so the sampler resolves the change, not the whole frame (docs/EXPERIMENTS.md).
    "tiny": dict(arch="conv", patch=4, dim=128, depth=4, heads=4, mlp_ratio=3.0, temporal_every=2, k_max=4,
                 source="previous", source_noise=0.25),
    # The seeds' model (~60M parameters on 256 x 16 x 16 latents); a GPU size.
    "small": dict(arch="transformer", patch=1, dim=512, depth=12, heads=8, mlp_ratio=4.0, temporal_every=4, k_max=64,
                  source="noise", source_noise=1.0),
}
PRESET = "null: the size preset's value."


@dataclass
class DynamicsConfig:
    """Network shape. `size` names a preset (SIZES); every other key left out (or null) takes the
    preset's value, a key given here overrides it."""

    # what a checkpoint saved before a field existed meant (checkpoints store every field resolved)
    before: ClassVar[dict] = {"residual": False, "arch": "transformer", "source": "noise", "source_noise": 1.0,
                              "conv_warp": False, "conv_patch": 1}

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
    source: str | None = setting(None, "Where each frame's flow starts (its level tau = 1), the sampler's first draw and the "
                                       "objective's: noise (DreamerV4: pure noise, source_noise * N(0, 1)) or previous (the "
                                       "frame before it plus that noise: the steps then resolve the change, not the whole "
                                       "frame; docs/EXPERIMENTS.md); " + PRESET, enum=["noise", "previous", None])
    source_noise: float | None = setting(None, "Standard deviation of the start's noise in normalised latent units (1: the "
                                               "latents' own spread; a real frame's change is 0.45-0.55 rms at 30 fps, "
                                               "0.55-0.7 at 15); " + PRESET,
                                         exclusiveMinimum=0)
    qk_norm: bool = setting(True, "RMSNorm on queries and keys.")
    prev_frame: bool = setting(True, "Token shift: each token also embeds its patch in the previous frame.")
    residual: bool = setting(True, "Predict the change from the previous frame: the untrained model copies it and static "
                                   "parts (a HUD) cost nothing (docs/EXPERIMENTS.md). Needs prev_frame.")

    conv_width: int = setting(96, "conv: channels of the residual blocks.", minimum=8)
    conv_blocks: int = setting(4, "conv: residual blocks (full resolution, 3x3).", minimum=1)
    conv_warp: bool = setting(False, "conv, residual (conv_frames >= 2): the change is taken from the previous frame moved "
                                     "as a whole, a mixture of its shifted copies weighted from the frame's action and the "
                                     "camera's motion so far (latentwm/models/dynamics/conv.py), so a turning camera moves the "
                                     "whole frame at once; false: from the previous frame as it is.")
    conv_frames: int = setting(4, "conv: past frames a frame is predicted from (its max_frames is this + 1); in training "
                                  "a frame nearer the window start sees the missing ones as pure noise.", minimum=1)
    conv_patch: int = setting(1, "conv: the blocks run on cells of patch x patch latent cells (their channels side by side), "
                                 "so a tokenizer with a finer grid (downsample 2) costs the dynamics no more; 1: every cell.",
                              minimum=1)

    def __post_init__(self):
        if self.size not in SIZES:
            raise PipelineError(f"dynamics.model.size {self.size!r} is unknown; expected one of {sorted(SIZES)}")
        for f in fields(self):
            if getattr(self, f.name) is None and f.name in SIZES[self.size]:
                setattr(self, f.name, SIZES[self.size][f.name])
        if self.latent_hw is not None:
            self.latent_hw = tuple(int(x) for x in self.latent_hw)
        if self.arch == "conv" and self.conv_width % 8:
            raise PipelineError(f"dynamics.model.conv_width {self.conv_width} must be a multiple of 8 (GroupNorm groups)")
        key = "conv_patch" if self.arch == "conv" else "patch"  # the grid the network's cells tile
        if self.latent_hw is not None and any(n % getattr(self, key) for n in self.latent_hw):
            h, w = self.latent_hw
            raise PipelineError(f"dynamics.model.{key} {getattr(self, key)} does not divide the latent grid {h}x{w}; "
                                "pick a divisor")
        if self.arch == "transformer" and (self.dim % self.heads or (self.dim // self.heads) % 2):
            raise PipelineError(f"dynamics.model.dim {self.dim} must split into {self.heads} heads of even width")
        if self.conv_warp and self.conv_patch > 1:
            raise PipelineError("dynamics.model.conv_warp needs conv_patch: 1 (it moves the frame by whole cells)")
        if self.conv_warp and not (self.arch == "conv" and self.residual and self.conv_frames >= 2):
            raise PipelineError("dynamics.model.conv_warp needs arch: conv, residual: true and conv_frames >= 2 (it moves the "
                                "previous frame by the motion of the two before)")
        if self.residual and not self.prev_frame:
            raise PipelineError("dynamics.model.residual needs dynamics.model.prev_frame: true (the change is taken from it)")
        if self.k_max < 1 or self.k_max & (self.k_max - 1):
            raise PipelineError(f"dynamics.model.k_max {self.k_max} must be a power of two")

    def resolve(self, latent_shape, max_frames: int, actions: int | None = None) -> DynamicsConfig:
        """Fill in, in place, what the latents of `latent_shape` [C, h, w], the longest training window
        and the number of action ids (when given) decide, checked again; self. This is what the network
        is built from and the checkpoint stores. Set latent keys must agree."""
        C, h, w = (int(x) for x in latent_shape)
        if actions is not None:
            self.actions = actions
        for key, want in (("latent_channels", C), ("latent_hw", (h, w))):
            got = getattr(self, key)
            if got is None:
                setattr(self, key, want)
            elif got != want:
                raise PipelineError(
                    f"dynamics.model.{key} is {list(got) if isinstance(got, tuple) else got} but the latents have "
                    f"{list(want) if isinstance(want, tuple) else want} (latent_shape {[C, h, w]}); set dynamics.model.{key} "
                    "to that or null (null: taken from the latents)"
                )
        if self.arch == "conv":  # what a frame sees; training windows may be longer
            self.max_frames = self.conv_frames + 1
        elif self.max_frames is None:
            self.max_frames = max_frames
        if self.arch == "transformer" and max_frames > self.max_frames:
            raise PipelineError(
                f"dynamics.data window {max_frames} exceeds dynamics.model.max_frames {self.max_frames}; "
                "raise max_frames or shorten the window"
            )
        self.__post_init__()  # the checks that need the latent grid
        return self


@dataclass
class ObjectiveConfig:
    """Flow matching with x-prediction, diffusion forcing, shortcut forcing (latentwm.models.flow)."""

    schedule: str = setting("context", "context: first frames at tau_ctx, later targets with tau rising toward 1 (seeds); "
                                       "independent: a level per frame (DreamerV4).", enum=["context", "independent"])
    tau_ctx: float = setting(0.0, "Noise level of context frames (the context schedule); the conv network predicts real "
                                  "footage better from a clean context (docs/EXPERIMENTS.md).", minimum=0, maximum=1)
    context_frames: int = setting(4, "Context frames per window (at most window - 1); 0: drawn per window in [1, T-1]. "
                                     "With window = context_frames + 1 every window trains one rollout step.", minimum=0)
    ramp_weight: bool = setting(False, "DreamerV4's loss weight 0.9 (1 - tau) + 0.1; false: 1, so the pure-noise first "
                                       "step of a rollout weighs as much as the rest, which predicts better at the tiny "
                                       "size (docs/EXPERIMENTS.md).")
    pixel_weight: float = setting(0.0, "Weight of a loss on the decoded frames: targets' predictions and targets decoded by "
                                       "the tokenizer (frozen), MSE in [0, 1] pixel units plus pixel_ssim * (1 - SSIM), beside "
                                       "the latent MSE (normalised units, about 100x larger; 100 balances them); 0: off. It "
                                       "trains what evaluation scores (a latent mean decodes darker and softer than the frames); "
                                       "off on the CPU default, where it more than doubles a step's time for a small gain "
                                       "(docs/EXPERIMENTS.md); worth it on a GPU.", minimum=0)
    pixel_ssim: float = setting(0.2, "SSIM's share of the pixel loss (as tokenizer.model.ssim_weight).", minimum=0)
    pixel_frames: int = setting(0, "Targets per batch the pixel loss decodes (the first of the shuffled batch); 0: all "
                                   "(fewer save time and lose most of the gain: docs/EXPERIMENTS.md).", minimum=0)
    shortcut: bool = setting(False, "Shortcut forcing (d with P(d) ~ 1/d, bootstrap loss); needed by shortcut samplers "
                                    "with fewer steps than k_max. Off: at k_max 4 the 4-step sampler is the model's own "
                                    "step, and the bootstrap only costs the conv network (docs/EXPERIMENTS.md).")


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


ACTION_KINDS = ["latent", "given"]  # what dynamics.actions may condition on besides none (latentwm.data.actions)


@dataclass
class DynamicsStage:
    """The latent dynamics model (train_dynamics), trained on the train videos' latents."""

    model: DynamicsConfig = field(default_factory=DynamicsConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = setting(
        lambda: TrainConfig(steps=3750, fp32_steps=1500, lr=0.001, min_lr_ratio=0.0, beta2=0.999, warmup=50, log_every=25,
                            plateau_steps=1000),
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
                                     "ones (health.json `selected`): a guard for long runs on few videos. Off: at the default budget "
                                     "it changes nothing beyond noise, and on a long run it keeps weights from before the "
                                     "learning rate has annealed (docs/EXPERIMENTS.md).")

    def __post_init__(self):
        self.train.batch_size = self.data.batch_size  # one batch size: the loader's

    def model_config(self, latent_shape, actions: int | None = None) -> DynamicsConfig:
        """`model`, resolved in place for these latents and actions (DynamicsConfig.resolve)."""
        return self.model.resolve(latent_shape, self.data.longest(), actions)
