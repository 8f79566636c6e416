"""Rollout evaluation on stand-ins whose metrics can be computed by hand, plus the provenance checks.

Stand-in world: every frame is one flat grey level that rises by STEP_GREY per frame; the
tokenizer averages 2x2 pixels and decodes by repetition (exact on flat frames); the "model"
adds a fixed step in normalised latent space to the last frame it saw.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from latentwm.config.evaluation import EvalConfig
from latentwm.config.fields import from_dict
from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.data.store import StoreWriter
from latentwm.evaluation import metrics
from latentwm.evaluation.metrics import METRICS, PSNR_CAP_DB
from latentwm.evaluation.oracle import moved_copy
from latentwm.evaluation.rollouts import CSV_COLUMNS, Windows, evaluate_windows, load_windows, run, window_starts
from latentwm.evaluation.summary import build, checks, read_metrics, summarise
from latentwm.figures.samples import write_samples
from latentwm.models import checkpoint
from latentwm.models.codec import Codec

ROOT = Path(__file__).resolve().parents[1]
STEP_GREY = 10  # uint8 grey levels per frame
MEAN, STD = 0.3, 0.5  # latent normalisation of the stand-ins


class PoolTokenizer(torch.nn.Module):
    def encode(self, x):  # (B, 3, H, W) -> (B, 3, H/2, W/2)
        return F.avg_pool2d(x, 2)

    def decode(self, z):  # (B, 3, h, w) -> (B, 3, 2h, 2w)
        return z.repeat_interleave(2, -1).repeat_interleave(2, -2)


class StepModel(torch.nn.Module):
    def __init__(self, delta: float, noise: float = 0.0):
        super().__init__()
        self.delta, self.noise = delta, noise


def fake_rollout(model, context, horizon, sampler, generator=None, teacher=None, tau_ctx=None):
    """(B, Cctx, C, h, w) -> (B, horizon, C, h, w): last seen frame + delta (+ seeded noise x temperature / steps)."""
    prev, out = context[:, -1], []
    for t in range(horizon):
        nxt = prev + model.delta
        if model.noise:
            nxt = nxt + model.noise * sampler.temperature / sampler.steps * torch.randn(prev.shape, generator=generator)
        out.append(nxt)
        prev = teacher[:, t] if teacher is not None else nxt
    return torch.stack(out, 1)


def ramp_windows(n: int, cfg: EvalConfig, size: int = 8, step: int = STEP_GREY) -> Windows:
    """n windows of flat frames whose grey level rises by `step` per frame (window i starts at 20 + 5i)."""
    S = cfg.span
    grey = torch.stack([20 + 5 * i + step * torch.arange(S) for i in range(n)]).to(torch.uint8)  # (n, S)
    frames = grey[:, :, None, None, None].expand(n, S, 3, size, size).contiguous()
    z = F.avg_pool2d(frames.flatten(0, 1).float() / 255, 2).view(n, S, 3, size // 2, size // 2)
    return Windows([("vid", i, 0) for i in range(n)], frames, (z - MEAN) / STD)


def codec() -> Codec:
    return Codec(PoolTokenizer(), torch.full((3,), MEAN), torch.full((3,), STD), "cpu")


def cfg_(**kw) -> EvalConfig:
    base = dict(context=3, horizon=4, stride=4, max_windows=2, samples=1, batch_size=2,
                samplers=[{"name": "a", "kind": "euler", "steps": 8}, {"name": "b", "kind": "shortcut", "steps": 2}])
    return from_dict(EvalConfig, {**base, **kw}, "evaluations.default")


def evaluate(model, win, cfg):
    return evaluate_windows(model, codec(), win, cfg, fake_rollout, log=lambda m: None)


def curve(df, condition, metric, sampler="none"):
    d = df[(df.condition == condition) & (df.sampler == sampler) & (df.metric == metric)]
    return d.groupby("step")["value"].mean().to_numpy()


def test_metrics_match_hand_computed_values():
    cfg = cfg_()
    half = 0.5 * STEP_GREY / 255 / STD  # half the true per-frame change, in normalised latents
    df, fps, samples = evaluate(StepModel(half), ramp_windows(3, cfg), cfg)
    k = np.arange(1, cfg.horizon + 1)
    # copy_last at step k is k frames behind: error k * STEP_GREY / 255 in pixels
    err = k * STEP_GREY / 255
    np.testing.assert_allclose(curve(df, "copy_last", "mse"), err**2, rtol=1e-4)
    np.testing.assert_allclose(curve(df, "copy_last", "psnr"), -20 * np.log10(err), rtol=1e-4)
    np.testing.assert_allclose(curve(df, "copy_last", "latent_mse"), (err / STD) ** 2, rtol=1e-4)
    # the model closes half the gap each step: its error grows as k / 2 frames
    np.testing.assert_allclose(curve(df, "model", "mse", "a"), (err / 2) ** 2, rtol=1e-3)
    # teacher-forced restarts from the real frame: the error stays at half a frame
    np.testing.assert_allclose(curve(df, "teacher_forced", "mse", "a"), np.full(4, (STEP_GREY / 255 / 2) ** 2), rtol=1e-3)
    # the ceiling is exact on flat frames: mse 0 and PSNR at its finite cap, never inf
    np.testing.assert_allclose(curve(df, "ceiling", "psnr"), PSNR_CAP_DB)
    assert np.all(curve(df, "ceiling", "mse") < 1e-10)
    assert set(fps) == {"a", "b"} and all(v > 0 for v in fps.values())
    assert len(samples) == 1 and samples[0]["truth"].shape == (cfg.span, 3, 8, 8)


def test_constant_video_caps_psnr_and_stays_finite():
    cfg = cfg_()
    df, fps, _ = evaluate(StepModel(0.1), ramp_windows(2, cfg, step=0), cfg)
    np.testing.assert_allclose(curve(df, "copy_last", "psnr"), PSNR_CAP_DB)  # identical frames: capped, not inf
    assert np.isfinite(df[df.metric.isin(["psnr", "ssim", "mse", "latent_mse"])].value).all()
    np.testing.assert_allclose(curve(df, "copy_last", "ssim"), 1.0, atol=1e-6)
    assert (curve(df, "model", "psnr", "a") < PSNR_CAP_DB).all()  # the model moved the frame: it must pay


def test_long_csv_schema_and_summary():
    cfg = cfg_()
    win = ramp_windows(3, cfg)
    df, fps, _ = evaluate(StepModel(0.05, noise=0.2), win, cfg)
    assert list(df.columns) == CSV_COLUMNS
    labels = set(map(tuple, df[["condition", "sampler"]].drop_duplicates().to_numpy()))
    assert labels == {("model", "a"), ("model", "b"), ("model_mean", "a"), ("model_best", "a"), ("teacher_forced", "a"),
                      ("copy_last", "none"),
                      ("copy_last_pixels", "none"), ("copy_previous", "none"), ("motion_oracle", "none"), ("ceiling", "none")}
    assert set(df.metric) == {m.name for m in METRICS}  # the registry, nothing else
    assert sorted(set(df.step)) == list(range(1, cfg.horizon + 1))
    assert len(df) == 3 * len(labels) * cfg.horizon * len(METRICS)
    summary = summarise(df, fps)
    assert set(summary) == {"model:a", "model:b", "model_mean:a", "model_best:a", "teacher_forced:a", "copy_last", "copy_last_pixels",
                            "copy_previous", "motion_oracle", "ceiling"}
    for entry in summary.values():
        assert len(entry["per_step"]["psnr"]) == cfg.horizon and entry["windows"] == 3
        assert all(math.isfinite(v) for k, v in entry["mean"].items() if k in ("psnr", "ssim", "mse", "latent_mse"))
        assert set(entry["per_step"]) == set(entry["ci_low"]) == {m.name for m in METRICS}
    assert "frames_per_s" in summary["model:b"] and "frames_per_s" not in summary["copy_last"]
    assert summary["model:a"]["verdict"]["beats_steps"]["psnr"] >= 1  # a noisy half step still beats standing still
    assert summary["model:a"]["baseline"] == "copy_last" and summary["teacher_forced:a"]["baseline"] == "copy_previous"
    c = checks(summary, cfg.horizon)
    assert c["identical_conditions"] == [] and c["ceiling_best_every_step"]
    # the samplers in the evaluation's order, the model's own first, whatever their names
    assert list(summary)[:2] == ["model:a", "model:b"]
    assert list(summarise(df, {"b": fps["b"], "a": fps["a"]}))[:2] == ["model:b", "model:a"]


def test_copy_last_pixels_copies_the_real_frame_past_the_tokenizer():
    """A still, textured video: the real last frame is exact (PSNR at its cap), while the decoded copy and
    the ceiling pay the tokenizer's loss of the texture; the verdict says so, and the check that the
    ceiling bounds every decoded condition leaves the real frames out."""
    cfg = cfg_()
    win = ramp_windows(2, cfg, step=0)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 60  # (8, 8): lost by 2x2 pooling
    win.frames = (win.frames.int() + checker).to(torch.uint8)
    df, fps, _ = evaluate(StepModel(0.0), win, cfg)
    np.testing.assert_allclose(curve(df, "copy_last_pixels", "psnr"), PSNR_CAP_DB)
    assert (curve(df, "copy_last", "psnr") < 40).all() and (curve(df, "ceiling", "psnr") < 40).all()
    np.testing.assert_allclose(curve(df, "copy_last_pixels", "latent_mse"), curve(df, "copy_last", "latent_mse"))
    s = build(df, fps, cfg.horizon)
    line = next(v for v in s["verdict"] if v.startswith("copy_last_pixels (the real last frame, no tokenizer) has psnr 100.00 dB"))
    assert "the tokenizer costs a copy " in line
    assert line.endswith("below the real copy at steps 1-4: no decoded prediction beats copying the video there")
    assert s["checks"]["ceiling_best_every_step"] and s["conditions"]["copy_last_pixels"]["baseline"] is None


def test_motion_oracle_warps_the_last_frame_by_the_true_flow():
    """A smooth texture moved by a few pixels a step is matched far better than by copying it, the
    still pixels stay the last frame's exactly, a moved frame is warped onto the truth where the
    unmoved copy is not; on flat frames (no flow) the oracle is copy_last, and its verdict line says
    what following the motion adds."""
    g = torch.Generator().manual_seed(0)
    last = F.interpolate(torch.rand(2, 3, 16, 16, generator=g), size=(64, 64), mode="bilinear", align_corners=False)
    moves = [(0, 1), (2, -2), (-3, 3)]  # (dy, dx) per step
    truth = torch.stack([torch.roll(last, m, (2, 3)) for m in moves], 1)  # (2, 3, 3, 64, 64)
    truth[:, :, :, 56:] = last[:, None, :, 56:]  # a still bar at the bottom, as a HUD
    window = torch.cat([last[:, None].expand(-1, 3, -1, -1, -1), truth], 1)
    out = moved_copy(last, window, 3)
    inner = (slice(None), slice(None), slice(12, 44), slice(12, 52))  # (B, 3, H, W): away from the edges and the bar
    for t, m in enumerate(moves):
        err, copy_err = ((x[inner] - truth[:, t][inner]).pow(2).mean() for x in (out[:, t], last))
        assert err < 0.01 * copy_err, (m, float(err), float(copy_err))
    assert torch.equal(out[:, :, :, 56:], last[:, None, :, 56:].expand(-1, 3, -1, -1, -1))
    cfg = cfg_()
    df, fps, _ = evaluate(StepModel(0.05), ramp_windows(2, cfg), cfg)
    np.testing.assert_allclose(curve(df, "motion_oracle", "psnr"), curve(df, "copy_last", "psnr"), rtol=1e-6)
    line = build(df, fps, cfg.horizon)["verdict"][-1]
    assert line.startswith("motion_oracle (copy_last's frame warped by the true optical flow: an oracle) has psnr ")
    assert "+0.00 and +0.00 over copy_last" in line


def test_conditions_and_models_differ():
    cfg = cfg_()
    win = ramp_windows(2, cfg)
    a, _, _ = evaluate(StepModel(0.02), win, cfg)
    b, _, _ = evaluate(StepModel(0.08), win, cfg)
    # a metric that cannot move is a bug: two checkpoints must score differently
    assert not np.allclose(curve(a, "model", "psnr", "a"), curve(b, "model", "psnr", "a"))
    np.testing.assert_allclose(curve(a, "copy_last", "psnr"), curve(b, "copy_last", "psnr"))  # baselines don't depend on it
    by = {c: curve(a, c, "psnr", s) for c, s in [("model", "a"), ("copy_last", "none"), ("ceiling", "none")]}
    assert not np.allclose(by["model"], by["copy_last"]) and not np.allclose(by["model"], by["ceiling"])


def test_checks_flag_identical_conditions():
    cfg = cfg_()
    df, fps, _ = evaluate(StepModel(0.0), ramp_windows(2, cfg), cfg)  # a model that copies the last frame
    flags = checks(summarise(df, fps), cfg.horizon)["identical_conditions"]
    assert "copy_last == model:a" in flags


def test_deterministic_given_the_seed():
    cfg = cfg_()
    win = ramp_windows(2, cfg)
    model = StepModel(0.05, noise=0.5)
    a, _, _ = evaluate(model, win, cfg)
    b, _, _ = evaluate(model, win, cfg)
    pd.testing.assert_frame_equal(a, b)
    c, _, _ = evaluate(model, win, cfg_(seed=7))
    assert not np.allclose(a.value, c.value)
    assert window_starts(100, cfg) == window_starts(100, cfg_(seed=3))  # windows do not depend on the seed


def test_window_starts_spread_over_the_video():
    cfg = cfg_(context=8, horizon=8, stride=16, max_windows=24)
    assert window_starts(120, cfg) == [0, 16, 32, 48, 64, 80, 96]  # every 16 frames while 16 fit
    assert window_starts(cfg.span - 1, cfg) == [] and window_starts(cfg.span, cfg) == [0]
    long = window_starts(1500, cfg)  # 93 positions fit: an evenly spaced subset of 24, first and last kept
    assert len(long) == 24 and long[0] == 0 and long[-1] == 1472 and all(s % 16 == 0 for s in long)
    assert np.diff(long).min() >= 48 and np.diff(long).max() <= 80
    assert window_starts(40, cfg_(context=3, horizon=4, stride=1, max_windows=100)) == list(range(34))


def test_samples_are_written(tmp_path):
    cfg = cfg_(samples=2)
    _, _, samples = evaluate(StepModel(0.05), ramp_windows(3, cfg), cfg)
    listed = write_samples(samples, cfg.context, tmp_path / "samples")
    assert len(listed) == 2
    for s in listed:
        assert (tmp_path / "samples" / s["gif"]).stat().st_size > 0 and (tmp_path / "samples" / s["png"]).stat().st_size > 0
        assert s["panels"] == ["truth", "model:a", "model:b", "model_mean:a", "copy_last", "motion_oracle", "ceiling"]
    assert json.loads((tmp_path / "samples" / "index.json").read_text()) == listed


# ------------------------------------------------------------------ stores and provenance


def write_store(path, data, **attrs):
    with StoreWriter(path, data.shape[1:], data.dtype, chunk_frames=8, attrs=attrs) as w:
        w.append(data)
        w.commit()


def make_video(tmp_path, name, T, C=3, hw=4, tokenizer_hash="tok"):
    frames = np.random.default_rng(0).integers(0, 255, (T, 3, 2 * hw, 2 * hw), dtype=np.uint8)
    lat = np.random.default_rng(1).normal(size=(T, C, hw, hw)).astype(np.float16)
    write_store(tmp_path / f"frames/{name}.zarr", frames)
    write_store(tmp_path / f"latents/{name}.zarr", lat, tokenizer_hash=tokenizer_hash, latent_shape=[C, hw, hw])
    return str(tmp_path / f"frames/{name}.zarr"), str(tmp_path / f"latents/{name}.zarr")


def load(tmp_path, names, cfg, tokenizer_hash="tok", logs=None):
    paths = [make_video(tmp_path, n, T) for n, T in names]
    mean, std = torch.zeros(3), torch.ones(3)
    return load_windows([n for n, _ in names], [p[0] for p in paths], [p[1] for p in paths], cfg, tokenizer_hash,
                        mean, std, "default", (logs if logs is not None else []).append)


def test_short_video_is_skipped_with_a_warning(tmp_path):
    cfg = cfg_()
    logs = []
    win, skipped = load(tmp_path, [("long", 20), ("short", cfg.span - 1)], cfg, logs=logs)
    assert {k[0] for k in win.keys} == {"long"} and len(win.keys) == 2
    assert win.frames.shape == (2, cfg.span, 3, 8, 8) and win.latents.shape == (2, cfg.span, 3, 4, 4)
    assert skipped and "short" in logs[0] and "context + horizon" in logs[0]


def test_all_videos_too_short_is_an_error(tmp_path):
    with pytest.raises(PipelineError, match=r"short \(6 frames\).*lower evaluations.default.context"):
        load(tmp_path, [("short", 6)], cfg_())


def test_latents_of_another_tokenizer_are_refused(tmp_path):
    with pytest.raises(PipelineError, match="tokenizer_hash"):
        load(tmp_path, [("v", 20)], cfg_(), tokenizer_hash="other")


def test_latent_channels_must_match_the_stats(tmp_path):
    f, lp = make_video(tmp_path, "v", 20, C=4)
    with pytest.raises(PipelineError, match="latent_shape"):
        load_windows(["v"], [f], [lp], cfg_(), "tok", torch.zeros(3), torch.ones(3), "default", print)


def test_dynamics_of_another_tokenizer_is_refused(tmp_path):
    tok = tmp_path / "tokenizer.pt"
    tok.write_bytes(b"tokenizer weights")
    dyn = tmp_path / "dynamics.pt"
    checkpoint.save(dyn, {"kind": "dynamics", "tokenizer_hash": "0123456789abcdef"})
    with pytest.raises(PipelineError, match="did not make the latents .* was trained on"):
        run(dynamics_path=dyn, tokenizer_path=tok, stats_path=tmp_path / "stats.json", videos=[], frame_paths=[],
            latent_paths=[], cfg=cfg_(), metrics_csv=tmp_path / "m.csv", summary_json=tmp_path / "s.json",
            rollout=fake_rollout)


# ------------------------------------------------------------------ config


def test_config_rejects_bad_settings():
    with pytest.raises(PipelineError, match="distinct"):
        cfg_(samplers=[{"name": "a", "kind": "euler", "steps": 2}] * 2)
    with pytest.raises(PipelineError, match="unknown"):
        cfg_(samplers=[{"name": "a", "kind": "euler", "step": 2}])
    with pytest.raises(PipelineError, match="evaluations.default.horizon is 0; expected a value >= 1"):
        cfg_(horizon=0)
    with pytest.raises(PipelineError, match="mean_samples"):
        cfg_(mean_samples=1)
    with pytest.raises(PipelineError, match="unknown.*max_windows"):  # the old fixed count is gone
        from_dict(EvalConfig, {"windows": 4}, "evaluations.default")


# ------------------------------------------------------------------ the real models, tiny


def real_setup(tmp_path, seed: int):
    """Random tiny tokenizer + dynamics checkpoints and stores of 2 videos, as the pipeline writes them."""
    from latentwm.config.dynamics import DynamicsConfig
    from latentwm.config.fields import to_dict
    from latentwm.config.tokenizer import TokenizerConfig
    from latentwm.models.dynamics.transformer import Dynamics
    from latentwm.models.tokenizer import Tokenizer

    torch.manual_seed(0)
    tcfg = TokenizerConfig(base_channels=8, max_mult=1, downsample=2, latent_channels=4, groups=4)
    tok = Tokenizer(tcfg).eval()
    tok_path = tmp_path / "tokenizer.pt"
    checkpoint.save(tok_path, checkpoint.model_state("tokenizer", tok, to_dict(tcfg)))
    h = files.file_hash(tok_path)
    frames, latents = [], []
    for v in range(2):
        x = torch.from_numpy(np.random.default_rng(v).integers(0, 255, (12, 3, 8, 8), dtype=np.uint8))
        with torch.no_grad():
            z = tok.encode(x.float() / 255).numpy().astype(np.float16)
        write_store(tmp_path / f"frames/v{v}.zarr", x.numpy())
        write_store(tmp_path / f"latents/v{v}.zarr", z, tokenizer_hash=h, latent_shape=[4, 4, 4])
        frames.append(str(tmp_path / f"frames/v{v}.zarr"))
        latents.append(str(tmp_path / f"latents/v{v}.zarr"))
    stats = {"mean": [0.0] * 4, "std": [0.5] * 4, "latent_shape": [4, 4, 4], "tokenizer_hash": h}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    torch.manual_seed(seed)
    dcfg = DynamicsConfig(arch="transformer", latent_channels=4, latent_hw=(4, 4), patch=2, dim=32, depth=2, heads=2, temporal_every=2,
                          max_frames=8, k_max=8)
    model = Dynamics(dcfg)
    torch.nn.init.normal_(model.unembed.weight, std=0.1)  # untrained, the residual output layer is 0: copy-last
    dyn = tmp_path / f"dynamics{seed}.pt"
    checkpoint.save(dyn, {**checkpoint.model_state("dynamics", model, to_dict(dcfg)), "stats": stats,
                          "tokenizer_hash": h})
    return dict(dynamics_path=dyn, tokenizer_path=tok_path, stats_path=tmp_path / "stats.json", videos=["v0", "v1"],
                frame_paths=frames, latent_paths=latents)


def test_run_with_real_tiny_models(tmp_path):
    cfg = cfg_(context=3, horizon=2, samplers=[{"name": "e2", "kind": "euler", "steps": 2},
                                               {"name": "s2", "kind": "shortcut", "steps": 2}])
    args = real_setup(tmp_path, seed=0)
    out = {}
    for seed in (0, 1):
        if seed:
            args["dynamics_path"] = real_setup(tmp_path, seed=1)["dynamics_path"]
        summary, samples = run(**args, cfg=cfg, metrics_csv=tmp_path / f"m{seed}.csv", summary_json=tmp_path / f"s{seed}.json",
                               log=lambda m: None)
        out[seed] = read_metrics(tmp_path / f"m{seed}.csv")
        assert json.loads((tmp_path / f"s{seed}.json").read_text())["conditions"].keys() == summary["conditions"].keys()
        assert np.isfinite(out[seed][out[seed].metric != "static_psnr"].value).all() and len(summary["windows"]) == 4
        assert summary["conditions"]["model:e2"]["frames_per_s"] > 0
    # two checkpoints score differently; the baselines do not depend on the checkpoint
    assert not np.allclose(curve(out[0], "model", "psnr", "e2"), curve(out[1], "model", "psnr", "e2"))
    np.testing.assert_allclose(curve(out[0], "ceiling", "psnr"), curve(out[1], "ceiling", "psnr"))
    assert curve(out[0], "ceiling", "latent_mse").max() < 1e-5  # stored latents are this tokenizer's (float16)


# ------------------------------------------------------------------ fake models through the real evaluation
#
# A world the stand-in models can know exactly: a random texture (4x4 pixel blocks, so the pooling
# tokenizer is exact) scrolls one latent pixel per frame under a still overlay (the top HUD_ROWS
# latent rows, a quarter of the frame). Every model is a rule on the last frame it saw.

HUD_ROWS = 2


def world_windows(n: int, cfg: EvalConfig, hw: int = 8) -> Windows:
    g = torch.Generator().manual_seed(1)
    tex = torch.randint(0, 256, (n, 3, hw // 2, hw // 2), generator=g).float() / 255  # blocks of 2 latent pixels:
    tex = tex.repeat_interleave(2, -1).repeat_interleave(2, -2)  # a one-pixel shift keeps half the structure
    seq = []
    for t in range(cfg.span):
        f = tex.clone()
        f[:, :, HUD_ROWS:] = tex[:, :, HUD_ROWS:].roll(t, -1)
        f[:, :, :HUD_ROWS] = 0.8  # the overlay
        seq.append(f)
    z = torch.stack(seq, 1)  # (n, S, 3, hw, hw) = pooled frames
    frames = (z.repeat_interleave(2, -1).repeat_interleave(2, -2) * 255).round().to(torch.uint8)
    return Windows([("vid", i, 0) for i in range(n)], frames, (z - MEAN) / STD)


class WorldModel(torch.nn.Module):
    def __init__(self, kind: str, coef=None):
        super().__init__()
        self.kind, self.coef = kind, coef

    def predict(self, prev, generator):  # (B, C, h, w) normalised -> the next frame
        nxt = prev.clone()
        nxt[:, :, HUD_ROWS:] = prev[:, :, HUD_ROWS:].roll(1, -1)  # the true dynamics
        if self.kind == "blurred":
            return F.avg_pool2d(F.pad(nxt, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        if self.kind == "noise":
            return torch.randn(prev.shape, generator=generator)
        if self.kind == "jitter":  # the truth plus seeded noise: rollouts differ, their mean is closer
            return nxt + 0.3 * torch.randn(prev.shape, generator=generator)
        if self.kind == "coef":  # prev + a (truth - prev), a per window: a PSNR gain of -20 log10 |1 - a| dB
            a = torch.tensor(self.coef[: len(prev)], dtype=prev.dtype).view(-1, 1, 1, 1)
            return prev + a * (nxt - prev)
        if self.kind == "copy":
            return prev
        if self.kind == "no_overlay":
            nxt[:, :, :HUD_ROWS] = (0.7 - MEAN) / STD  # the overlay fades from 0.8 to 0.7
        return nxt


def world_rollout(model, context, horizon, sampler, generator=None, teacher=None, tau_ctx=None):
    prev, out = context[:, -1], []
    for t in range(horizon):
        out.append(model.predict(prev, generator))
        prev = teacher[:, t] if teacher is not None else out[-1]
    return torch.stack(out, 1)


def world_eval(model, n: int = 8, **kw):
    """(metrics DataFrame, summary.json's statistics) of `model` on n world windows, through evaluate_windows."""
    cfg = cfg_(**{"samplers": [{"name": "a", "kind": "euler", "steps": 1}], "mean_samples": 0, "batch_size": n, **kw})
    df, fps, _ = evaluate_windows(model, codec(), world_windows(n, cfg), cfg, world_rollout,
                                  log=lambda m: None)
    return df, build(df, fps, cfg.horizon)


def test_world_oracle_beats_copy_last_everywhere():
    df, s = world_eval(WorldModel("oracle"))
    v = s["conditions"]["model:a"]["verdict"]
    assert v["beats_steps"]["psnr"] == 4 and v["beats_steps"]["ssim"] == 4 and not v["blurred"] and not v["noisy"]
    assert s["verdict"][0].startswith("model:a beats copy_last on psnr at steps 1-4 of 4")
    np.testing.assert_allclose(s["conditions"]["model:a"]["per_step"]["sharpness"], 1.0, atol=1e-6)
    assert s["checks"]["any_model_beats_copy_last_step1"]


def test_a_blurred_model_gets_low_sharpness_and_is_flagged_blurred():
    df, s = world_eval(WorldModel("blurred"))
    c = s["conditions"]["model:a"]
    assert max(c["per_step"]["sharpness"]) < metrics.BLURRED_BELOW
    assert c["verdict"]["blurred"] and c["verdict"]["blurred_steps"] == [1, 2, 3, 4] and not c["verdict"]["noisy"]
    assert "blurred at steps 1-4" in c["verdict"]["text"]
    assert not s["conditions"]["copy_last"]["verdict"]["blurred"]  # the baseline is as sharp as the truth


def test_a_blurred_model_is_never_called_a_win():
    """The blurred world model is ahead of copy-last in PSNR at every step, and beats nothing: the verdict's
    first line says it is blurred, every beats_steps is 0, and no check counts it as beating copy-last."""
    df, s = world_eval(WorldModel("blurred"))
    c = s["conditions"]["model:a"]
    assert c["vs_baseline"]["psnr"]["beats_steps"] == 4, "the paired PSNR gain itself is kept"
    assert c["verdict"]["beats_steps"] == {m.name: 0 for m in METRICS if m.higher_is_better is not None}
    assert s["verdict"][0].startswith("model:a is blurred (sharpness under 0.7 of the truth's at steps 1-4), so it beats nothing")
    assert "beats copy_last" not in s["verdict"][0]
    assert not s["checks"]["any_model_beats_copy_last_step1"]
    _, sharp = world_eval(WorldModel("oracle"))
    assert sharp["conditions"]["model:a"]["verdict"]["beats_steps"]["psnr"] == 4, "a sharp model still can win"


def test_a_sharp_model_that_stands_still_is_named_so_first():
    """A model that moves a fifth of the way toward the truth's next frame (a faint crossfade, the scene
    kept where it was) is sharp and ahead of copy-last in PSNR at every step: its wins stay, and the
    verdict's first words say it stands still, so a better copy is not read as a prediction of motion."""
    df, s = world_eval(WorldModel("coef", coef=[0.2] * 8))
    c = s["conditions"]["model:a"]
    assert not c["verdict"]["blurred"] and c["verdict"]["beats_steps"]["psnr"] == 4
    assert c["verdict"]["still_steps"] == [1, 2, 3, 4] and max(c["per_step"]["motion"]) < metrics.STILL_BELOW
    assert s["verdict"][0].startswith("model:a stands still (motion under 0.5 of the truth's at steps 1-4): it does not move")
    _, moving = world_eval(WorldModel("oracle"))
    assert moving["verdict"][0].startswith("model:a beats copy_last on psnr"), "a model that moves is not called still"


def test_best_of_n_picks_the_rollout_closest_to_the_truth():
    """model_best: per window the best of the mean_samples rollouts by PSNR; at least as good as one
    rollout in PSNR, as sharp (one sample, not an average), paired with copy-last."""
    df, s = world_eval(WorldModel("jitter"), mean_samples=4)
    best, one, mean = (s["conditions"][f"{c}:a"] for c in ("model_best", "model", "model_mean"))
    assert best["baseline"] == "copy_last" and "vs_baseline" in best
    assert np.mean(best["per_step"]["psnr"]) > np.mean(one["per_step"]["psnr"])
    assert abs(np.mean(best["per_step"]["sharpness"]) - np.mean(one["per_step"]["sharpness"])) < 0.1
    assert np.mean(mean["per_step"]["sharpness"]) < np.mean(best["per_step"]["sharpness"]) - 0.1
    w = df[(df.condition == "model_best") & (df.metric == "psnr")].groupby("window").value.mean()
    draws = df[(df.condition == "model") & (df.metric == "psnr")].groupby("window").value.mean()
    assert (w >= draws - 1e-9).all(), "per window, the best draw is at least the first draw"


def test_a_noise_model_beats_copy_last_at_no_step():
    df, s = world_eval(WorldModel("noise"))
    c = s["conditions"]["model:a"]
    assert c["verdict"]["beats_steps"] == {m.name: 0 for m in METRICS if m.higher_is_better is not None}
    assert c["vs_baseline"]["psnr"]["worse_steps"] == [1, 2, 3, 4]
    assert "psnr at no step" in c["verdict"]["text"] and c["verdict"]["noisy"]
    assert not s["checks"]["any_model_beats_copy_last_step1"]


def test_a_mean_gain_inside_its_interval_is_no_win():
    gains = np.array([3.0, -2.5, 3.0, -2.5, 3.0, -2.5, 0.5, 0.0])  # dB over copy-last at step 1, per window
    df, s = world_eval(WorldModel("coef", coef=list(1 - 10 ** (-gains / 20))))
    c = s["conditions"]["model:a"]
    r = c["vs_baseline"]["psnr"]
    assert 0 < r["diff"][0] < 1.5  # about gains.mean() (clamping to [0, 1] trims the losses a little)
    assert c["per_step"]["psnr"][0] > s["conditions"]["copy_last"]["per_step"]["psnr"][0]  # the mean is higher ...
    assert r["ci_low"][0] < 0 < r["ci_high"][0]  # ... by less than its interval
    assert c["verdict"]["beats_steps"]["psnr"] == 0 and "psnr at no step" in c["verdict"]["text"]


def test_teacher_forced_is_paired_with_copy_previous():
    # A model that copies the last frame it saw: teacher-forced, it shows the real previous frame,
    # which beats copy_last from step 2 on but is exactly copy_previous: no skill, no win.
    df, s = world_eval(WorldModel("copy"))
    tf = s["conditions"]["teacher_forced:a"]
    assert tf["baseline"] == "copy_previous" and tf["verdict"]["baseline"] == "copy_previous"
    np.testing.assert_allclose(tf["vs_baseline"]["psnr"]["diff"], 0.0, atol=1e-9)
    assert tf["verdict"]["beats_steps"]["psnr"] == 0
    assert all(np.array(tf["per_step"]["psnr"][1:]) > np.array(s["conditions"]["copy_last"]["per_step"]["psnr"][1:]))
    assert "copy_previous == teacher_forced:a" in s["checks"]["identical_conditions"]
    # the oracle's teacher-forced predictions do beat copy_previous
    _, s = world_eval(WorldModel("oracle"))
    assert s["conditions"]["teacher_forced:a"]["verdict"]["beats_steps"]["psnr"] == 4


def test_static_psnr_catches_a_model_that_destroys_the_overlay():
    df, s = world_eval(WorldModel("no_overlay"))
    model, copy = (np.array(s["conditions"][n]["per_step"]["static_psnr"]) for n in ("model:a", "copy_last"))
    np.testing.assert_allclose(model, 20.0, atol=0.1)  # off by 0.1: 20 dB ...
    assert (copy > 60).all()  # ... where copy-last keeps the overlay (up to the PSNR cap)
    assert s["conditions"]["model:a"]["vs_baseline"]["static_psnr"]["worse_steps"] == [1, 2, 3, 4]
    assert s["conditions"]["model:a"]["verdict"]["beats_steps"]["psnr"] == 4  # PSNR alone would call it a win
    assert s["conditions"]["model:a"]["verdict"]["beats_steps"]["static_psnr"] == 0


def test_model_mean_averages_rollouts_of_the_first_sampler():
    df, s = world_eval(WorldModel("jitter"), samplers=[{"name": "a", "kind": "euler", "steps": 1},
                                                             {"name": "b", "kind": "shortcut", "steps": 1}],
                       mean_samples=4)
    assert "model_mean:a" in s["conditions"] and "model_mean:b" not in s["conditions"]
    mm, one = s["conditions"]["model_mean:a"], s["conditions"]["model:a"]
    assert mm["baseline"] == "copy_last"
    assert mm["per_step"]["psnr"][-1] > one["per_step"]["psnr"][-1]  # the mean of noisy rollouts wins PSNR ...
    assert mm["per_step"]["sharpness"][-1] < one["per_step"]["sharpness"][-1]  # ... by being smoother


def test_each_sampler_runs_at_its_own_temperature():
    """A sampler's temperature reaches its rollouts (single, teacher-forced and the mean): the same noisy
    model scores higher when its noise is cooled, the baselines do not move, another sampler neither."""
    samplers = lambda t: [{"name": "a", "kind": "euler", "steps": 1, "temperature": t},  # noqa: E731
                          {"name": "b", "kind": "euler", "steps": 1}]
    win = ramp_windows(3, cfg_())
    hot, _, _ = evaluate(StepModel(0.0, noise=0.4), win, cfg_(samplers=samplers(1.0), mean_samples=2))
    cool, _, _ = evaluate(StepModel(0.0, noise=0.4), win, cfg_(samplers=samplers(0.25), mean_samples=2))
    for condition in ("model", "teacher_forced", "model_mean"):
        assert (curve(cool, condition, "psnr", "a") > curve(hot, condition, "psnr", "a") + 1).all(), condition
    np.testing.assert_allclose(curve(cool, "model", "psnr", "b"), curve(hot, "model", "psnr", "b"))
    np.testing.assert_allclose(curve(cool, "copy_last", "psnr"), curve(hot, "copy_last", "psnr"))
    with pytest.raises(PipelineError, match="temperature"):
        cfg_(samplers=[{"name": "a", "kind": "euler", "steps": 1, "temperature": 0}])
