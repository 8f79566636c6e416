"""Plain log lines for the rule's log file (and stderr), one per event, flushed at once."""

from __future__ import annotations

import sys
import time
from typing import Callable

from latentwm.core.ranks import context


def silent(msg: str) -> None:
    """The log of data-parallel ranks other than 0."""


def logger(path: str | None = None) -> Callable[[str], None]:
    """Log lines of rank 0; other data-parallel ranks (ranks.py) stay silent."""
    if not context().main:
        return silent

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, file=sys.stderr, flush=True)
        if path:
            with open(path, "a") as f:
                f.write(line + "\n")

    return log


def set_threads(threads: int) -> None:
    """Torch uses exactly the threads Snakemake gave the job (from the profile, not config)."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
