"""The job every workflow script runs in, in one shape:

    def main(job):                       # the stage: job.input, job.output, job.params by name
        ...                              # its config section built once, here, then the package

    if "snakemake" in globals():
        Job.rule(snakemake, __file__).run(main)
    elif __name__ == "__main__":         # by hand: argparse, then the same main
        Job.by_hand(__file__, input=..., output=..., params=..., threads=...).run(main)

`run` gives main one-line errors (a PipelineError is one line on stderr and in the rule's log, exit
1), torch the job's threads, and a relaunch under torchrun when the rule was given more than one
GPU. torch is imported only by jobs that use it: a data job (a process per video) stays light.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from latentwm.core.errors import PipelineError, one_line_errors
from latentwm.core.logs import logger, set_threads
from latentwm.core.ranks import context


class Names(SimpleNamespace):
    """A by-hand job's inputs, outputs or params: by attribute, or by `get` like Snakemake's."""

    def get(self, key: str, default=None):
        return getattr(self, key, default)


class Job:
    """A workflow script's job: its named inputs, outputs and params, its log, threads and GPUs."""

    def __init__(self, script: str, input, output, params, log_path: str | None = None, threads: int = 2,
                 gpus: int = 0, wildcards=None):
        self.script, self.input, self.output, self.params = script, input, output, params
        self.log_path, self.threads, self.gpus, self.wildcards = log_path, threads, gpus, wildcards
        self.log = logger(log_path)

    @classmethod
    def rule(cls, sm, script: str) -> Job:
        """The job of a Snakemake rule: `sm` is the script's `snakemake` object."""
        return cls(script, sm.input, sm.output, sm.params, sm.log[0] if sm.log else None, sm.threads,
                   int(sm.resources.get("gpu", 0)), sm.wildcards)

    @classmethod
    def by_hand(cls, script: str, input: dict, output: dict, params: dict | None = None, threads: int = 2,
                **wildcards) -> Job:
        """A script run by hand: no log file (stderr only), no GPUs asked for."""
        return cls(script, Names(**input), Names(**output), Names(**(params or {})), None, threads, 0, Names(**wildcards))

    def run(self, main: Callable[[Job], Any]) -> None:
        """main(self) with one-line errors; torch (where the job has loaded it) on the job's threads."""
        with one_line_errors(self.log_path):
            if self.gpus > 1 and relaunch(self.script, processes(self.gpus)):
                return
            if "torch" in sys.modules:
                set_threads(self.threads)
            main(self)


def processes(gpus: int) -> int:
    """How many local processes a job given `gpus` GPUs runs: one per GPU asked for and visible."""
    import torch  # only a job given GPUs asks

    if context().world > 1 or not torch.cuda.is_available():  # already a rank, or CPU only
        return 1
    return max(1, min(int(gpus), torch.cuda.device_count()))


def relaunch(script: str, nprocs: int) -> bool:
    """Run `script` again under torchrun with nprocs local ranks and wait; False if nprocs == 1.

    With more than one GPU the job becomes a single-node torchrun job (each rank re-reads the same
    rule object), and the original process only waits.
    """
    if nprocs <= 1:
        return False
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nprocs}", script]
    p = subprocess.run(cmd)
    if p.returncode != 0:
        raise PipelineError(f"{Path(script).name}: {nprocs} data-parallel ranks failed (exit {p.returncode}); see the log above")
    return True


def section(config_path: str | None, *keys: str) -> dict:
    """By hand: the section of the config file at `config_path` that `keys` name (evaluations, default);
    {} (every key its default) without a file or where the file leaves it out."""
    if config_path is None:
        return {}
    import yaml

    d = yaml.safe_load(Path(config_path).read_text()) or {}
    for k in keys:
        d = d.get(k) or {}
    return d


def outputs_in(folder, names: dict[str, str]) -> dict[str, Path]:
    """By hand: output key -> file name, in `folder` (made if missing)."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    return {k: d / name for k, name in names.items()}
