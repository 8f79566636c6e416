"""train_tokenizer: frames of the train videos -> tokenizer.pt, metrics.json, train_curve.csv,
reconstructions.png.

Thin: the stage is latentwm.training.fit_tokenizer.fit, built from the `tokenizer` section. It resumes from
the resume file after a kill (same config and inputs only) and fails with one line, writing no
output, when the tokenizer collapsed on the val frames.
"""

from types import SimpleNamespace

from latentwm.config.tokenizer import TokenizerStage
from latentwm.pipeline.job import run_by_hand, run_rule
from latentwm.training.fit_tokenizer import fit

if "snakemake" in globals():
    run_rule(__file__, fit, TokenizerStage, "tokenizer", snakemake)  # noqa: F821
elif __name__ == "__main__":
    # by hand: python workflow_scripts/train_tokenizer.py CONFIG --train FRAMES.zarr... --val FRAMES.zarr... --out DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config file; its `tokenizer` section is used (unset keys: the defaults)")
    p.add_argument("--train", nargs="+", required=True), p.add_argument("--val", nargs="+", required=True)
    p.add_argument("--out", required=True, help="folder for tokenizer.pt, metrics.json, train_curve.csv, reconstructions.png")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    run_by_hand(__file__, fit, TokenizerStage, "tokenizer", a.config, SimpleNamespace(train=a.train, val=a.val), a.out,
                {"checkpoint": "tokenizer.pt", "metrics": "metrics.json", "curve": "train_curve.csv",
                 "recon": "reconstructions.png"}, a.threads)
