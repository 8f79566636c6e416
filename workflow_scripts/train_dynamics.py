"""train_dynamics: latents of the train videos -> results/dynamics/dynamics.pt (+ curve, health).

Thin: the wiring lives in latentwm.fit_dynamics.
"""

from pathlib import Path

from latentwm.distributed import processes, relaunch
from latentwm.errors import one_line_errors
from latentwm.fit_dynamics import fit
from latentwm.logs import logger, set_threads


def main(latents, stats, cfg, out, curve, health, resume, log_path=None, threads=2):
    with one_line_errors(log_path):
        set_threads(threads)
        fit(latents, stats, cfg, out, curve, health, resume, logger(log_path))


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    # more than one GPU given: this script again under torchrun, one rank per GPU
    with one_line_errors(sm.log[0]):
        launched = relaunch(__file__, processes(sm.resources.get("gpu", 0)))
    if not launched:
        main(
            sm.input.latents,
            sm.input.stats,
            sm.params.cfg,
            sm.output.checkpoint,
            sm.output.curve,
            sm.output.health,
            sm.params.resume,
            sm.log[0],
            sm.threads,
        )
elif __name__ == "__main__":
    # by hand: python workflow_scripts/train_dynamics.py config.yaml STATS.json LATENTS.zarr... --out DIR
    # data parallel, on one node or many: torchrun [--nnodes ...] --nproc-per-node N <this> ...
    import argparse

    import yaml

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config", help="a config.yaml; its `dynamics` section is used")
    p.add_argument("stats"), p.add_argument("latents", nargs="+")
    p.add_argument("--out", default="results/dynamics"), p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(Path(a.config).read_text())["dynamics"]
    main(a.latents, a.stats, cfg, d / "dynamics.pt", d / "train_curve.csv", d / "health.json", d / "resume.pt", None, a.threads)
