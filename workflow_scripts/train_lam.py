"""train_lam: latents of the train videos -> lam.pt, train_curve.csv, metrics.json.

Thin: the stage is latentwm.lam.fit, built from the `lam` section.
"""

from pathlib import Path
from types import SimpleNamespace

from latentwm.distributed import run_stage
from latentwm.lam import fit
from latentwm.settings import LamStage


def main(cfg: dict, inputs, out, resume, log_path=None, threads=2, gpus=0) -> None:
    run_stage(__file__, fit, LamStage, "lam", cfg, inputs, out, resume, log_path, threads, gpus)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.params.cfg, sm.input, sm.output, sm.params.resume, sm.log[0], sm.threads, sm.resources.get("gpu", 0))
elif __name__ == "__main__":
    # by hand: python workflow_scripts/train_lam.py CONFIG STATS.json LATENTS.zarr... --val VAL.zarr... --out DIR
    import argparse

    import yaml

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config file; its `lam` section is used (unset keys: the defaults)")
    p.add_argument("stats"), p.add_argument("latents", nargs="+")
    p.add_argument("--val", nargs="*", default=[], help="latent stores of the val videos (usage, perplexity, collapse)")
    p.add_argument("--out", required=True, help="folder for lam.pt, train_curve.csv, metrics.json, resume.pt")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    cfg = (yaml.safe_load(Path(a.config).read_text()) or {}).get("lam", {})
    out = SimpleNamespace(checkpoint=d / "lam.pt", curve=d / "train_curve.csv", metrics=d / "metrics.json")
    main(cfg, SimpleNamespace(latents=a.latents, stats=a.stats, val=a.val), out, d / "resume.pt", None, a.threads)
