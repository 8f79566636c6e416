"""train_refiner: latents of the train videos (val: the held-out loss) -> refiner.pt, train_curve.csv, metrics.json.

Thin: the stage is latentwm.training.fit_refiner.fit, built from the `refiner` section.
"""

from types import SimpleNamespace

from latentwm.config.refiner import RefinerStage
from latentwm.pipeline.job import run_by_hand, run_rule
from latentwm.training.fit_refiner import fit

if "snakemake" in globals():
    run_rule(__file__, fit, RefinerStage, "refiner", snakemake)  # noqa: F821
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
    run_by_hand(__file__, fit, RefinerStage, "refiner", a.config, SimpleNamespace(latents=a.latents, val=a.val, stats=a.stats),
                a.out, {"checkpoint": "refiner.pt", "curve": "train_curve.csv", "metrics": "metrics.json"}, a.threads)
