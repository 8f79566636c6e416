"""train_dynamics: latents of the train videos -> dynamics.pt, train_curve.csv, health.json.

Thin: the stage is latentwm.fit_dynamics.fit, built from the `dynamics` section.
"""

from pathlib import Path
from types import SimpleNamespace

from latentwm.distributed import run_stage
from latentwm.fit_dynamics import fit
from latentwm.settings import DynamicsStage


def main(cfg: dict, inputs, out, resume, log_path=None, threads=2, gpus=0) -> None:
    run_stage(__file__, fit, DynamicsStage, "dynamics", cfg, inputs, out, resume, log_path, threads, gpus)


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.params.cfg, sm.input, sm.output, sm.params.resume, sm.log[0], sm.threads, sm.resources.get("gpu", 0))
elif __name__ == "__main__":
    # by hand: python workflow_scripts/train_dynamics.py CONFIG STATS.json LATENTS.zarr... [--val VAL.zarr...] --out DIR
    # data parallel, on one node or many: torchrun [--nnodes ...] --nproc-per-node N <this> ...
    import argparse

    import yaml

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config file; its `dynamics` section is used (unset keys: the defaults)")
    p.add_argument("stats"), p.add_argument("latents", nargs="+")
    p.add_argument("--val", nargs="*", default=[], help="latent stores of the val videos (the held-out loss)")
    p.add_argument("--out", required=True, help="folder for dynamics.pt, train_curve.csv, health.json, resume.pt")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    cfg = (yaml.safe_load(Path(a.config).read_text()) or {}).get("dynamics", {})
    out = SimpleNamespace(checkpoint=d / "dynamics.pt", curve=d / "train_curve.csv", health=d / "health.json")
    main(cfg, SimpleNamespace(latents=a.latents, stats=a.stats, val=a.val), out, d / "resume.pt", None, a.threads)
