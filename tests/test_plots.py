"""Plots from small hand-made CSV/JSON inputs: every figure is written, readable and data-driven."""

from __future__ import annotations

from html import escape

import numpy as np
import pandas as pd
from PIL import Image

from latentwm.evaluation.metrics import METRICS
from latentwm.evaluation.summary import build
from latentwm.figures import plots, samples


def curve_csv(path, with_t=True):
    steps = np.arange(10, 110, 10)
    df = pd.DataFrame({"step": steps, "loss": 1 / steps, "loss_std": 0.8 / steps, "loss_boot": 0.2 / steps,
                       "copy_last_loss": np.full(10, 0.02), "grad_norm": np.linspace(2, 1, 10),
                       "lr": np.linspace(1e-3, 1e-4, 10), "batches_per_s": np.full(10, 5.0),
                       "memory_mb": np.full(10, 300.0), "probe_collapse_ratio": np.linspace(0.5, 1, 10)})
    if with_t:
        for t in range(4):
            df[f"loss_t_{t}"] = (4 - t) / steps
        df.loc[::2, "loss_t_3"] = np.nan  # short batches have no frame 3 (alternating lengths)
    df.to_csv(path, index=False)
    return path


CONDITIONS = [("model", "euler8", 1.0), ("model", "shortcut4", 0.8), ("model_mean", "shortcut4", 1.2),
              ("teacher_forced", "euler8", 1.5), ("copy_last", "none", 0.0), ("copy_previous", "none", 0.5),
              ("ceiling", "none", 3.0)]


# an action model evaluated with three samplers: more conditions than tab10 has colours
MANY = CONDITIONS + [("model", "euler1", 0.5), ("model_best", "shortcut4", 1.1), ("random_actions", "shortcut4", 0.4),
                     ("no_action", "shortcut4", 0.6), ("copy_last_pixels", "none", 0.2)]


def long_table(H=4, windows=6, conditions=CONDITIONS) -> pd.DataFrame:
    """A metrics.csv of every registry metric: better conditions score `quality` higher, with window noise."""
    rng = np.random.default_rng(0)
    rows = []
    for w in range(windows):
        for cond, sampler, quality in conditions:
            for step in range(1, H + 1):
                for m in METRICS:
                    sign = 1 if m.higher_is_better is not False else -1
                    v = 10 + sign * (quality - 0.3 * step) + 0.2 * rng.normal()
                    rows.append((f"v{w % 2}", w, cond, sampler, step, m.name, v))
    return pd.DataFrame(rows, columns=["video", "window", "condition", "sampler", "step", "metric", "value"])


def summary(H=4, conditions=CONDITIONS):
    df = long_table(H, conditions=conditions)
    return {"evaluation": "default", "windows": [{}] * 6, "config": {"horizon": H},
            **build(df, {"euler8": 3.0, "shortcut4": 40.0, "euler1": 90.0}, H)}


def is_png(path, min_size=(200, 150)):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        return np.asarray(im.convert("L"), dtype=float)


def test_training_curves_and_per_timestep(tmp_path):
    csv = curve_csv(tmp_path / "curve.csv")
    plots.training_curves(csv, tmp_path / "curves.png", "dynamics")
    plots.per_timestep_loss(csv, tmp_path / "per_t.png", "dynamics")
    assert is_png(tmp_path / "curves.png", (800, 400)).std() > 0
    is_png(tmp_path / "per_t.png")
    parts, baselines = plots._loss_columns(pd.read_csv(csv))
    assert parts == ["loss", "loss_std", "loss_boot"] and baselines == ["copy_last_loss"]


def test_training_plots_without_data_say_why(tmp_path):
    csv = curve_csv(tmp_path / "curve.csv", with_t=False)
    plots.per_timestep_loss(csv, tmp_path / "per_t.png", "tokenizer")  # no loss_t_* columns
    (tmp_path / "empty.csv").write_text("step\n")
    plots.training_curves(tmp_path / "empty.csv", tmp_path / "empty.png", "tokenizer")
    is_png(tmp_path / "per_t.png", (100, 50)), is_png(tmp_path / "empty.png", (100, 50))


def test_a_figure_per_registry_metric(tmp_path):
    s = summary()
    paths = plots.metrics_by_step(s, tmp_path / "by_step")
    assert sorted(p.name for p in paths) == sorted(f"{m.name}.png" for m in METRICS)
    a, b = is_png(paths[0]), is_png(paths[1])
    assert a.shape != b.shape or not np.array_equal(a, b)  # different data, different picture
    plots.paired_differences(s, tmp_path / "paired.png", "default")
    assert is_png(tmp_path / "paired.png", (800, 300)).std() > 0


def test_every_figure_draws_more_conditions_than_colours(tmp_path):
    s = summary(conditions=MANY)
    assert len(s["conditions"]) > 10
    paths = plots.metrics_by_step(s, tmp_path / "by_step")
    assert len(paths) == len(METRICS) and all(is_png(p).std() > 0 for p in paths)
    plots.paired_differences(s, tmp_path / "paired.png", "default")
    plots.summary_table_html(s, tmp_path / "summary.html")
    assert "model_best:shortcut4" in (tmp_path / "summary.html").read_text()


def test_speed_quality_and_table(tmp_path):
    s = summary()
    plots.speed_quality(s, tmp_path / "speed.png", "speed")
    is_png(tmp_path / "speed.png")
    plots.summary_table_html(s, tmp_path / "table.html")
    html = (tmp_path / "table.html").read_text()
    assert "model:shortcut4" in html and "40.0" in html and "ceiling_best_every_step" in html
    # the verdict comes first, in words, before any table
    assert html.index("Verdict") < html.index("<table>") and html.index("model:euler8 beats copy_last on psnr") < html.index("<table>")
    assert "teacher_forced:euler8 beats copy_previous" in html
    for m in METRICS:  # every metric is described; headline metrics get a per-video table
        assert escape(m.description) in html
        assert (f"{m.name} per test video" in html) == m.headline
    assert "<td>v1</td>" in html


def test_filmstrip_gif_and_samples_page(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 255, (6, 3, 16, 16), dtype=np.uint8)
    preds = {"model:euler8": truth[3:], "copy_last": np.repeat(truth[2:3], 3, 0)}
    samples.filmstrip(truth, preds, 3, tmp_path / "strip.png", "title")
    samples.sample_gif(truth, preds, 3, tmp_path / "s.gif")
    is_png(tmp_path / "strip.png")
    assert samples.gif_frames(tmp_path / "s.gif") == 6
    with Image.open(tmp_path / "s.gif") as im:
        assert im.size[0] >= 3 * 128 and im.size[1] >= 128  # 16 px frames upscaled, three panels
    samples.samples_html([("an animation", tmp_path / "s.gif"), ("a strip", tmp_path / "strip.png")], tmp_path / "s.html", "t")
    page = (tmp_path / "s.html").read_text()
    assert "data:image/gif;base64," in page and "data:image/png;base64," in page and "an animation" in page
