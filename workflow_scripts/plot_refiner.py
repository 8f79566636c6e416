"""plot_refiner: results/refiner/eval/ -> results/plots/refiner/ (the page: verdict, tables, figure, filmstrips)."""

import json
from pathlib import Path

from latentwm.figures.refiner import by_position, page
from latentwm.pipeline.job import Job, outputs_in


def main(job: Job) -> None:
    summary = json.loads(Path(job.input.summary).read_text())
    by_position(summary, job.output.figure)
    page(summary, job.output.figure, sorted(Path(job.input.samples).glob("*.png")), job.output.page)


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/plot_refiner.py results/refiner/eval OUT_DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("eval_dir"), p.add_argument("out")
    a = p.parse_args()
    e = Path(a.eval_dir)
    Job.by_hand(__file__, {"summary": e / "summary.json", "samples": e / "samples"},
                outputs_in(a.out, {"figure": "by_position.png", "page": "summary.html"})).run(main)
