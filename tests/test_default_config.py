"""The embedded default, end to end: config.yaml as shipped, `snakemake --cores 2`, then the honesty
checks of the evaluation (issue: "the model beats copy-last-frame at the first predicted steps").

This is the slowest test (the README's own pipeline: about 13 minutes on 2 CPU cores). It never
loosens a check: when the model stops beating a baseline, fix the model or the default config.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from latentwm.evaluation.summary import read_metrics

pytestmark = pytest.mark.slow


def psnr_by_step(workdir, name="default") -> pd.DataFrame:
    df = read_metrics(workdir / f"results/eval/{name}/metrics.csv")
    df = df[df.metric == "psnr"]
    return df.groupby(["condition", "sampler", "step"])["value"].mean().unstack("step")


def test_tokenizer_reconstructs_the_default_clips(default_run):
    m = json.loads((default_run / "results/tokenizer/metrics.json").read_text())
    assert m["psnr"] > 28 and m["psnr"] > m["baseline_mean_frame_psnr"] + 8
    assert m["collapse_ratio"] > 0.5


def test_dynamics_loss_falls_below_copy_last(default_run):
    curve = pd.read_csv(default_run / "results/dynamics/train_curve.csv")
    last = curve.tail(max(1, len(curve) // 10))
    # falls clearly; how far depends on the tokenizer's latents: with the SSIM-trained tokenizer
    # (more detail in the latents) 49% on the default, 51% with the MSE one
    assert curve.loss.iloc[-1] < 0.6 * curve.loss.iloc[0]
    assert last.next_loss.mean() < last.copy_last_loss.mean()
    health = json.loads((default_run / "results/dynamics/health.json").read_text())
    assert health["nan_stop"] is None and not health["collapse"]["collapsed"]


def test_the_model_beats_copy_last_at_the_first_step(default_run):
    """At least one sampler beats copy-last on PSNR at step 1 with the whole 95% interval of the paired
    difference above 0 (a mean that is higher by less than its interval is no win)."""
    summary = json.loads((default_run / "results/eval/default/summary.json").read_text())
    models = {n: c for n, c in summary["conditions"].items() if c["condition"] == "model"}
    assert any(c["verdict"]["beats_steps"]["psnr"] >= 1 for c in models.values()), "\n".join(summary["verdict"])
    assert summary["checks"]["any_model_beats_copy_last_step1"]


def test_the_rollout_still_beats_copy_last_and_stays_sharp_at_the_last_step(default_run):
    """The rollout does not dissolve: at the horizon's last step the default sampler still beats
    copy-last by more than 1 dB (the lower end of its interval above 0) and keeps at least 0.7 of
    the truth's sharpness (a blurred or dissolved frame scores far lower)."""
    summary = json.loads((default_run / "results/eval/default/summary.json").read_text())
    model = summary["conditions"]["model:euler4"]
    diff = model["vs_baseline"]["psnr"]
    assert diff["diff"][-1] > 1.0 and diff["ci_low"][-1] > 0, "\n".join(summary["verdict"])
    assert model["per_step"]["sharpness"][-1] >= 0.7


def test_ceiling_is_best_and_teacher_forcing_helps(default_run):
    psnr = psnr_by_step(default_run)
    ceiling = psnr.loc[("ceiling", "none")]
    assert (psnr.drop(index=("ceiling", "none")) < ceiling).all().all()
    # the drift diagnostic: with the real past fed back, late steps are better than free rollout
    first = psnr.loc["teacher_forced"].index[0]  # the first sampler, the only one run teacher-forced
    horizon = psnr.columns.max()
    assert psnr.loc[("teacher_forced", first)][horizon] > psnr.loc[("model", first)][horizon]
