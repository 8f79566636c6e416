"""Shared fixtures: real Snakemake runs of this repository's workflow in a temporary directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from latentwm.config.dynamics import DynamicsConfig
from latentwm.models.dynamics import network

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, config: dict | None, *args: str, check: bool = True, timeout: int = 900):
    """Run the repo's Snakefile with `workdir` as working directory and `config` as its config.

    Returns the CompletedProcess (stdout and stderr merged into .stdout).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    if config is not None:
        cfg = workdir / "config.yaml"
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd += ["--configfile", str(cfg)]
    cmd += list(args)
    p = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-6000:]}")
    return p


@pytest.fixture
def run_snakemake():
    return snakemake


def job_counts(output: str) -> dict[str, int]:
    """rule -> job count of the 'Job stats' table in Snakemake's output ({} when nothing is to be done)."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def planned_jobs(workdir, config) -> dict[str, int]:
    """rule -> job count of a dry run with `config`."""
    return job_counts(snakemake(workdir, config, "-n", "--quiet", "rules").stdout)


def tiny_config() -> dict:
    return yaml.safe_load((ROOT / "tests" / "tiny_config.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole default DAG (rule all) run once on tests/tiny_config.yaml; tests read its results.

    Tests must not modify this directory; dry runs (-n) with a changed config are fine.
    """
    workdir = tmp_path_factory.mktemp("tiny_run")
    snakemake(workdir, tiny_config(), "--cores", "2")
    return workdir


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """config.yaml as shipped, `snakemake --cores 2`: the README's own pipeline (test_default_config
    checks it; the play page is tested on its results)."""
    workdir = tmp_path_factory.mktemp("default_run")
    # 11-15 minutes on 2 idle cores; the limit only guards against a hang (a busy CI machine took
    # over 30 minutes), so it is far above the time: speed is measured in bench/, not here
    snakemake(workdir, yaml.safe_load((ROOT / "config.yaml").read_text()), "--cores", "2", timeout=4200)
    return workdir


def latent_config() -> dict:
    cfg = tiny_config()
    cfg["dynamics"]["actions"] = "latent"
    cfg["lam"] = {"model": {"codes": 4, "code_dim": 4, "width": 8, "depth": 1},
                  "train": {"steps": 6, "batch_size": 8, "warmup": 2, "log_every": 3, "checkpoint_every": 3},
                  "min_perplexity": 1.0, "val_windows": 8}
    return cfg


@pytest.fixture(scope="session")
def latent_run(tmp_path_factory):
    """The tiny DAG with `dynamics.actions: latent` (tests must not modify it; dry runs are fine)."""
    workdir = tmp_path_factory.mktemp("latent_run")
    snakemake(workdir, latent_config(), "--cores", "2")
    return workdir


def cache_matches_full_forward(model, z, tau):
    """Asserts that a dynamics network fed z (B, T, ...) at levels tau (B, T) through its rollout
    cache (a prefix of two frames committed at once, then one frame per call, each after a call that
    commits nothing: a denoising step) gives its outputs on the whole sequence. Returns the cache."""
    cache, outs = model.new_cache(), []
    with torch.no_grad():
        full = model(z, tau)
        outs.append(model(z[:, :2], tau[:, :2], cache=cache, commit=2))
        for t in range(2, z.shape[1]):
            model(z[:, t : t + 1] + 5, tau[:, t : t + 1], cache=cache, commit=0)
            outs.append(model(z[:, t : t + 1], tau[:, t : t + 1], cache=cache, commit=1))
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-4)
    assert cache.pos == z.shape[1]
    return cache


def conv_model(seed=0, K=2, **kw) -> torch.nn.Module:
    """A 2-block conv on 4x8x8 latents seeing K past frames; the zero-initialised output randomised."""
    torch.manual_seed(seed)
    cfg = DynamicsConfig(arch="conv", latent_channels=4, latent_hw=(8, 8), conv_width=16, conv_blocks=2, conv_frames=K, k_max=4, **kw)
    m = network(cfg.resolve([4, 8, 8], 6))
    with torch.no_grad():
        m.out.weight.normal_(0, 0.1)
    return m.eval()
