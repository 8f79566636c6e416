"""train_refiner: latents of the train videos (val: the held-out loss) -> refiner.pt, train_curve.csv, metrics.json.

Thin: the stage is latentwm.training.fit_refiner.fit, built from the `refiner` section.
"""

from latentwm.config.fields import from_dict
from latentwm.config.refiner import RefinerStage
from latentwm.pipeline.job import Job, outputs_in, section
from latentwm.training.fit_refiner import fit


def main(job: Job) -> None:
    fit(from_dict(RefinerStage, job.params.cfg, "refiner"), job.input, job.output, job.params.resume, job.log)


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":
    # by hand: python workflow_scripts/train_refiner.py CONFIG LATENTS... --val LATENTS... --stats STATS.json --out DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config file; its `refiner` section is used (unset keys: the defaults)")
    p.add_argument("latents", nargs="+", help="latent stores (or encode shards) of the train videos")
    p.add_argument("--val", nargs="*", default=[], help="latent stores of the val videos (the held-out loss)")
    p.add_argument("--stats", required=True, help="the latents' stats.json (results/latents/stats.json)")
    p.add_argument("--out", required=True, help="folder for refiner.pt, train_curve.csv, metrics.json, resume.pt")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    out = outputs_in(a.out, {"checkpoint": "refiner.pt", "curve": "train_curve.csv", "metrics": "metrics.json",
                             "resume": "resume.pt"})
    Job.by_hand(__file__, {"latents": a.latents, "val": a.val, "stats": a.stats}, out,
                {"cfg": section(a.config, "refiner"), "resume": out.pop("resume")}, a.threads).run(main)
