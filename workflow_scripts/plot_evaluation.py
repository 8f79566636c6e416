"""plot_evaluation: results/eval/{evaluation}/ -> results/plots/{evaluation}/ (verdict and table, a
figure per metric of the registry, paired differences, speed, samples page)."""

import json
from pathlib import Path

from latentwm.core.errors import one_line_errors
from latentwm.figures import plots
from latentwm.figures.samples import samples_html


def main(summary_json, samples_dir, out: dict, log_path=None) -> None:
    with one_line_errors(log_path):
        summary = json.loads(Path(summary_json).read_text())
        name = summary["evaluation"]
        plots.summary_table_html(summary, out["table"])
        plots.metrics_by_step(summary, out["by_step"])
        plots.paired_differences(summary, out["paired"], name)
        plots.speed_quality(summary, out["speed"], f"{name}: sampler speed against quality")
        index = json.loads((Path(samples_dir) / "index.json").read_text())
        items = []
        for s in index:
            panels = " | ".join(s["panels"])
            items.append((f"{s['title']}: {panels} (grey frame: context, red: predicted)", Path(samples_dir) / s["gif"]))
            items.append((f"{s['title']}: filmstrip", Path(samples_dir) / s["png"]))
        samples_html(items, out["samples"], f"{name}: sample rollouts on test videos")


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input.summary, sm.input.samples, dict(sm.output), sm.log[0])
else:  # by hand: python workflow_scripts/plot_evaluation.py results/eval/default OUT_DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("eval_dir"), p.add_argument("out")
    a = p.parse_args()
    e, d = Path(a.eval_dir), Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    names = {"table": "summary.html", "by_step": "by_step", "paired": "paired_differences.png",
             "speed": "speed_quality.png", "samples": "samples.html"}
    main(e / "summary.json", e / "samples", {k: d / v for k, v in names.items()})
