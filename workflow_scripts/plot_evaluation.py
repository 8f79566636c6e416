"""plot_evaluation: results/eval/{evaluation}/ -> results/plots/{evaluation}/ (verdict and table, a
figure per metric of the registry, paired differences, speed, samples page)."""

import json
from pathlib import Path

from latentwm.figures import plots
from latentwm.figures.samples import samples_html
from latentwm.pipeline.job import Job, outputs_in


def main(job: Job) -> None:
    out, samples_dir = job.output, Path(job.input.samples)
    summary = json.loads(Path(job.input.summary).read_text())
    name = summary["evaluation"]
    plots.summary_table_html(summary, out.table)
    plots.metrics_by_step(summary, out.by_step)
    plots.paired_differences(summary, out.paired, name)
    plots.speed_quality(summary, out.speed, f"{name}: sampler speed against quality")
    index = json.loads((samples_dir / "index.json").read_text())
    items = []
    for s in index:
        panels = " | ".join(s["panels"])
        items.append((f"{s['title']}: {panels} (grey frame: context, red: predicted)", samples_dir / s["gif"]))
        items.append((f"{s['title']}: filmstrip", samples_dir / s["png"]))
    samples_html(items, out.samples, f"{name}: sample rollouts on test videos")


if "snakemake" in globals():
    Job.rule(snakemake, __file__).run(main)  # noqa: F821
elif __name__ == "__main__":  # by hand: python workflow_scripts/plot_evaluation.py results/eval/default OUT_DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("eval_dir"), p.add_argument("out")
    a = p.parse_args()
    e = Path(a.eval_dir)
    names = {"table": "summary.html", "by_step": "by_step", "paired": "paired_differences.png",
             "speed": "speed_quality.png", "samples": "samples.html"}
    Job.by_hand(__file__, {"summary": e / "summary.json", "samples": e / "samples"}, outputs_in(a.out, names)).run(main)
