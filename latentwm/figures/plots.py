"""The figures of the pipeline: training curves and rollout metrics (samples: latentwm.figures.samples).

Figures are matplotlib (Agg, no display) saved as PNG; sample videos are GIFs (pillow), shown
in the report through a small self-contained HTML page (the report shows PNG/SVG/HTML inline).
Inputs are the declared CSV/JSON outputs of the stages, never the models.
"""

from __future__ import annotations

import html
import itertools
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

matplotlib.use("Agg")

# How each condition is drawn: baselines in grey/black so the model lines stand out.
STYLE = {
    "ceiling": dict(color="black", linestyle="--", linewidth=1.5),
    "copy_last": dict(color="grey", linestyle=":", linewidth=2),
    "copy_last_pixels": dict(color="dimgrey", linestyle="-", linewidth=1),
    "copy_previous": dict(color="silver", linestyle=":", linewidth=2),
    "motion_oracle": dict(color="black", linestyle="-.", linewidth=1),
    "teacher_forced": dict(linestyle="-.", linewidth=1.2),
    "model_mean": dict(linestyle="--", linewidth=1.5, marker="s", markersize=3),
    "model_best": dict(linestyle=(0, (1, 1)), linewidth=1.5, marker="^", markersize=3),
    "model": dict(linestyle="-", linewidth=2, marker="o", markersize=3),
}


def _save(fig, path) -> None:
    # a suptitle keeps a fixed strip at the top: tight_layout alone lets a tall figure's column titles run into it
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()) if fig.get_suptitle() else None)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _empty(path, text: str) -> None:
    """A figure that says why there is nothing to draw, instead of a missing output."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    ax.axis("off")
    _save(fig, path)


# ---------------------------------------------------------------- training


def reconstructions(path, frames, recon, n: int = 8) -> None:
    """Originals (row 1) above their reconstructions (row 2): uint8 (N, 3, H, W) each."""
    n = min(n, len(frames))
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.6), squeeze=False)
    for i in range(n):
        for row, img in enumerate((frames[i], recon[i])):
            ax = axes[row, i]
            ax.imshow(np.asarray(img).transpose(1, 2, 0), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel("reconstruction")
    _save(fig, path)


def _loss_columns(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(loss and its parts, baselines such as copy_last_loss); per-timestep loss_t_* excluded."""
    parts = [c for c in df.columns if (c == "loss" or c.startswith("loss_")) and not c.startswith("loss_t_")]
    baselines = [c for c in df.columns if c.endswith("_loss") and c not in parts]
    return parts, baselines


def training_curves(curve_csv, path, title: str) -> None:
    """Loss and parts (baselines dashed), grad norm, learning rate, speed, memory against step."""
    df = pd.read_csv(curve_csv)
    if "step" not in df or "loss" not in df or df["loss"].dropna().empty:
        return _empty(path, f"{title}: {curve_csv} has no logged loss (too few steps to log?)")
    parts, baselines = _loss_columns(df)
    panels = [("loss", parts + baselines)] + [(c, [c]) for c in ("grad_norm", "lr", "batches_per_s", "memory_mb") if c in df]
    other = [c for c in df.columns if c not in {"step", *parts, *baselines, "grad_norm", "lr", "batches_per_s", "memory_mb"}
             and not c.startswith("loss_t_") and pd.api.types.is_numeric_dtype(df[c])]
    if other:
        panels.append(("other logged values", other))
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, columns) in zip(axes.flat, panels):
        for c in columns:
            d = df[["step", c]].dropna()
            style = dict(linestyle="--", color="grey") if c in baselines else {}
            ax.plot(d["step"], d[c], label=c, **style)
        if name == "loss" and (df[parts + baselines] > 0).all().all():
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        if len(columns) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title)
    _save(fig, path)


