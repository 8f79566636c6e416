"""plot_training: the training curves of the tokenizer and the dynamics model -> results/plots/training/*.png."""

from latentwm.core.errors import one_line_errors
from latentwm.figures import plots


def main(tokenizer_curve, dynamics_curve, out: dict, log_path=None) -> None:
    with one_line_errors(log_path):
        plots.training_curves(tokenizer_curve, out["tokenizer"], "tokenizer training")
        plots.training_curves(dynamics_curve, out["dynamics"], "dynamics training")
        plots.per_timestep_loss(dynamics_curve, out["dynamics_per_timestep"], "dynamics loss per frame position")


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input.tokenizer, sm.input.dynamics, dict(sm.output), sm.log[0])
else:  # by hand: python workflow_scripts/plot_training.py TOKENIZER_CURVE.csv DYNAMICS_CURVE.csv OUT_DIR
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("tokenizer"), p.add_argument("dynamics"), p.add_argument("out")
    a = p.parse_args()
    d = Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    names = ("tokenizer", "dynamics", "dynamics_per_timestep")
    main(a.tokenizer, a.dynamics, {n: d / f"{n}.png" for n in names})
