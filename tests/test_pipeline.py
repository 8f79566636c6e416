"""The whole DAG on tests/tiny_config.yaml (the session fixture `tiny_run`), then dry runs of changes.

Checks the evaluation outputs against each other (the ceiling is the best condition, conditions
differ), the report, that a second run does nothing, and that changing only evaluation settings
reruns only evaluation and plots, never training.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from conftest import planned_jobs, snakemake, tiny_config

from latentwm.evaluation.metrics import METRICS
from latentwm.evaluation.summary import read_metrics

pytestmark = pytest.mark.slow
TRAINING = {"train_tokenizer", "encode_latents", "train_dynamics", "extract_frames", "download"}


def evaluations() -> dict:
    return tiny_config()["evaluations"]


def test_every_output_exists(tiny_run):
    for name in evaluations():
        e, p = tiny_run / "results/eval" / name, tiny_run / "results/plots" / name
        assert (e / "metrics.csv").stat().st_size > 0 and (e / "summary.json").stat().st_size > 0
        index = json.loads((e / "samples/index.json").read_text())
        assert len(index) == evaluations()[name].get("samples", 2)
        for s in index:
            assert (e / "samples" / s["gif"]).stat().st_size > 0 and (e / "samples" / s["png"]).stat().st_size > 0
        for f in [f"by_step/{m.name}.png" for m in METRICS] + ["paired_differences.png", "speed_quality.png",
                                                                "summary.html", "samples.html"]:
            assert (p / f).stat().st_size > 1000, f
    for f in ("tokenizer_curves.png", "dynamics_curves.png", "dynamics_loss_per_timestep.png"):
        assert (tiny_run / "results/plots/training" / f).stat().st_size > 1000, f


def test_metrics_are_finite_and_conditions_differ(tiny_run):
    for name, settings in evaluations().items():
        df = read_metrics(tiny_run / f"results/eval/{name}/metrics.csv")
        assert np.isfinite(df[df.metric.isin(["psnr", "ssim", "mse", "latent_mse"])].value).all()
        assert set(df.condition) == {"model", "model_mean", "model_best", "teacher_forced", "copy_last", "copy_last_pixels", "copy_previous",
                                     "motion_oracle", "ceiling"}
        assert set(df.metric) == {m.name for m in METRICS}
        assert set(df[df.condition == "model"].sampler) == {s["name"] for s in settings["samplers"]}
        assert sorted(set(df.step)) == list(range(1, settings["horizon"] + 1))
        psnr = df[df.metric == "psnr"].groupby(["condition", "sampler", "step"])["value"].mean().unstack("step")
        rows = psnr.to_numpy()
        for i in range(len(rows)):
            for j in range(i + 1, len(rows)):
                assert not np.allclose(rows[i], rows[j]), f"{psnr.index[i]} == {psnr.index[j]} at every step"
        summary = json.loads((tiny_run / f"results/eval/{name}/summary.json").read_text())
        assert summary["checks"]["identical_conditions"] == []
        for entry in summary["conditions"].values():
            assert all(math.isfinite(entry["mean"][k]) for k in ("psnr", "ssim", "latent_mse"))
        *paired, tokenizer, motion = summary["verdict"]
        assert paired and all(" beats " in v for v in paired) and tokenizer.startswith("copy_last_pixels (the real last")
        assert motion.startswith("motion_oracle (copy_last's frame warped by the true optical flow: an oracle)")
        for s in settings["samplers"]:
            assert summary["conditions"][f"model:{s['name']}"]["frames_per_s"] > 0


def test_ceiling_is_the_best_condition_at_every_step(tiny_run):
    for name in evaluations():
        df = read_metrics(tiny_run / f"results/eval/{name}/metrics.csv")
        psnr = df[df.metric == "psnr"].groupby(["condition", "sampler", "step"])["value"].mean().unstack("step")
        ceiling = psnr.loc[("ceiling", "none")]
        # the decoded conditions that do not see the truth
        others = psnr.drop(index=[("ceiling", "none"), ("copy_last_pixels", "none"), ("motion_oracle", "none")])
        tok = json.loads((tiny_run / "results/tokenizer/metrics.json").read_text())
        hint = (f"(tokenizer val PSNR {tok['psnr']:.2f} dB vs its mean-frame baseline {tok['baseline_mean_frame_psnr']:.2f} dB: "
                "a tokenizer that has not learned makes every decoded condition the same blur; "
                "raise tokenizer.train.steps in tests/tiny_config.yaml)")
        assert (others.le(ceiling, axis=1)).all().all(), f"{name}: a condition beats the tokenizer ceiling {hint}:\n{psnr}"


def test_report(tiny_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake(tiny_run, tiny_config(), "--report", str(report))
    assert report.stat().st_size > 200_000  # the figures are embedded: one self-contained page
    text = report.read_text(errors="replace")
    for name in ("psnr.png", "paired_differences.png", "speed_quality.png", "samples.html", "dynamics_curves.png",
                 "tokenizer_curves.png"):
        assert name in text, name


def test_second_run_does_nothing(tiny_run):
    assert planned_jobs(tiny_run, tiny_config()) == {}


@pytest.mark.parametrize(
    "change",
    [
        {"horizon": 3},
        {"context": 3},
        {"max_windows": 1},
        {"stride": 3},
        {"mean_samples": 0},
        {"tau_ctx": 0.2},
        {"samplers": [{"name": "shortcut2", "kind": "shortcut", "steps": 2}]},
    ],
    ids=lambda c: next(iter(c)),
)
def test_changing_evaluation_settings_reruns_only_evaluation(tiny_run, change):
    config = copy.deepcopy(tiny_config())
    config["evaluations"]["default"].update(change)
    jobs = planned_jobs(tiny_run, config)
    assert set(jobs) == {"evaluate_rollouts", "plot_evaluation", "all"}, jobs
    assert jobs["evaluate_rollouts"] == 1 and not TRAINING & set(jobs)


def test_a_second_evaluation_adds_only_its_jobs(tiny_run):
    config = copy.deepcopy(tiny_config())
    config["evaluations"]["long"] = {**config["evaluations"]["default"], "horizon": 6, "max_windows": 1}
    jobs = planned_jobs(tiny_run, config)
    assert jobs == {"evaluate_rollouts": 1, "plot_evaluation": 1, "all": 1}, jobs
