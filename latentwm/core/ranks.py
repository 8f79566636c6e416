"""This process's place in a data-parallel job, read from the torchrun-style environment.

Apart from distributed.py because it needs no torch: every job logs through logs.logger, which
asks whether this process is rank 0, and a data job (download, extract) that imported torch for
that question would pay about 2 s of its 3 for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes logs, curves, checkpoints and health files."""
        return self.rank == 0


def context() -> Context:
    """This process's place in the job, from the torchrun-style environment (single if unset)."""
    env = os.environ
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return Context()
    return Context(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))
