"""The dynamics network: causality, KV cache, configs, checkpoints, and the train_dynamics rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import cache_matches_full_forward

from latentwm.config.dynamics import SIZES, DynamicsConfig, DynamicsStage
from latentwm.config.fields import from_dict, to_dict
from latentwm.core.errors import PipelineError
from latentwm.data.store import StoreWriter
from latentwm.models import checkpoint
from latentwm.models.codec import Codec
from latentwm.models.dynamics.transformer import Dynamics
from latentwm.training import fit_dynamics
from latentwm.training.fit_dynamics import collapse_probe

ROOT = Path(__file__).resolve().parents[1]


def tiny_model(max_frames=4, seed=0, **kw) -> Dynamics:
    """A 2-block model on 4x8x8 latents; adaLN/final layers randomised so no block is the identity."""
    torch.manual_seed(seed)
    cfg = DynamicsConfig(
        size="tiny", arch="transformer", latent_channels=4, latent_hw=(8, 8), dim=32, depth=2, heads=2,
        temporal_every=1, max_frames=max_frames, k_max=8, **kw,
    )  # fmt: skip
    m = Dynamics(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.1)
    return m.eval()


def test_output_shape_and_presets():
    m = tiny_model()
    z = torch.randn(2, 3, 4, 8, 8)
    assert m(z, torch.rand(2, 3), torch.full((2, 3), 0.25)).shape == z.shape
    small = DynamicsConfig(size="small", latent_channels=256, latent_hw=(16, 16))
    assert small.arch == "transformer"
    n = sum(p.numel() for p in Dynamics(small).parameters())
    assert 50e6 < n < 75e6, n  # "near 60M", the seeds' size
    # a preset fills unset fields only; set fields win
    c = DynamicsConfig(size="small", dim=64, heads=4, latent_channels=8, latent_hw=(16, 16))
    assert c.dim == 64 and c.depth == SIZES["small"]["depth"]


def test_temporal_attention_is_causal():
    m = tiny_model(max_frames=8)
    z, tau = torch.randn(2, 6, 4, 8, 8), torch.rand(2, 6)
    z2 = z.clone()
    z2[:, 4] += 1.0  # perturb frame 4
    with torch.no_grad():
        y, y2 = m(z, tau), m(z2, tau)
    diff = (y - y2).abs().amax((2, 3, 4))  # (B, T)
    assert diff[:, :4].max() == 0  # earlier frames do not see the future
    assert diff[:, 4:].min() > 1e-4  # the perturbed frame and later ones do


@pytest.mark.parametrize("T", [5, 11])  # within the window, and past it (sliding window)
def test_kv_cache_equals_full_forward(T):
    m = tiny_model(max_frames=4)
    cache = cache_matches_full_forward(m, torch.randn(2, T, 4, 8, 8), torch.rand(2, T))
    assert cache.k[0].shape[2] == 3  # at most max_frames - 1 frames kept


def test_grad_checkpointing_same_gradients():
    m = tiny_model().train()
    z, tau = torch.randn(2, 3, 4, 8, 8), torch.rand(2, 3)
    m(z, tau).square().mean().backward()
    g1 = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.set_grad_checkpointing(True)
    m(z, tau).square().mean().backward()
    for a, p in zip(g1, m.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5)


def test_shape_mismatch_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="latent_channels is 4 but the latents have 8"):
        DynamicsConfig(latent_channels=4).resolve([8, 16, 16], max_frames=8)
    cfg = DynamicsConfig(size="tiny").resolve([8, 16, 16], max_frames=8)
    assert cfg.latent_channels == 8 and cfg.latent_hw == (16, 16)
    with pytest.raises(PipelineError, match="expects latents of 4x8x8"):
        tiny_model()(torch.randn(1, 2, 8, 8, 8), torch.rand(1, 2))
    # the training script: config channels vs the stores / stats
    stores, stats = write_latents(tmp_path, n=2, frames=12, C=4)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())["dynamics"]
    cfg["model"]["latent_channels"] = 8
    with pytest.raises(PipelineError, match="latent_channels"):
        fit_dynamics.build(from_dict(DynamicsStage, cfg), stats, stores, print)
    bad = dict(stats, latent_shape=[8, 4, 4])  # stores whose attrs differ from the stats
    with pytest.raises(PipelineError, match="latent_shape"):
        fit_dynamics.build(from_dict(DynamicsStage, {**cfg, "model": {"size": "tiny"}}), bad, stores, print)
    with pytest.raises(PipelineError, match="pixel_weight > 0 needs the tokenizer that made the latents"):
        pixel = {**cfg, "model": {"size": "tiny"}, "objective": {**cfg["objective"], "pixel_weight": 100.0}}
        fit_dynamics.build(from_dict(DynamicsStage, pixel), stats, stores, print)


@pytest.mark.parametrize("residual", [False, True])
def test_checkpoint_roundtrip_and_probe(tmp_path, residual):
    m = tiny_model(residual=residual)
    checkpoint.save(tmp_path / "d.pt", checkpoint.model_state("dynamics", m, to_dict(m.cfg)))
    m2 = checkpoint.build_model(tmp_path / "d.pt", kind="dynamics")
    z, tau = torch.randn(1, 3, 4, 8, 8), torch.rand(1, 3)
    torch.testing.assert_close(m(z, tau), m2(z, tau))
    with torch.no_grad():
        r = collapse_probe(m.cfg)(m)
        assert not r["collapsed"] and r["output_diff"] > 1e-3
        for p in m.unembed.parameters():
            p.zero_()  # an output layer stuck at zero: every input gives the same output
        # ... unless the model predicts the change: then it still copies the previous frame
        assert collapse_probe(m.cfg)(m)["collapsed"] != residual


def test_residual_model_starts_as_copy_of_the_previous_frame():
    torch.manual_seed(0)
    cfg = DynamicsConfig(size="tiny", arch="transformer", latent_channels=4, latent_hw=(8, 8), dim=32, depth=2, heads=2,
                         temporal_every=1, k_max=8, residual=True, max_frames=4)  # fmt: skip
    m = Dynamics(cfg)  # untrained: zero-initialised output layer
    z = torch.randn(2, 3, 4, 8, 8)
    tau = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.5]])
    out = m(z, tau)
    torch.testing.assert_close(out[:, 1:2], z[:, :1])  # a clean previous frame is copied as it is
    torch.testing.assert_close(out[0, 2], z[0, 1])
    torch.testing.assert_close(out[1, 2], torch.zeros_like(z[1, 1]))  # a pure-noise one adds nothing
    torch.testing.assert_close(out[:, 0], torch.zeros_like(z[:, 0]))  # the first frame has no previous one


# ---- helpers shared with the other dynamics tests (tiny zarr latent stores) ----


def write_latents(root: Path, n=3, frames=16, C=4, hw=(8, 8), seed=0, tokenizer_hash="tok0"):
    """n latent stores of smoothly moving blobs + stats.json; returns (store paths, stats dict)."""
    rng = np.random.default_rng(seed)
    paths, allz = [], []
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    for i in range(n):
        pos, vel = rng.uniform(2, 6, 2), rng.uniform(-0.5, 0.5, 2)
        z = []
        for t in range(frames):
            p = pos + vel * t
            blob = np.exp(-((yy - p[0]) ** 2 + (xx - p[1]) ** 2) / 4.0)
            z.append(np.stack([blob * (c + 1) / C for c in range(C)]))
        z = np.asarray(z, np.float32)  # (T, C, h, w)
        allz.append(z)
        path = root / "latents" / f"v{i}.zarr"
        attrs = {"tokenizer_hash": tokenizer_hash, "latent_shape": [C, *hw], "fps": 15}
        with StoreWriter(path, (C, *hw), "float16", 8, attrs, compress=False) as w:
            w.append(z)
            w.commit()
        paths.append(str(path))
    a = np.concatenate(allz)
    stats = {
        "mean": a.mean((0, 2, 3)).tolist(),
        "std": (a.std((0, 2, 3)) + 1e-3).tolist(),
        "tokenizer_hash": tokenizer_hash,
        "latent_shape": [C, *hw],
    }
    (root / "latents" / "stats.json").write_text(json.dumps(stats))
    return paths, stats


# ---- the rule, on the shared end-to-end run ----


@pytest.mark.slow
def test_tiny_run_dynamics_outputs(tiny_run):
    d = tiny_run / "results" / "dynamics"
    ckpt = checkpoint.load(d / "dynamics.pt")  # weights_only
    model = checkpoint.build_model(ckpt, kind="dynamics")
    stats = json.loads((tiny_run / "results" / "latents" / "stats.json").read_text())
    assert ckpt["tokenizer_hash"] == stats["tokenizer_hash"] and ckpt["stats"]["mean"] == stats["mean"]
    C, h, w = stats["latent_shape"]
    assert (model.cfg.latent_channels, *model.cfg.latent_hw) == (C, h, w)
    with torch.no_grad():
        assert model(torch.randn(1, 2, C, h, w), torch.rand(1, 2)).shape == (1, 2, C, h, w)
    health = json.loads((d / "health.json").read_text())
    assert health["nan_stop"] is None and health["collapse"]["collapsed"] is False
    assert health["steps"] == ckpt["step"]
    rows = list(csv.DictReader(open(d / "train_curve.csv")))
    # per-timestep loss at the target positions only: window 4 with 3 context frames -> position 3
    assert rows and {"loss", "loss_std", "copy_last_loss", "tau_min", "tau_max", "loss_t_3", "grad_norm", "loss_pixel"} <= set(rows[0])
    assert all(0 < float(r["loss_pixel"]) < 1 for r in rows)  # the tiny config's pixel loss, in [0, 1] pixel units
    assert "loss_t_0" not in rows[0]
    assert not (d / "resume.pt").exists()  # deleted after success
    assert (tiny_run / "logs" / "train_dynamics.log").read_text().count("step") >= 1
    # the pixel loss's decoder: the tokenizer that made these latents, and only that one
    tok = tiny_run / "results" / "tokenizer" / "tokenizer.pt"
    frames = Codec.load(tok, stats).pixels(torch.zeros(2, C, h, w))
    assert frames.shape[:2] == (2, 3) and frames.shape[2] > h and not frames.requires_grad
    with pytest.raises(PipelineError, match="did not make the latents.*rerun encode_latents"):
        Codec.load(tok, {**stats, "tokenizer_hash": "0" * 16})


@pytest.mark.slow
def test_dry_run_after_dynamics_change(tiny_run, run_snakemake):
    from conftest import job_counts, tiny_config

    cfg = tiny_config()
    cfg["dynamics"].setdefault("objective", {})["tau_ctx"] = 0.2
    jobs = set(job_counts(run_snakemake(tiny_run, cfg, "-n", "--quiet", "rules").stdout))
    assert "train_dynamics" in jobs and "evaluate_rollouts" in jobs, jobs
    for upstream in ("download", "extract_frames", "train_tokenizer", "encode_latents", "latent_stats"):
        assert upstream not in jobs, jobs


# ---- training through the shared loop: resume equivalence and the NaN stop ----


def train_parts(tmp_path, steps=6, lr=1e-3, checkpoint_every=3):
    """Trainable, batches, TrainConfig as train_dynamics builds them, on tiny stores."""
    stores, stats = write_latents(tmp_path, n=2, frames=12, C=4)
    cfg = {
        "model": {"size": "tiny", "dim": 32, "depth": 2, "heads": 2, "temporal_every": 1, "k_max": 8},
        "objective": {"schedule": "context", "shortcut": True},
        "data": {"window": 4, "stride": 1, "batch_size": 3, "alternating": {"enabled": False}},
        "train": {"steps": steps, "lr": lr, "warmup": 2, "log_every": 2, "checkpoint_every": checkpoint_every},
    }
    stage = from_dict(DynamicsStage, cfg, "dynamics")
    torch.manual_seed(0)
    return (*fit_dynamics.build(stage, stats, stores, print), stage.train)


def run_train(tmp_path, parts, name="a", batches=None):
    from latentwm.training.loop import train

    flow, data, tcfg = parts
    model = flow.network
    return train(
        flow, batches or data, tcfg, name="dynamics", model_config=to_dict(model.cfg),
        resume_path=tmp_path / f"{name}_resume.pt", curve_path=tmp_path / f"{name}.csv", fingerprint="fp",
        log=lambda m: None, probe=collapse_probe(model.cfg), health_path=tmp_path / f"{name}_health.json",
    )  # fmt: skip


class Interrupt(Exception):
    pass


class StopAt(torch.utils.data.Dataset):
    """The same batches, but fetching batch `at` raises (a job killed mid-run); or yields inf."""

    def __init__(self, data, at, inf=False):
        self.data, self.at, self.inf = data, at, inf

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        if i == self.at:
            if not self.inf:
                raise Interrupt
            return torch.full_like(self.data[i], float("inf"))
        return self.data[i]


def test_resume_equals_uninterrupted(tmp_path):
    straight = run_train(tmp_path, train_parts(tmp_path), "a")
    parts = train_parts(tmp_path)
    with pytest.raises(Interrupt):
        run_train(tmp_path, parts, "b", StopAt(parts[1], at=4))
    assert (tmp_path / "b_resume.pt").exists()  # written at step 3
    resumed = run_train(tmp_path, train_parts(tmp_path), "b")
    assert resumed["step"] == straight["step"] == 6
    for k, v in straight["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, msg=k)
    assert resumed["rows"][-1]["loss"] == pytest.approx(straight["rows"][-1]["loss"], rel=1e-5)


def test_nan_stop_names_step_and_keeps_checkpoint(tmp_path):
    parts = train_parts(tmp_path, steps=8, checkpoint_every=2)
    with pytest.raises(PipelineError, match=r"step 5: loss is (nan|inf).*learning rate.*last good checkpoint kept"):
        run_train(tmp_path, parts, "c", StopAt(parts[1], at=5, inf=True))
    assert checkpoint.load(tmp_path / "c_resume.pt")["step"] == 4
    health = json.loads((tmp_path / "c_health.json").read_text())
    assert health["nan_stop"]["step"] == 5
    # an absurd learning rate blows up too, with the same one-line error
    with pytest.raises(PipelineError, match=r"training stopped at step \d+: (loss|gradient norm) is"):
        run_train(tmp_path, train_parts(tmp_path, steps=60, lr=1e12), "d")


def test_checkpoint_from_before_residual_rebuilds_without_it(tmp_path):
    m = tiny_model(residual=False)
    cfg = to_dict(m.cfg)
    for key in ("residual", "source", "source_noise"):
        del cfg[key]  # saved before the fields existed
    checkpoint.save(tmp_path / "old.pt", checkpoint.model_state("dynamics", m, cfg))
    m2 = checkpoint.build_model(tmp_path / "old.pt", kind="dynamics")
    assert m2.cfg.residual is False
    assert (m2.cfg.source, m2.cfg.source_noise) == ("noise", 1.0)  # its flow started at pure noise
    z, tau = torch.randn(1, 3, 4, 8, 8), torch.rand(1, 3)
    torch.testing.assert_close(m(z, tau), m2(z, tau))
