"""plot_training: the training curves of the tokenizer and the dynamics model -> results/plots/training/*.png."""

from latentwm.figures import plots
from latentwm.pipeline.job import Job, outputs_in


def main(job: Job) -> None:
    curves, out = job.input, job.output
    plots.training_curves(curves.tokenizer, out.tokenizer, "tokenizer training")
    plots.training_curves(curves.dynamics, out.dynamics, "dynamics training")
    plots.per_timestep_loss(curves.dynamics, out.dynamics_per_timestep, "dynamics loss per frame position")


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/plot_training.py TOKENIZER_CURVE.csv DYNAMICS_CURVE.csv OUT_DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("tokenizer"), p.add_argument("dynamics"), p.add_argument("out")
    a = p.parse_args()
    names = ("tokenizer", "dynamics", "dynamics_per_timestep")
    Job.by_hand(__file__, {"tokenizer": a.tokenizer, "dynamics": a.dynamics},
                outputs_in(a.out, {n: f"{n}.png" for n in names})).run(main)
