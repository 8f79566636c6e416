"""train_dynamics: latents of the train videos -> dynamics.pt, train_curve.csv, health.json.

Thin: the stage is latentwm.training.fit_dynamics.fit, built from the `dynamics` section.
"""

from types import SimpleNamespace

from latentwm.config.dynamics import DynamicsStage
from latentwm.pipeline.job import run_by_hand, run_rule
from latentwm.training.fit_dynamics import fit

if "snakemake" in globals():
    run_rule(__file__, fit, DynamicsStage, "dynamics", snakemake)  # noqa: F821
elif __name__ == "__main__":
    # by hand: python workflow_scripts/train_dynamics.py CONFIG STATS.json LATENTS.zarr... [--val VAL.zarr...]
    #          [--tokenizer TOKENIZER.pt] --out DIR
    # data parallel, on one node or many: torchrun [--nnodes ...] --nproc-per-node N <this> ...
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config file; its `dynamics` section is used (unset keys: the defaults)")
    p.add_argument("stats"), p.add_argument("latents", nargs="+")
    p.add_argument("--val", nargs="*", default=[], help="latent stores of the val videos (the held-out loss)")
    p.add_argument("--out", required=True, help="folder for dynamics.pt, train_curve.csv, health.json, resume.pt")
    p.add_argument("--tokenizer", help="the tokenizer that made the latents (needed by dynamics.objective.pixel_weight > 0)")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    run_by_hand(__file__, fit, DynamicsStage, "dynamics", a.config, SimpleNamespace(latents=a.latents, stats=a.stats, val=a.val, tokenizer=a.tokenizer), a.out,
                {"checkpoint": "dynamics.pt", "curve": "train_curve.csv", "health": "health.json"}, a.threads)
