"""The shared training loop's section (`tokenizer.train`, `lam.train`, `dynamics.train`), declared as
latentwm.config declares every section: defaults, constraints and documentation, torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from latentwm.config.fields import setting

DEVICES = ["auto", "cpu", "cuda"]


@dataclass
class TrainConfig:
    """The shared training loop (latentwm.training.loop): optimizer, schedule, logging, checkpoints."""

    steps: int = setting(1000, "Optimizer steps (where training runs in bf16; see fp32_steps).", minimum=1)
    fp32_steps: int = setting(0, "Optimizer steps where training runs in fp32 instead (bf16 false, or no native bf16 here, "
                                 "where a step costs about 2.5x as long: fewer steps keep the wall clock); 0: steps.", minimum=0)
    lr: float = setting(0.002, "Peak learning rate (AdamW).", exclusiveMinimum=0)
    min_lr_ratio: float = setting(0.1, "Cosine decay ends at lr * min_lr_ratio.", minimum=0, maximum=1)
    warmup: int = setting(20, "Linear warmup steps.", minimum=0)
    plateau_steps: int = setting(0, "Where the stage scores held-out data (dynamics: val_windows): once the held-out loss (its "
                                    "mean over the last 8 log steps) has made no new low for this many steps, the learning "
                                    "rate anneals from where it is and training ends, so the step budget follows the "
                                    "footage: steps is the most it runs. 0: off, always steps.", minimum=0)
    anneal_fraction: float = setting(0.25, "After such a plateau: the anneal's length as a fraction of the steps run so far "
                                           "(the end capped at steps).", exclusiveMinimum=0, maximum=1)
    weight_decay: float = setting(0.01, minimum=0)
    beta2: float = setting(0.95, exclusiveMinimum=0, exclusiveMaximum=1)
    grad_clip: float = setting(1.0, exclusiveMinimum=0)
    batch_size: int = setting(16, "Samples per step (frames for the tokenizer, windows for dynamics).", minimum=1)
    log_every: int = setting(50, "Steps per log line and curve row (and collapse probe).", minimum=1)
    checkpoint_every: int = setting(200, "Steps per resume checkpoint (resume.pt next to the output).", minimum=1)
    workers: int = setting(0, "DataLoader worker processes.", minimum=0)
    seed: int = 0
    device: str = setting("auto", enum=DEVICES)
    bf16: bool = setting(True, "bfloat16 autocast where the hardware runs it natively (a GPU, a CPU with AMX or AVX-512 BF16); "
                                  "fp32 elsewhere, and everywhere when false.")
    compile: bool = setting(False, "torch.compile the model.")
    grad_checkpointing: bool = setting(False, "Recompute blocks in backward to save memory (dynamics only).")
