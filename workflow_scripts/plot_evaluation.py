"""plot_evaluation: results/eval/{evaluation}/ -> results/plots/{evaluation}/ (metric plots, table, samples page)."""

import json
from pathlib import Path

from latentwm import plots
from latentwm.errors import one_line_errors


def main(metrics_csv, summary_json, samples_dir, out: dict, log_path=None) -> None:
    with one_line_errors(log_path):
        summary = json.loads(Path(summary_json).read_text())
        name = summary["evaluation"]
        for metric in ("psnr", "ssim", "latent_mse"):
            plots.metric_by_step(metrics_csv, out[metric], metric, f"{name}: {metric} against horizon step")
        plots.speed_quality(summary, out["speed"], f"{name}: sampler speed against quality")
        plots.summary_table_html(summary, out["table"])
        index = json.loads((Path(samples_dir) / "index.json").read_text())
        items = []
        for s in index:
            panels = " | ".join(s["panels"])
            items.append((f"{s['title']}: {panels} (grey frame: context, red: predicted)", Path(samples_dir) / s["gif"]))
            items.append((f"{s['title']}: filmstrip", Path(samples_dir) / s["png"]))
        plots.samples_html(items, out["samples"], f"{name}: sample rollouts on test videos")


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input.metrics, sm.input.summary, sm.input.samples, dict(sm.output), sm.log[0])
else:  # by hand: python workflow_scripts/plot_evaluation.py results/eval/default OUT_DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("eval_dir"), p.add_argument("out")
    a = p.parse_args()
    e, d = Path(a.eval_dir), Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    names = {"psnr": "psnr_by_step.png", "ssim": "ssim_by_step.png", "latent_mse": "latent_mse_by_step.png",
             "speed": "speed_quality.png", "table": "summary.html", "samples": "samples.html"}
    main(e / "metrics.csv", e / "summary.json", e / "samples", {k: d / v for k, v in names.items()})
