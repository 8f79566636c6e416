"""train_tokenizer: frames of the train videos -> tokenizer.pt, metrics.json, train_curve.csv,
reconstructions.png.

Thin: the stage is latentwm.training.fit_tokenizer.fit, built from the `tokenizer` section. It resumes from
the resume file after a kill (same config and inputs only) and fails with one line, writing no
output, when the tokenizer collapsed on the val frames.
"""

from latentwm.config.fields import from_dict
from latentwm.config.tokenizer import TokenizerStage
from latentwm.pipeline.job import Job, outputs_in, section
from latentwm.training.fit_tokenizer import fit


def main(job: Job) -> None:
    fit(from_dict(TokenizerStage, job.params.cfg, "tokenizer"), job.input, job.output, job.params.resume, job.log)


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":
    # by hand: python workflow_scripts/train_tokenizer.py CONFIG --train FRAMES.zarr... --val FRAMES.zarr... --out DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config file; its `tokenizer` section is used (unset keys: the defaults)")
    p.add_argument("--train", nargs="+", required=True), p.add_argument("--val", nargs="+", required=True)
    p.add_argument("--out", required=True, help="folder for tokenizer.pt, metrics.json, train_curve.csv, reconstructions.png")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    out = outputs_in(a.out, {"checkpoint": "tokenizer.pt", "metrics": "metrics.json", "curve": "train_curve.csv",
                             "recon": "reconstructions.png", "resume": "resume.pt"})
    Job.by_hand(__file__, {"train": a.train, "val": a.val}, out,
                {"cfg": section(a.config, "tokenizer"), "resume": out.pop("resume")}, a.threads).run(main)
