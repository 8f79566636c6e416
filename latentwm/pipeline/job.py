"""The job every training rule's script runs in: its config section built once, threads, a log file,
one-line errors, and a relaunch under torchrun when the rule was given more than one GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from latentwm.config.fields import from_dict
from latentwm.core.errors import PipelineError, one_line_errors
from latentwm.core.logs import logger, set_threads
from latentwm.core.ranks import context


def processes(gpus: int) -> int:
    """How many local processes a job given `gpus` GPUs runs: one per GPU asked for and visible."""
    if context().world > 1 or not torch.cuda.is_available():  # already a rank, or CPU only
        return 1
    return max(1, min(int(gpus), torch.cuda.device_count()))


def relaunch(script: str, nprocs: int) -> bool:
    """Run `script` again under torchrun with nprocs local ranks and wait; False if nprocs == 1.

    A rule's script calls this first: with more than one GPU the job becomes a single-node
    torchrun job (each rank re-reads the same rule object), and the original process only waits.
    """
    if nprocs <= 1:
        return False
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nprocs}", script]
    p = subprocess.run(cmd)
    if p.returncode != 0:
        raise PipelineError(f"{Path(script).name}: {nprocs} data-parallel ranks failed (exit {p.returncode}); see the log above")
    return True


def run_stage(script: str, fit, stage_class, section: str, cfg: dict, inputs, out, resume, log_path=None,
              threads: int = 2, gpus: int = 0) -> None:
    """The body of every training rule's script: with more than one GPU the script again under
    torchrun (one rank per GPU), else `fit(stage, inputs, out, resume, log)` of the stage built
    from its config section; any PipelineError as one line in the log."""
    with one_line_errors(log_path):
        if relaunch(script, processes(gpus)):
            return
        set_threads(threads)
        fit(from_dict(stage_class, cfg, section), inputs, out, resume, logger(log_path))


def run_rule(script: str, fit, stage_class, section: str, sm) -> None:
    """run_stage for a Snakemake job: `sm` is the script's `snakemake` object (params.cfg, params.resume)."""
    run_stage(script, fit, stage_class, section, sm.params.cfg, sm.input, sm.output, sm.params.resume, sm.log[0],
              sm.threads, sm.resources.get("gpu", 0))


def run_by_hand(script: str, fit, stage_class, section: str, config_path, inputs, out_dir, outputs: dict[str, str],
                threads: int = 2) -> None:
    """run_stage for a script run by hand: the `section` of the config file at `config_path` (unset keys:
    the defaults), every output file `outputs` names (key -> file name) and resume.pt in `out_dir`."""
    import yaml

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    cfg = (yaml.safe_load(Path(config_path).read_text()) or {}).get(section, {})
    out = SimpleNamespace(**{k: d / name for k, name in outputs.items()})
    run_stage(script, fit, stage_class, section, cfg, inputs, out, d / "resume.pt", None, threads)
