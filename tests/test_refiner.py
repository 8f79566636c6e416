"""Keyframe imputation: keyframes kept bit-exactly, a fresh refiner is linear interpolation, nested
levels; the stages on the tiny run (only they run, a refiner change reruns only them), and the
by-hand command on the tiny checkpoint."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, planned_jobs, snakemake, tiny_config
from PIL import Image

from latentwm.config.fields import from_dict
from latentwm.config.refiner import RefinerStage
from latentwm.core.errors import PipelineError
from latentwm.data.video import encode_mp4, probe
from latentwm.evaluation.impute import fill_file
from latentwm.evaluation.refiner import CONDITIONS, REFINERS
from latentwm.figures.samples import gif_frames
from latentwm.models.refiner import Refiner, build, fill, fill_sequence, interpolate, keyframe_mask

REFINER = {"enabled": True, "model": {"spacings": [2, 4], "width": 8, "blocks": 1},
           "train": {"steps": 10, "batch_size": 4, "warmup": 2, "log_every": 5, "checkpoint_every": 5},
           "val_windows": 4, "evaluation": {"max_windows": 2, "samples": 1}}
REFINER_JOBS = {"train_refiner", "evaluate_refiner", "plot_refiner"}


def trained_like(stage: RefinerStage, C: int = 3) -> Refiner:
    """A refiner whose correction is not zero (random output layer), as after training."""
    torch.manual_seed(0)
    model = build(stage, [C, 6, 6])
    torch.nn.init.normal_(model.out.weight, std=0.3)
    return model.eval()


def test_interpolation_between_keyframes():
    z = torch.randn(2, 9, 3, 4, 4)
    lin = interpolate(z, 4)
    assert torch.equal(lin[:, ::4], z[:, ::4])
    assert torch.allclose(lin[:, 2], (z[:, 0] + z[:, 4]) / 2) and torch.allclose(lin[:, 5], 0.75 * z[:, 4] + 0.25 * z[:, 8])
    near = interpolate(z, 4, "nearest")
    assert torch.equal(near[:, 1], z[:, 0]) and torch.equal(near[:, 2], z[:, 0]) and torch.equal(near[:, 3], z[:, 4])
    with pytest.raises(PipelineError, match="no keyframe at its end"):
        interpolate(z[:, :8], 4)


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_keyframes_are_kept_bit_exactly(noise):
    model = trained_like(from_dict(RefinerStage, {"noise": noise}))
    z = torch.randn(3, 9, 3, 6, 6)
    for s in (2, 4, 8):
        for levels in (False, True):
            out = fill(model, z, s, levels, noise, steps=3)
            assert torch.equal(out[:, ::s], z[:, ::s]), (s, levels)
            assert not torch.allclose(out, interpolate(z, s), atol=1e-3)  # and it does change the frames between
    keys = torch.randn(6, 3, 6, 6)
    seq = fill_sequence(model, keys, 4, levels=True)
    assert seq.shape == (21, 3, 6, 6) and torch.equal(seq[::4], keys)


def test_a_zero_initialised_refiner_is_linear_interpolation():
    model = build(RefinerStage(), [3, 6, 6]).eval()
    z = torch.randn(2, 9, 3, 6, 6)
    for s in (2, 4, 8):
        assert torch.equal(fill(model, z, s, levels=False), interpolate(z, s))
        assert torch.allclose(fill(model, z, s, levels=True, steps=4), interpolate(z, s), atol=1e-6)
    near = build(from_dict(RefinerStage, {"model": {"interpolation": "nearest"}}), [3, 6, 6]).eval()
    assert torch.equal(fill(near, z, 8, levels=False), interpolate(z, 8, "nearest"))
    keys = torch.randn(4, 3, 6, 6)
    chain = torch.zeros(25, 3, 6, 6)
    chain[::8] = keys
    assert torch.allclose(fill_sequence(model, keys, 8, levels=False), interpolate(chain[None], 8)[0], atol=1e-6)


def test_levels_are_nested_and_filled_coarse_to_fine():
    masks = {s: keyframe_mask(9, s) for s in (2, 4, 8)}
    assert (masks[8] <= masks[4]).all() and (masks[4] <= masks[2]).all() and masks[8].sum() == 2
    for bad in ([4, 6], [2, 2], [1, 2], [8, 4]):
        with pytest.raises(PipelineError, match="refiner.model.spacings.*each dividing"):
            from_dict(RefinerStage, {"model": {"spacings": bad}}, "refiner")
    with pytest.raises(PipelineError, match="evaluation.spacings names \\[8\\]"):
        from_dict(RefinerStage, {"model": {"spacings": [2, 4]}, "evaluation": {"spacings": [8]}}, "refiner")
    model = trained_like(RefinerStage())
    called = []
    model.register_forward_pre_hook(lambda m, args: called.append(args[1]))
    fill(model, torch.randn(1, 9, 3, 6, 6), 8, levels=True)
    assert called == [8, 4, 2]
    called.clear()
    fill(model, torch.randn(1, 9, 3, 6, 6), 4, levels=True, steps=2)
    assert called == [4, 4, 2, 2]


@pytest.fixture(scope="module")
def refined(tiny_run, tmp_path_factory):
    """A copy of the tiny run with the refiner switched on and run: only its three jobs run."""
    work = tmp_path_factory.mktemp("refined") / "run"
    shutil.copytree(tiny_run, work, symlinks=True)  # mtimes and .snakemake kept: nothing upstream is stale
    cfg = {**tiny_config(), "refiner": REFINER}
    assert set(planned_jobs(work, cfg)) == REFINER_JOBS | {"all"}
    snakemake(work, cfg, "--cores", "2")
    return work, cfg


@pytest.mark.slow
def test_the_refiner_stages_write_a_verdict_and_its_page(refined):
    work, cfg = refined
    summary = json.loads((work / "results/refiner/eval/summary.json").read_text())
    assert set(summary["spacings"]) == {"4"}  # null: the trained spacings of 4 and more
    e = summary["spacings"]["4"]
    assert set(e["conditions"]) == set(CONDITIONS) and len(CONDITIONS) == 7
    assert len(e["conditions"]["linear"]["psnr"]["mean"]) == 3 and e["windows"] >= 2
    assert e["conditions"]["ceiling"]["psnr"]["mean"][1] > e["conditions"]["nearest"]["psnr"]["mean"][1]
    assert len(summary["verdict"]) == len(REFINERS) and all(v.startswith("spacing 4, refiner") for v in summary["verdict"])
    page = (work / "results/plots/refiner/summary.html").read_text()
    assert page.index("Verdict") < page.index("<table") and "data:image/png;base64" in page
    assert len(list((work / "results/refiner/eval/samples").glob("*.png"))) == 1
    snakemake(work, cfg, "--report", str(work / "report.html"))
    report = (work / "report.html").read_text()
    assert "Refiner" in report and "by_position.png" in report


@pytest.mark.slow
def test_a_refiner_change_reruns_only_the_refiner(refined):
    work, cfg = refined
    assert planned_jobs(work, cfg) == {}
    changed = copy.deepcopy(cfg)
    changed["refiner"]["noise"] = 0.1
    assert set(planned_jobs(work, changed)) == REFINER_JOBS | {"all"}
    changed = copy.deepcopy(cfg)
    changed["refiner"]["evaluation"]["stride"] = 2
    assert set(planned_jobs(work, changed)) == {"evaluate_refiner", "plot_refiner", "all"}


@pytest.mark.slow
def test_fill_a_video_and_images_by_hand(refined, tmp_path):
    work, _ = refined
    r = work / "results"
    video = sorted((r / "videos").glob("*.mp4"))[0]
    p = subprocess.run([sys.executable, str(ROOT / "workflow_scripts/refine.py"), "--results", str(r), "--video", str(video),
                        "--spacing", "4", "--keys", "5", "--out", str(tmp_path / "f.gif")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert gif_frames(tmp_path / "f.gif") == 17 and "refiner: in-between frames" in p.stderr + p.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "workflow_scripts/refine.py"), "--results", str(r), "--video", str(video),
                          "--fps", "0", "--out", str(tmp_path / "z.gif")], capture_output=True, text=True)
    assert bad.returncode != 0 and "--fps 0.0: config key fps is 0.0; expected a value > 0" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "z.gif").exists()
    folder = tmp_path / "story"
    folder.mkdir()
    for i, c in enumerate([(255, 0, 0), (0, 0, 255), (0, 255, 0)]):
        Image.new("RGB", (64, 48), c).save(folder / f"{i:02d}.png")
    paths = (r / "refiner/refiner.pt", r / "tokenizer/tokenizer.pt")
    fill_file(*paths, tmp_path / "f.mp4", 2, True, 2, 15.0, images=folder)
    assert probe(tmp_path / "f.mp4", count_frames=True)["frames"] == 5
    with pytest.raises(PipelineError, match="--spacing 3: the refiner is trained on spacings \\[2, 4\\]"):
        fill_file(*paths, tmp_path / "g.mp4", 3, True, 2, 15.0, images=folder)
    assert not (tmp_path / "g.mp4").exists()
    # a video slower than the asked rate keeps its own, as in extraction: 13 distinct frames at 5 fps read at
    # a ceiling of 30 are 13 frames (4 keyframes every 4), not 78 with each repeated
    slow = tmp_path / "slow.mp4"
    ramp = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(13)]
    encode_mp4(slow, ramp, 5, 48, 64, "a test clip")
    fill_file(*paths, tmp_path / "s.mp4", 4, True, 2, 30.0, video=slow)
    out = probe(tmp_path / "s.mp4", count_frames=True)
    assert out["frames"] == 13 and abs(out["fps"] - 5) < 0.01
