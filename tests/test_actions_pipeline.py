"""The DAG with `dynamics.actions: latent` on the tiny config: the LAM, the action stores, an
action-conditioned dynamics model and its evaluation (controllability, NMI against the generator's
true actions); and what a change of the LAM reruns."""

from __future__ import annotations

import json
import re

from conftest import latent_config, snakemake

from latentwm.data.actions import read_store


def test_latent_actions_flow_through_the_dag(latent_run):
    r = latent_run / "results"
    assert (r / "lam/lam.pt").exists() and (r / "lam/metrics.json").exists()
    metrics = json.loads((r / "lam/metrics.json").read_text())
    assert {"val_perplexity", "val_usage", "val_action_gain"} <= set(metrics)
    stores = sorted((r / "actions/latent").glob("*/*.zarr"))  # in the encode jobs' shards, as the latents
    assert [s.relative_to(r / "actions/latent") for s in stores] == sorted(
        p.relative_to(r / "latents") for p in (r / "latents").glob("*/*.zarr")), stores
    for store in stores:
        ids = read_store(store)
        assert ids[0] == -1 and (ids[1:] >= 0).all() and (ids[1:] < 4).all()
    summary = json.loads((r / "eval/default/summary.json").read_text())
    conds = summary["conditions"]
    assert {"model:shortcut4", "random_actions:shortcut4", "no_action:shortcut4"} <= set(conds)
    ctrl = summary["actions"]["controllability_psnr"]
    assert len(ctrl["diff"]) == 4 and all(lo <= d <= hi for d, lo, hi in zip(ctrl["diff"], ctrl["ci_low"], ctrl["ci_high"]))
    assert 0 <= summary["actions"]["nmi_latent_true"] <= 1
    assert list((r / "eval/default/samples").glob("*_action_sweep.png")), "the action sweep picture is in the report"


def test_steering_command_writes_a_gif(latent_run, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    from latentwm.figures.samples import gif_frames

    r = latent_run / "results"
    video = sorted(p.stem for p in (r / "latents").glob("*/*.zarr"))[0]  # in its encode job's shard folder
    cmd = [sys.executable, str(ROOT / "workflow_scripts/steer.py"), "--dynamics", str(r / "dynamics/dynamics.pt"),
           "--tokenizer", str(r / "tokenizer/tokenizer.pt"), "--results", str(r), "--video", video, "--start", "2",
           "--context", "3", "--actions", "1,1,2,3", "--out", str(tmp_path / "s.gif"), "--sweep", str(tmp_path / "s.png"),
           "--threads", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert gif_frames(tmp_path / "s.gif") == 3 + 4 and (tmp_path / "s.png").exists()
    bad = subprocess.run([*cmd[:-8], "--actions", "1,9", "--out", str(tmp_path / "t.gif")], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("ERROR: actions must be ids in 0..3")


def test_changing_the_lam_reruns_actions_dynamics_and_evaluation_not_the_tokenizer(latent_run):
    cfg = latent_config()
    cfg["lam"]["train"]["steps"] = 7
    out = snakemake(latent_run, cfg, "-n", "--quiet", "rules").stdout
    jobs = set(re.findall(r"^(\w+)\s+\d+$", out, re.M))
    assert {"train_lam", "encode_actions", "train_dynamics", "evaluate_rollouts"} <= jobs, out
    assert not jobs & {"train_tokenizer", "encode_latents", "extract_frames", "download"}, out


def test_changing_the_tokenizer_does_not_retrain_the_lam(latent_run):
    # the LAM reads frames, not latents: a new tokenizer re-encodes latents and retrains dynamics only
    cfg = latent_config()
    cfg["tokenizer"]["train"]["steps"] += 1
    out = snakemake(latent_run, cfg, "-n", "--quiet", "rules").stdout
    jobs = set(re.findall(r"^(\w+)\s+\d+$", out, re.M))
    assert {"train_tokenizer", "encode_latents", "train_dynamics"} <= jobs, out
    assert not jobs & {"train_lam", "encode_actions"}, out
