"""The refiner's page: the verdict in words first, the table per spacing (each condition per position
between two keyframes, the refiners' paired differences to the baselines), a figure of PSNR and
sharpness by position, and the filmstrips; from summary.json alone (latentwm.evaluation.refiner)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from latentwm.figures.plots import _fmt, _save, _table, plt

STYLE = ("<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;font-size:12px}"
         "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}</style>")


def by_position(summary: dict, path) -> None:
    """PSNR and sharpness per position between two keyframes, one column per scored spacing."""
    spacings = summary["spacings"]
    fig, axes = plt.subplots(2, len(spacings), figsize=(4.2 * len(spacings), 6), squeeze=False)
    for j, (s, e) in enumerate(spacings.items()):
        for i, m in enumerate(("psnr", "sharpness")):
            ax = axes[i, j]
            for c, d in e["conditions"].items():
                pos = range(1, len(d[m]["mean"]) + 1)
                ax.plot(pos, d[m]["mean"], marker="o", label=c, lw=2.2 if c.startswith("refiner") else 1.2)
                ax.fill_between(pos, d[m]["ci_low"], d[m]["ci_high"], alpha=0.15)
            ax.set_title(f"spacing {s}: {m}", fontsize=9)
            ax.set_xlabel("position between two keyframes")
            if m == "sharpness":
                ax.axhline(1.0, color="k", lw=0.6, ls=":")
    axes[0, -1].legend(fontsize=7)
    _save(fig, path)


def _tables(s: str, e: dict) -> str:
    positions = range(1, len(next(iter(e["conditions"].values()))["psnr"]["mean"]) + 1)
    rows = [[c, m, *(f"{_fmt(d[m]['mean'][p - 1])} [{_fmt(d[m]['ci_low'][p - 1])}, {_fmt(d[m]['ci_high'][p - 1])}]"
                     for p in positions)] for c, d in e["conditions"].items() for m in d]
    paired = [[r, b, m, *(f"{v['mean'][p - 1]:+.3f} [{v['ci_low'][p - 1]:+.3f}, {v['ci_high'][p - 1]:+.3f}]"
                          for p in positions), "yes" if v["beats_every_position"] else "no"]
              for r, by in e["paired"].items() for b, ms in by.items() for m, v in ms.items()]
    head = [f"position {p}" for p in positions]
    return (f"<h4>Spacing {html.escape(s)} ({e['windows']} windows; mean [95% CI] per position)</h4>"
            + _table(["condition", "metric", *head], rows)
            + "<p>The refiners minus each baseline, paired by window:</p>"
            + _table(["refiner", "baseline", "metric", *head, "above 0 at every position"], paired))


def page(summary: dict, figure, filmstrips: list[Path], path) -> None:
    verdict = "".join(f"<li>{html.escape(v)}</li>" for v in summary["verdict"])
    described = "".join(f"<li><b>{html.escape(m['name'])}</b>: {html.escape(m['description'])}</li>"
                        for m in summary["metrics"])
    images = "".join(f"<figure><img src='data:image/png;base64,{base64.b64encode(Path(f).read_bytes()).decode()}'>"
                     f"<figcaption>{html.escape(Path(f).stem)}</figcaption></figure>" for f in [figure, *filmstrips])
    Path(path).write_text(
        f"<html><head><meta charset='utf-8'>{STYLE}</head><body>"
        f"<h3>Verdict: keyframe imputation on {summary['windows']} test windows</h3><ul>{verdict}</ul>"
        "<p style='font-size:11px'>A refiner beats a baseline at a spacing when the 95% bootstrap interval of the "
        "paired difference lies above 0 at every position between two keyframes; a blurred refiner beats nothing. "
        "crossfade and nearest use the real frames; refiner, refiner_levels, linear and ceiling pass through the "
        "tokenizer; refiner_px adds the refiner's change to linear, decoded, onto the crossfade.</p>"
        + "".join(_tables(s, e) for s, e in summary["spacings"].items())
        + f"<h4>Metrics</h4><ul>{described}</ul>{images}"
        f"<p style='font-size:11px'>refiner steps {summary['refiner_steps']}, noise {summary['noise']}, settings: "
        f"{html.escape(str(summary['config']))}</p></body></html>")
