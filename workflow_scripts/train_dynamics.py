"""train_dynamics: latents of the train videos -> dynamics.pt, train_curve.csv, health.json.

Thin: the stage is latentwm.training.fit_dynamics.fit, built from the `dynamics` section.
"""

from latentwm.config.dynamics import DynamicsStage
from latentwm.config.fields import from_dict
from latentwm.pipeline.job import Job, outputs_in, section
from latentwm.training.fit_dynamics import fit


def main(job: Job) -> None:
    fit(from_dict(DynamicsStage, job.params.cfg, "dynamics"), job.input, job.output, job.params.resume, job.log)


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
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
    out = outputs_in(a.out, {"checkpoint": "dynamics.pt", "curve": "train_curve.csv", "health": "health.json",
                             "resume": "resume.pt"})
    Job.by_hand(__file__, {"latents": a.latents, "stats": a.stats, "val": a.val, "tokenizer": a.tokenizer}, out,
                {"cfg": section(a.config, "dynamics"), "resume": out.pop("resume")}, a.threads).run(main)
