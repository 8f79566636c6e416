"""plot_refiner: results/refiner/eval/ -> results/plots/refiner/ (the page: verdict, tables, figure, filmstrips)."""

import json
from pathlib import Path

from latentwm.core.errors import one_line_errors
from latentwm.figures.refiner import by_position, page


def main(summary_json, samples_dir, out: dict, log_path=None) -> None:
    with one_line_errors(log_path):
        summary = json.loads(Path(summary_json).read_text())
        by_position(summary, out["figure"])
        page(summary, out["figure"], sorted(Path(samples_dir).glob("*.png")), out["page"])


if "snakemake" in globals():
    sm = snakemake  # noqa: F821
    main(sm.input.summary, sm.input.samples, dict(sm.output), sm.log[0])
elif __name__ == "__main__":  # by hand: python workflow_scripts/plot_refiner.py results/refiner/eval OUT_DIR
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("eval_dir"), p.add_argument("out")
    a = p.parse_args()
    e, d = Path(a.eval_dir), Path(a.out)
    d.mkdir(parents=True, exist_ok=True)
    main(e / "summary.json", e / "samples", {"figure": d / "by_position.png", "page": d / "summary.html"})
