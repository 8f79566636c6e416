"""train_tokenizer: frames of the train videos -> tokenizer.pt, metrics.json, train_curve.csv,
reconstructions.png.

Thin: the stage is latentwm.tokenizer.fit, built from the `tokenizer` section. It resumes from
the resume file after a kill (same config and inputs only) and fails with one line, writing no
output, when the tokenizer collapsed on the val frames.
"""

from pathlib import Path
from types import SimpleNamespace

from latentwm.distributed import run_stage
from latentwm.settings import TokenizerStage
from latentwm.tokenizer import fit


def main(cfg: dict, inputs, out, resume, log_path=None, threads=2, gpus=0) -> None:
    run_stage(__file__, fit, TokenizerStage, "tokenizer", cfg, inputs, out, resume, log_path, threads, gpus)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.params.cfg, sm.input, sm.output, sm.params.resume, sm.log[0], sm.threads, sm.resources.get("gpu", 0))
elif __name__ == "__main__":
    # by hand: python workflow_scripts/train_tokenizer.py CONFIG --train FRAMES.zarr... --val FRAMES.zarr... --out DIR
    import argparse

    import yaml

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config file; its `tokenizer` section is used (unset keys: the defaults)")
    p.add_argument("--train", nargs="+", required=True), p.add_argument("--val", nargs="+", required=True)
    p.add_argument("--out", required=True, help="folder for tokenizer.pt, metrics.json, train_curve.csv, reconstructions.png")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    cfg = (yaml.safe_load(Path(a.config).read_text()) or {}).get("tokenizer", {})
    out = SimpleNamespace(checkpoint=d / "tokenizer.pt", metrics=d / "metrics.json", curve=d / "train_curve.csv",
                          recon=d / "reconstructions.png")
    main(cfg, SimpleNamespace(train=a.train, val=a.val), out, d / "resume.pt", None, a.threads)
