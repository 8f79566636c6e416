"""The config of the evaluations (`evaluations.NAME`) and of the samplers they compare, declared as
latentwm.config declares every section: defaults, constraints and documentation, torch-free."""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from latentwm.config.fields import SAFE_NAME, setting
from latentwm.config.train import DEVICES
from latentwm.core.errors import PipelineError

SAMPLER_KINDS = ["euler", "shortcut"]  # latentwm.models.sampler


@dataclass
class SamplerConfig:
    """One sampler, by name: how each rollout frame is denoised (latentwm.models.sampler runs it; the
    context level is the caller's, the evaluation's `tau_ctx` or the model's own)."""

    name: str = setting(MISSING, "Label in the CSV and plots.", pattern=SAFE_NAME)
    kind: str = setting(MISSING, "euler: K steps at the finest step size (K <= k_max); shortcut: K steps of size 1/K (K a power "
                                 "of 2 <= k_max).",
                        enum=SAMPLER_KINDS)
    steps: int = setting(MISSING, "Denoising steps per frame.", minimum=1)
    temperature: float = setting(1.0, "The noise each frame's flow starts from, as a share of the noise the model trained "
                                      "with (dynamics.model.source_noise): 1 samples the trained start; below 1 starts nearer "
                                      "the frame before (source previous) or nearer 0 (source noise: reduced-temperature "
                                      "sampling, not measured here).", exclusiveMinimum=0)
    still: float = setting(0.0, "Latent cells whose sampled change from the frame before is below this (RMS over the "
                                "latent channels, normalised units) keep the frame before exactly, so a still overlay "
                                "(a HUD) does not drift over a rollout; 0: off.", minimum=0)
    guidance: float = setting(1.0, "Action guidance, for a model with actions: each denoising step's prediction is the "
                                   "one without the frame's action plus this times the action's effect (classifier-free "
                                   "guidance); 1: the plain conditional prediction, above 1 the action counts more.",
                              minimum=0)

    def __post_init__(self):  # from_dict checks the yaml against the same bounds; this checks code that builds one
        if self.kind not in SAMPLER_KINDS:
            raise PipelineError(f"sampler kind {self.kind!r} is unknown; expected one of {tuple(SAMPLER_KINDS)}")
        if self.steps < 1:
            raise PipelineError(f"sampler steps {self.steps} must be at least 1")
        if not self.temperature > 0:
            raise PipelineError(f"sampler temperature {self.temperature} must be above 0")
        if self.still < 0:
            raise PipelineError(f"sampler still {self.still} must be at least 0 (0: off)")
        if self.guidance < 0:
            raise PipelineError(f"sampler guidance {self.guidance} must be at least 0 (1: the plain conditional prediction)")

    def step_size(self, k_max: int) -> float:
        """The d passed to the model: 1/K for shortcut sampling, the finest 1/k_max for Euler.

        Training draws the noise levels on the grid of its step size (multiples of 1/k_max at the
        finest), so Euler with more than k_max steps would ask for levels the model never saw
        (and predict worse: docs/EXPERIMENTS.md).
        """
        K = self.steps
        if self.kind == "euler":
            if K > k_max:
                raise PipelineError(
                    f"euler sampling with {K} steps passes noise levels between the model's training grid of k_max "
                    f"{k_max}; use at most {k_max} steps, or train with dynamics.model.k_max >= {K}"
                )
            return 1.0 / k_max
        if K & (K - 1) or K > k_max:
            raise PipelineError(
                f"shortcut sampling with {K} steps needs a power of two <= k_max {k_max}; use 1, 2, 4, ... or kind euler"
            )
        return 1.0 / K

    def levels(self) -> list[float]:
        return [1.0 - i / self.steps for i in range(self.steps + 1)]


def _default_samplers() -> list[SamplerConfig]:
    # euler4 at temperature 0.4 (start noise 0.1 around the previous frame for the tiny preset's 0.25): a
    # quieter start predicts real footage better; still 0.2 keeps a HUD from drifting; guidance 1.5 (action
    # models only) makes the action count more (each measured: docs/EXPERIMENTS.md)
    return [SamplerConfig("euler4", "euler", 4, 0.4, 0.2, 1.5), SamplerConfig("euler1", "euler", 1)]


@dataclass
class EvalConfig:
    """One named evaluation on the test videos (evaluate_rollouts)."""

    context: int = setting(8, "Real frames given to the model before it predicts.", minimum=1)
    horizon: int = setting(8, "Frames predicted autoregressively after the context.", minimum=1)
    stride: int = setting(16, "Frames between window starts in each test video (from frame 0); with stride >= context + "
                              "horizon, windows do not overlap.", minimum=1)
    max_windows: int = setting(64, "Windows per test video at most; when more fit, an evenly spaced subset (first and last "
                                   "kept). Deterministic. Evaluation cost grows linearly with the number of windows.", minimum=1)
    samplers: list[SamplerConfig] = setting(_default_samplers, "Samplers to compare; the first is the model's own "
                                                             "and also runs teacher-forced and the mean (model_mean). The default "
                                                             "second, one step from noise, is the network's direct guess.", minItems=1)
    tau_ctx: float | None = setting(None, "Noise level of the context frames; null: the level the model was trained "
                                          "with (dynamics.objective.tau_ctx, stored in its checkpoint).", minimum=0, maximum=1)
    mean_samples: int = setting(4, "Rollouts of the first sampler averaged in latent space into the model_mean condition (an "
                                   "estimate of the conditional mean, reported beside the single rollout), and the best of "
                                   "them per window by PSNR (model_best, best-of-N); 0 disables both, 1 is not allowed.",
                                minimum=0)
    samples: int = setting(2, "The first N windows get a sample GIF and filmstrip.", minimum=0)
    seed: int = setting(0, "Sampler noise (window positions are fixed by stride and max_windows).")
    batch_size: int = setting(8, "Windows per rollout batch.", minimum=1)
    device: str = setting("auto", enum=DEVICES)

    def __post_init__(self):
        names = [s.name for s in self.samplers]
        if not names or len(set(names)) != len(names):
            raise PipelineError(f"evaluation samplers {names} must be a non-empty list of distinct names")
        if self.mean_samples == 1:
            raise PipelineError("evaluation mean_samples is 1; use 0 (off) or at least 2 "
                                "(one rollout is the model condition itself)")

    @property
    def span(self) -> int:
        return self.context + self.horizon