def per_timestep_loss(curve_csv, path, title: str, points: int = 4) -> None:
    """Loss at each frame position of the sequence (loss_t_0..), at a few points in training."""
    df = pd.read_csv(curve_csv)
    cols = sorted((c for c in df.columns if c.startswith("loss_t_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    if not cols:
        return _empty(path, f"{title}: {curve_csv} has no per-timestep loss columns (loss_t_*)")
    rows = df.dropna(subset=cols, how="all")
    picks = sorted(set(np.linspace(0, len(rows) - 1, min(points, len(rows))).round().astype(int)))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    cmap = plt.get_cmap("viridis")
    for j, i in enumerate(picks):
        r = rows.iloc[i]
        t = [int(c.rsplit("_", 1)[1]) for c in cols if not pd.isna(r[c])]
        ax.plot(t, [r[c] for c in cols if not pd.isna(r[c])], marker="o", color=cmap(j / max(1, len(picks) - 1)),
                label=f"step {int(r['step'])}")
    ax.set_xlabel("frame position in the training sequence")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)


# ---------------------------------------------------------------- evaluation


def _axis_label(m: dict) -> str:
    """'psnr (dB, higher is better)' from a summary.json metrics entry."""
    better = {True: "higher is better", False: "lower is better", None: f"ideal {m.get('ideal')}"}[m["higher_is_better"]]
    return f"{m['name']} ({m['unit'] + ', ' if m['unit'] else ''}{better})"


def _styles(conditions: dict) -> dict[str, dict]:
    """Condition label -> matplotlib style; conditions without a fixed colour get the next of tab10
    (round again past ten)."""
    colors = itertools.cycle(plt.get_cmap("tab10").colors)
    out = {}
    for name, c in conditions.items():
        style = dict(STYLE.get(c["condition"], {}))
        if "color" not in style:
            style["color"] = next(colors)
        out[name] = style
    return out


def metric_by_step(summary: dict, path, metric: str, title: str) -> None:
    """Mean of `metric` per horizon step for every condition, with its bootstrap 95% interval as a band."""
    m = next(x for x in summary["metrics"] if x["name"] == metric)
    cond = summary["conditions"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (name, c), style in zip(cond.items(), _styles(cond).values()):
        mean, lo, hi = (np.array(c[k][metric], dtype=float) for k in ("per_step", "ci_low", "ci_high"))
        if np.isnan(mean).all():
            continue
        steps = np.arange(1, len(mean) + 1)
        ax.plot(steps, mean, label=name, **style)
        ax.fill_between(steps, lo, hi, color=style["color"], alpha=0.15)
    if m["ideal"] is not None:
        ax.axhline(m["ideal"], color="green", linewidth=0.8, alpha=0.6)
    for _, op, t in m["flags"]:
        ax.axhline(t, color="red", linewidth=0.8, linestyle=":", alpha=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("horizon step (1 = first predicted frame)")
    ax.set_ylabel(_axis_label(m))
    ax.set_title(f"{title}\n{m['description']}", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


def metrics_by_step(summary: dict, out_dir) -> list[Path]:
    """One metric_by_step figure per metric of the summary (the registry): out_dir/{metric}.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in summary["metrics"]:
        paths.append(out_dir / f"{m['name']}.png")
        metric_by_step(summary, paths[-1], m["name"], f"{summary['evaluation']}: {m['name']} against horizon step")
    return paths


def paired_differences(summary: dict, path, title: str) -> None:
    """Per metric: each paired condition minus its baseline per step, with the bootstrap 95% interval."""
    cond = {n: c for n, c in summary["conditions"].items() if "vs_baseline" in c}
    ms = summary["metrics"]
    if not cond:
        return _empty(path, f"{title}: no condition has a baseline in this evaluation")
    cols = min(3, len(ms))
    rows = math.ceil(len(ms) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.3 * rows), squeeze=False)
    styles = _styles(summary["conditions"])
    for ax, m in zip(axes.flat, ms):
        for name, c in cond.items():
            r = c["vs_baseline"][m["name"]]
            d, lo, hi = (np.array(r[k], dtype=float) for k in ("diff", "ci_low", "ci_high"))
            steps = np.arange(1, len(d) + 1)
            ax.plot(steps, d, label=f"{name} - {c['baseline']}", **styles[name])
            ax.fill_between(steps, lo, hi, color=styles[name]["color"], alpha=0.15)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(_axis_label(m), fontsize=9)
        ax.set_xlabel("horizon step")
    axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(ms) :]:
        ax.axis("off")
    fig.suptitle(f"{title}: condition minus its baseline, paired by window (band: 95% bootstrap interval)", fontsize=10)
    _save(fig, path)


def speed_quality(summary: dict, path, title: str) -> None:
    """Each sampler's frames/s against its mean PSNR, with the baselines as horizontal lines."""
    cond = summary["conditions"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in cond.items():
        if c["condition"] == "model":
            ax.scatter(c["frames_per_s"], c["mean"]["psnr"], s=60, zorder=3)
            ax.annotate(c["sampler"], (c["frames_per_s"], c["mean"]["psnr"]), textcoords="offset points", xytext=(6, 4))
    for name in ("ceiling", "copy_last"):
        ax.axhline(cond[name]["mean"]["psnr"], label=name, **{k: v for k, v in STYLE[name].items() if k != "marker"})
    ax.set_xscale("log")
    ax.set_xlabel("rollout speed (predicted frames / s, log scale)")
    ax.set_ylabel("mean PSNR over the horizon (dB)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, path)


def _fmt(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rows) + "</table>")


def summary_table_html(summary: dict, path) -> None:
    """The verdict first, then per condition the headline metrics with intervals, per-video means, checks."""
    ms = summary["metrics"]
    head_ms = [m for m in ms if m["headline"]]
    cond = summary["conditions"]
    horizon = len(next(iter(cond.values()))["per_step"][ms[0]["name"]])
    verdict = "".join(f"<li>{html.escape(v)}</li>" for v in summary["verdict"])
    head = ["condition", "baseline", "windows"]
    for m in head_ms:
        head += [f"{m['name']} step 1 [95% CI]", f"{m['name']} step {horizon}", f"{m['name']} mean"]
        if m["higher_is_better"] is not None:
            head.append(f"{m['name']}: beats baseline at steps 1..k, k =")
    head += ["frames/s", "gap to ceiling at step 1 (dB)"]
    body = []
    for name, c in cond.items():
        cells = [name, c["baseline"] or "", str(c["windows"])]
        for m in head_ms:
            n = m["name"]
            cells += [f"{_fmt(c['per_step'][n][0])} [{_fmt(c['ci_low'][n][0])}, {_fmt(c['ci_high'][n][0])}]",
                      _fmt(c["per_step"][n][-1]), _fmt(c["mean"][n])]
            if m["higher_is_better"] is not None:
                cells.append(str(c["verdict"].get("beats_steps", {}).get(n, "")))
        cells += [f"{c['frames_per_s']:.1f}" if "frames_per_s" in c else "", _fmt(c.get("psnr_gap_to_ceiling_step1"))]
        body.append(cells)
    per_video = []
    for m in head_ms:
        rows = [[name, video, *map(_fmt, steps)] for name, by in summary["per_video"].get(m["name"], {}).items()
                for video, steps in by.items()]
        per_video.append(f"<h4>{html.escape(m['name'])} per test video (mean over its windows)</h4>"
                         + _table(["condition", "video", *(f"step {k}" for k in range(1, horizon + 1))], rows))
    described = "".join(f"<li><b>{html.escape(m['name'])}</b>: {html.escape(m['description'])}</li>" for m in ms)
    checks = "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in summary["checks"].items())
    b = summary.get("bootstrap", {})
    acts = summary.get("actions") or {}
    sweep = acts.get("sweep_flow") or {}
    actions = "" if not acts else (
        "<h4>Actions</h4><ul>" + "".join(f"<li>{html.escape(v)}</li>" for v in acts.get("lines", [])) + "</ul>"
        + "<p>The action sweep, measured: each action held over the horizon from the same test contexts; the mean "
          "horizontal optical flow of a predicted step (px; &gt; 0: the content moves right, as under a left turn), "
          "with its 95% interval over windows, next to the true future's.</p>"
        + _table(["held action", "mean horizontal flow per step (px)", "95% CI", "windows"],
                 [[n, f"{r['dx']:+.2f}", f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]", str(r["windows"])]
                  for n, r in sweep.items()]))
    Path(path).write_text(
        "<html><head><meta charset='utf-8'><style>body{font-family:sans-serif;font-size:13px}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}"
        "</style></head><body>"
        f"<h3>Verdict: evaluation '{html.escape(summary['evaluation'])}' on {len(summary['windows'])} test windows</h3>"
        f"<ul>{verdict}</ul><p style='font-size:11px'>A win needs the whole 95% bootstrap interval of the paired "
        f"difference (condition minus baseline, paired by window; {b.get('resamples', '')} resamples) on the better "
        "side of 0 at every step from 1 on; a difference whose interval contains 0 is never a win.</p>"
        + actions + "<h4>Conditions</h4>" + _table(head, body) + "".join(per_video)
        + f"<h4>Metrics</h4><ul>{described}</ul><h4>Checks</h4><ul>{checks}</ul>"
        f"<p style='font-size:11px'>settings: {html.escape(str(summary['config']))}</p></body></html>"
    )
