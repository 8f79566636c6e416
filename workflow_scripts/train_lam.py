"""train_lam: frames of the train videos -> lam.pt, train_curve.csv, metrics.json.

Thin: the stage is latentwm.training.fit_lam.fit, built from the `lam` section.
"""

from latentwm.config.fields import from_dict
from latentwm.config.lam import LamStage
from latentwm.pipeline.job import Job, outputs_in, section
from latentwm.training.fit_lam import fit


def main(job: Job) -> None:
    fit(from_dict(LamStage, job.params.cfg, "lam"), job.input, job.output, job.params.resume, job.log)


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":
    # by hand: python workflow_scripts/train_lam.py CONFIG FRAMES.zarr... --val VAL.zarr... --out DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config file; its `lam` section is used (unset keys: the defaults)")
    p.add_argument("frames", nargs="+", help="frame stores of the train videos")
    p.add_argument("--val", nargs="*", default=[], help="frame stores of the val videos (usage, perplexity, collapse)")
    p.add_argument("--out", required=True, help="folder for lam.pt, train_curve.csv, metrics.json, resume.pt")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    out = outputs_in(a.out, {"checkpoint": "lam.pt", "curve": "train_curve.csv", "metrics": "metrics.json",
                             "resume": "resume.pt"})
    Job.by_hand(__file__, {"frames": a.frames, "val": a.val}, out,
                {"cfg": section(a.config, "lam"), "resume": out.pop("resume")}, a.threads).run(main)
