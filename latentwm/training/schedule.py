"""The learning-rate schedule of the training loop, and the step budget that follows the data.

Linear warmup, then a cosine decay to `min_lr_ratio` at `steps`. Where the stage scores held-out
data every log step and `plateau_steps` is set, the schedule watches that loss: once its running
mean has made no new low for `plateau_steps` steps, the run has learned what its footage teaches
(more steps would memorise the train videos), so the learning rate anneals from where it is to
`min_lr_ratio` over `anneal_fraction` of the steps run so far, and training ends there. A run on
little footage stops early; one on plenty uses its whole budget; a bigger budget on the same
footage ends near where a smaller one did, annealed, instead of being stopped mid-schedule.

The watch's state (`state()`) travels in the resume checkpoint: a resumed run anneals and stops
exactly where an uninterrupted one does.
"""

from __future__ import annotations

import math
from typing import Callable

from latentwm.config.train import TrainConfig
from latentwm.training import distributed

PLATEAU_MEAN = 8  # log steps averaged: one held-out score moves by about 2% from noise alone


class Schedule:
    """`schedule(step)`: the learning rate's factor at `step` (a LambdaLR function); `end`: the step
    training stops at."""

    def __init__(self, cfg: TrainConfig, saved: dict | None = None):
        saved = saved or {}
        self.cfg = cfg
        self.anneal_at: int | None = saved.get("anneal_at")
        self.end: int = saved.get("end", cfg.steps)
        self.recent: list[float] = list(saved.get("recent", []))
        self.low: float = saved.get("low", math.inf)
        self.low_step: int = saved.get("low_step", 0)

    def cosine(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        if self.anneal_at is None or step <= self.anneal_at:
            return self.cosine(step)
        start, low = self.cosine(self.anneal_at), self.cfg.min_lr_ratio
        progress = min(1.0, (step - self.anneal_at) / max(1, self.end - self.anneal_at))
        return low + (max(start, low) - low) * 0.5 * (1 + math.cos(math.pi * progress))

    def offer(self, held_out: float | None, step: int) -> bool:
        """Take the held-out loss of log step `step`; True when it starts the anneal."""
        if not self.cfg.plateau_steps or self.anneal_at is not None or held_out is None:
            return False
        self.recent = (self.recent + [float(held_out)])[-PLATEAU_MEAN:]
        mean = sum(self.recent) / len(self.recent)
        if mean < self.low:
            self.low, self.low_step = mean, step
            return False
        if step - self.low_step < self.cfg.plateau_steps:
            return False
        self.anneal_at = step
        self.end = min(self.cfg.steps, step + max(1, math.ceil(self.cfg.anneal_fraction * step)))
        return True

    def watch(self, held_out: float | None, step: int, ctx, log: Callable[[str], None]) -> int:
        """`offer` on rank 0 (the one that scores held-out data), said in the log, the outcome shared
        with every rank; returns the step training ends at."""
        if self.offer(held_out, step):
            log(f"made no new low in {self.cfg.plateau_steps} steps: annealing to the end at step {self.end}")
        if ctx.world > 1:
            self.load(distributed.gather_objects(self.state(), ctx)[0])
        return self.end

    def state(self) -> dict:
        return {"anneal_at": self.anneal_at, "end": self.end, "recent": self.recent, "low": self.low, "low_step": self.low_step}

    def load(self, state: dict) -> None:
        """Take another rank's state (rank 0 alone scores the held-out data)."""
        self.__init__(self.cfg, state)
