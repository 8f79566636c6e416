"""The `lam` section: the latent action model (latentwm.models.lam) and its training."""

from __future__ import annotations

from dataclasses import dataclass, field

from latentwm.config.fields import setting
from latentwm.config.train import TrainConfig
from latentwm.core.errors import PipelineError


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
    shift: int = setting(0, "Largest shift of the whole view, in cells per axis, the forward model can apply to frame t "
                            "under a code before its conv refines it (each code picks a mixture of shifts): a camera "
                            "turn moves the view further than the conv sees. 0: off.", minimum=0)
    inverse: str = setting("frames", "What the inverse model reads of a transition: frames (the two frames' cells), motion "
                                     "(only how well frame t matches frame t+1 under every whole-cell shift up to `shift`, "
                                     "over the cells that changed: the view's move, whatever the light or a still HUD does), "
                                     "or frames+motion.", enum=["frames", "motion", "frames+motion"])
    patch: int = setting(4, "Pixels per side of a cell of the model's grid: frames are cut into patch x patch blocks "
                            "stacked on channels (3 patch^2 per cell); 4 gives 16x16 cells on 64x64 frames.", minimum=1)

    def __post_init__(self):
        if "motion" in self.inverse and not self.shift:
            raise PipelineError(f"lam.model.inverse {self.inverse} matches the views under shifts up to lam.model.shift, which "
                                "is 0; set lam.model.shift (e.g. 6) or inverse: frames")


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
