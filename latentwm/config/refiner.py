"""The `refiner` section: keyframe imputation (latentwm.models.refiner), its training and its evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

from latentwm.config.fields import setting
from latentwm.config.train import DEVICES, TrainConfig
from latentwm.core.errors import PipelineError


def check_nested(spacings: list[int], where: str) -> None:
    """Spacings 2 or more, rising, each dividing the next (a coarser level's keyframes among a finer one's)."""
    if not spacings or any(s < 2 for s in spacings) or any(b % a or b <= a for a, b in zip(spacings, spacings[1:])):
        raise PipelineError(f"config key {where} is {spacings}; expected rising spacings of 2 or more, each dividing "
                            "the next (e.g. [2, 4, 8])")


@dataclass
class RefinerConfig:
    """The refiner's network: a window of max(spacings) + 1 latent frames, keyframes at the multiples of
    one level's spacing and the frames between them interpolated, stacked on channels with the
    keyframe mask and the level; residual conv blocks over the latent grid predict each frame's
    correction (zero at initialisation: the output is then the interpolation); keyframes are kept
    exactly."""

    spacings: list[int] = setting(lambda: [2, 4, 8], "Keyframe spacings (the levels), each dividing the next: a window "
                                                     "holds max + 1 latent frames.",
                                  items={"type": "integer", "minimum": 2}, minItems=1)
    width: int = setting(64, "Channels of the conv layers.", minimum=4)
    blocks: int = setting(4, "Residual blocks (two 3x3 convs each; dilations 1, 2, 4 in turn, so a block sees far "
                             "across the latent grid, as far as the view moves between keyframes).", minimum=1)
    interpolation: str = setting("linear", "How the frames between keyframes start: linear, the latents interpolated; "
                                           "nearest, the nearer keyframe repeated.", enum=["linear", "nearest"])
    latent_channels: int | None = setting(None, "C of the latents; null: from the latents. Set, it must match.", minimum=1)

    def __post_init__(self):
        check_nested(list(self.spacings), "refiner.model.spacings")

    def window(self) -> int:
        return max(self.spacings) + 1


@dataclass
class RefinerEval:
    """evaluate_refiner on the test videos: every scored spacing's in-between frames against latent
    linear interpolation, a pixel crossfade of the two keyframes and the nearest keyframe repeated."""

    spacings: list[int] | None = setting(None, "Keyframe spacings scored, each one of refiner.model.spacings; null: "
                                               "those of 4 and more (where interpolation blurs).",
                                         items={"type": "integer", "minimum": 2}, minItems=1)

    steps: int = setting(1, "Euler steps of the flow per level when filling; more than 1 only for a refiner trained "
                            "with noise (refiner.noise > 0), whose fill is then a sample rather than the prediction "
                            "from the interpolation plus noise.", minimum=1)
    stride: int = setting(8, "Frames between the starts of two scored windows (max(spacings) + 1 frames each).", minimum=1)
    max_windows: int = setting(32, "At most this many windows per test video, evenly spaced (first and last kept).",
                               minimum=1)
    samples: int = setting(2, "Filmstrips written (the first windows of the first test videos).", minimum=0)
    device: str = setting("auto", enum=DEVICES)

    def scored(self, trained: list[int]) -> list[int]:
        """The spacings scored, for a refiner trained on `trained`."""
        if self.spacings is None:
            return [s for s in trained if s >= 4] or list(trained)
        missing = sorted(set(self.spacings) - set(trained))
        if missing:
            raise PipelineError(f"config key refiner.evaluation.spacings names {missing}, which the refiner (spacings "
                                f"{list(trained)}) was not trained on; score only spacings of refiner.model.spacings")
        return sorted(self.spacings)


NOT_TRAINED = ("enabled", "evaluation")  # keys of the section the refiner's weights do not depend on


def trained_slice(section: dict) -> dict:
    """The `refiner` section without NOT_TRAINED: train_refiner's params and its resume fingerprint."""
    return {k: v for k, v in section.items() if k not in NOT_TRAINED}


@dataclass
class RefinerStage:
    """Keyframe imputation on the train videos' latents (train_refiner, then evaluate_refiner and its
    report page): off by default. A key under `model`, `train` or `noise` reruns the refiner, its
    evaluation and its page; one under `evaluation` only the last two; the tokenizer and dynamics never."""

    enabled: bool = setting(False, "Add the refiner's stages to the DAG (about 6 more minutes on 2 CPU cores with the "
                                   "default data).")
    model: RefinerConfig = field(default_factory=RefinerConfig)
    noise: float = setting(0.0, "Std of Gaussian noise added to the interpolated frames between keyframes (normalised "
                                "latent units), in training and when filling: the forward process keyframes + "
                                "interpolation + noise; 0: deterministic.", minimum=0)
    reverse: bool = setting(True, "Play half the training windows backwards (the frames between two keyframes do not "
                                  "say which way time runs): twice the windows from the same footage.")
    train: TrainConfig = setting(lambda: TrainConfig(steps=8000, lr=0.001, warmup=50, batch_size=16, log_every=100),
                                 "The shared training loop; batch_size is windows per step.")
    val_windows: int = setting(64, "Val windows scored at every log step (the held-out loss).", minimum=1)
    keep_best: bool = setting(True, "Keep the weights where the held-out loss was lowest, not the last.")
    evaluation: RefinerEval = field(default_factory=RefinerEval)

    def __post_init__(self):
        self.evaluation.scored(self.model.spacings)  # at parse time: a spacing the refiner is not trained on
