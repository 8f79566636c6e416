"""Plots from small hand-made CSV/JSON inputs: every figure is written, readable and data-driven."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from latentwm import plots


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


def long_csv(path, H=4):
    rows = []
    for w in range(3):
        for cond, sampler, base in [("model", "euler8", 25), ("model", "shortcut4", 24), ("teacher_forced", "euler8", 27),
                                    ("copy_last", "none", 20), ("ceiling", "none", 30)]:
            for step in range(1, H + 1):
                for metric, v in [("psnr", base - step + w), ("ssim", 0.9 - 0.01 * step), ("mse", 0.01 * step),
                                  ("latent_mse", 0.1 * step)]:
                    rows.append(("v", w, cond, sampler, step, metric, v))
    pd.DataFrame(rows, columns=["video", "window", "condition", "sampler", "step", "metric", "value"]).to_csv(path, index=False)
    return path


def summary():
    def entry(cond, sampler, psnr, fps=None):
        e = {"condition": cond, "sampler": sampler, "per_step": {"psnr": [psnr, psnr - 1]},
             "mean": {"psnr": psnr - 0.5, "ssim": 0.8, "mse": 0.01, "latent_mse": 0.2}, "windows": 3}
        if fps:
            e.update(frames_per_s=fps, beats_copy_last_step1=psnr > 20, psnr_gap_to_ceiling_step1=30 - psnr)
        return e

    return {"evaluation": "default", "windows": [{}] * 3, "config": {"horizon": 2},
            "checks": {"identical_conditions": [], "ceiling_best_every_step": True},
            "conditions": {"model:euler8": entry("model", "euler8", 25, 3.0), "model:shortcut4": entry("model", "shortcut4", 24, 40.0),
                           "copy_last": entry("copy_last", "none", 20), "ceiling": entry("ceiling", "none", 30)}}


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


def test_metric_by_step_draws_the_data(tmp_path):
    csv = long_csv(tmp_path / "metrics.csv")
    plots.metric_by_step(csv, tmp_path / "psnr.png", "psnr", "psnr")
    plots.metric_by_step(csv, tmp_path / "ssim.png", "ssim", "ssim")
    a, b = is_png(tmp_path / "psnr.png"), is_png(tmp_path / "ssim.png")
    assert a.shape != b.shape or not np.array_equal(a, b)  # different data, different picture
    assert plots._conditions(pd.read_csv(csv, keep_default_na=False))[0] == ("model", "euler8")


def test_speed_quality_and_table(tmp_path):
    s = summary()
    plots.speed_quality(s, tmp_path / "speed.png", "speed")
    is_png(tmp_path / "speed.png")
    plots.summary_table_html(s, tmp_path / "table.html")
    html = (tmp_path / "table.html").read_text()
    assert "model:shortcut4" in html and "40.0" in html and "ceiling_best_every_step" in html and ">yes<" in html


def test_filmstrip_gif_and_samples_page(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 255, (6, 3, 16, 16), dtype=np.uint8)
    preds = {"model:euler8": truth[3:], "copy_last": np.repeat(truth[2:3], 3, 0)}
    plots.filmstrip(truth, preds, 3, tmp_path / "strip.png", "title")
    plots.sample_gif(truth, preds, 3, tmp_path / "s.gif")
    is_png(tmp_path / "strip.png")
    assert plots.gif_frames(tmp_path / "s.gif") == 6
    with Image.open(tmp_path / "s.gif") as im:
        assert im.size[0] >= 3 * 128 and im.size[1] >= 128  # 16 px frames upscaled, three panels
    plots.samples_html([("an animation", tmp_path / "s.gif"), ("a strip", tmp_path / "strip.png")], tmp_path / "s.html", "t")
    page = (tmp_path / "s.html").read_text()
    assert "data:image/gif;base64," in page and "data:image/png;base64," in page and "an animation" in page
