"""Tokenizer model, latent stores and stats, the collapse refusal, and this stage in the real DAG."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import zarr
from conftest import job_counts, snakemake

from latentwm.config.dynamics import DataConfig
from latentwm.config.fields import from_dict
from latentwm.config.tokenizer import TokenizerConfig, TokenizerStage
from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.core.image import to_float, to_uint8
from latentwm.data.store import StoreWriter, open_store, video_store
from latentwm.data.windows import LatentWindows
from latentwm.models import checkpoint
from latentwm.models.tokenizer import Tokenizer
from latentwm.training.encode import encode_latents, latent_stats
from latentwm.training.fit_tokenizer import check_collapse, evaluate, fit

TINY = TokenizerConfig(base_channels=4, max_mult=2, downsample=4, latent_channels=3, groups=2)


def frames_store(path, n=20, size=16, seed=0):
    data = np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    attrs = {"source": "s", "fps": 15, "height": size, "width": size}
    with StoreWriter(path, (3, size, size), "uint8", 8, attrs) as w:
        w.append(data)
        w.commit()
    return str(path)


def test_encode_decode_shapes_and_dtypes():
    m = Tokenizer(TINY)
    x = torch.rand(2, 3, 16, 24)
    z = m.encode(x)
    assert z.shape == (2, 3, 4, 6) and z.dtype == torch.float32 and z.abs().max() < 1  # tanh-bounded
    assert m.decode(z).shape == (2, 3, 16, 24)
    loss, logs = m(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8))
    assert loss.ndim == 0 and loss.requires_grad and math.isfinite(float(logs["psnr"]))
    u = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    assert torch.equal(to_uint8(to_float(u)), u) and to_uint8(torch.tensor([-1.0, 2.0])).tolist() == [0, 255]


def test_masking_only_in_training():
    m = Tokenizer(TokenizerConfig(base_channels=4, max_mult=2, downsample=2, latent_channels=2, groups=2, mask_ratio=0.5, mask_patch=4))
    x = torch.rand(3, 3, 16, 16)
    masked = m.mask(x)
    hidden = (masked == 0.5) & (x != 0.5)
    assert 0 < hidden.float().mean() < 1  # some 4x4 patches replaced by grey, others kept
    assert torch.equal(masked[~hidden], x[~hidden])
    frames = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    m.eval()
    assert torch.equal(m(frames)[0], m(frames)[0])  # eval: no mask, deterministic


def test_augmentation_flips_and_permutes_channels_in_training_only():
    m = Tokenizer(TokenizerConfig(base_channels=4, max_mult=2, downsample=2, latent_channels=2, groups=2, augment=True))
    x = torch.rand(16, 3, 8, 8)
    y = m.augment(x)
    assert y.shape == x.shape and not torch.equal(x, y)
    # each frame keeps its pixel values, only rearranged
    assert torch.equal(y.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    frames = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    m.eval()
    assert torch.equal(m(frames)[0], m(frames)[0])


def test_augmentation_keeps_upright_and_colours_where_told():
    cfg = dict(base_channels=4, max_mult=2, downsample=2, latent_channels=2, groups=2, augment=True, vertical_flip=False)
    torch.manual_seed(0)
    x = torch.rand(256, 3, 8, 8)
    y = Tokenizer(TokenizerConfig(**cfg, recolour=0.0)).augment(x)
    mirrored = (y == x.flip(3)).flatten(1).all(1)
    assert torch.all(mirrored | (y == x).flatten(1).all(1))  # upright, own colours: at most mirrored
    assert 0.3 < mirrored.float().mean() < 0.7
    y = Tokenizer(TokenizerConfig(**cfg, recolour=0.5)).augment(x)
    own = ((y == x) | (y == x.flip(3))).flatten(1).all(1).float().mean()
    assert 0.45 < own < 0.72  # half kept, plus the permutations that happen to be the identity (1/6)


def test_training_crops_are_windows_of_each_frame():
    m = Tokenizer(TokenizerConfig(base_channels=4, max_mult=2, downsample=2, latent_channels=2, groups=2, crop=0.5, augment=False))
    x = torch.rand(6, 3, 10, 12)
    y = m.crop(x)
    assert y.shape == (6, 3, 4, 6)  # half of each side, down to a multiple of downsample
    for k in range(6):  # each window is cut from its own frame
        windows = x[k].unfold(1, 4, 1).unfold(2, 6, 1)  # (3, 7, 7, 4, 6)
        assert (windows == y[k][:, None, None]).flatten(3).all(3).all(0).any()
    assert TokenizerConfig(crop=0.5).crop_size(64, 64) == (32, 32)
    assert TokenizerConfig(crop=0.01, downsample=4).crop_size(64, 48) == (4, 4)  # never under one latent cell
    frames = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    m(frames)  # training: the loss on 4 x 4 windows
    m.eval()
    assert torch.equal(m(frames)[0], m(frames)[0])  # eval: whole frames, deterministic
    with pytest.raises(PipelineError, match="tokenizer.model.crop"):
        from_dict(TokenizerConfig, {"crop": 0}, "tokenizer.model")


def test_the_shift_term_moves_frames_and_latents_alike_and_trains():
    """`moved` moves by whole and part cells (bilinear, border repeated) and scales a cell to pixels;
    with shift_weight the training loss carries the moved latents' decoding error, and only in training."""
    from latentwm.models.tokenizer import moved

    row = torch.arange(4.0).view(1, 1, 1, 4).expand(2, 1, 4, 4)
    out = moved(row, torch.tensor([[1.0, 0.0], [0.5, 0.0]]), 1)[:, 0, 0]
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 1.0, 2.0], [0.0, 0.5, 1.5, 2.5]]))
    img = torch.rand(1, 3, 8, 8)
    assert torch.allclose(moved(img, torch.tensor([[-1.0, 1.0]]), 2)[..., 2:, :6], img[..., :6, 2:], atol=1e-6)
    m = Tokenizer(TokenizerConfig(base_channels=4, max_mult=2, downsample=4, latent_channels=3, groups=2, shift_weight=1.0))
    frames = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    loss, logs = m(frames)
    assert logs["shift_mse"] > 0
    loss.backward()
    assert m.decoder.conv_out.weight.grad.abs().sum() > 0
    m.eval()
    assert "shift_mse" not in m(frames)[1]


def test_config_refusals():
    with pytest.raises(PipelineError, match="tokenizer.model.downsample is 3; expected one of: 1, 2, 4"):
        from_dict(TokenizerConfig, {"downsample": 3}, "tokenizer.model")
    with pytest.raises(PipelineError, match="divisible by groups"):
        TokenizerConfig(base_channels=12, groups=8)
    with pytest.raises(PipelineError, match="tokenizer.model.widht is unknown"):
        from_dict(TokenizerConfig, {"widht": 3}, "tokenizer.model")
    with pytest.raises(PipelineError, match="not divisible by tokenizer.model.downsample"):
        Tokenizer(TINY).latent_shape(30, 32)


def test_latent_store_round_trip_and_stats(tmp_path):
    m = Tokenizer(TINY).eval()
    src = frames_store(tmp_path / "frames" / "v.zarr", n=21)
    n = encode_latents(m, src, tmp_path / "lat" / "v.zarr", "h123", batch_size=4, chunk_frames=8, log=lambda s: None)
    arr = open_store(tmp_path / "lat" / "v.zarr", {"tokenizer_hash": "h123", "latent_shape": [3, 4, 4]})
    assert n == 21 and arr.shape == (21, 3, 4, 4) and arr.dtype == np.float16 and arr.chunks[0] == 8
    a = dict(arr.attrs)
    assert (a["video"], a["fps"], a["source"], a["height"], a["width"], a["frames_store"]) == ("v", 15, "s", 16, 16, src)
    want = m.encode(to_float(torch.from_numpy(np.asarray(zarr.open_array(src, mode="r")[:]))))
    assert np.allclose(arr[:], want.detach().numpy(), atol=2e-3)  # float16 rounding only
    stats = latent_stats([tmp_path / "lat" / "v.zarr"], "h123", log=lambda s: None)
    z = arr[:].astype(np.float64)
    assert np.allclose(stats["mean"], z.mean((0, 2, 3))) and np.allclose(stats["std"], z.std((0, 2, 3)))
    assert stats["latent_shape"] == [3, 4, 4] and stats["videos"] == ["v"]
    with pytest.raises(PipelineError, match="tokenizer_hash"):
        latent_stats([tmp_path / "lat" / "v.zarr"], "otherhash")
    with pytest.raises(PipelineError, match="latent_shape"):
        LatentWindows([tmp_path / "lat" / "v.zarr"], DataConfig(window=4, batch_size=2), expect={"tokenizer_hash": "h123", "latent_shape": [8, 4, 4]})


def test_collapse_check_fires_on_a_collapsed_tokenizer():
    m = Tokenizer(TINY)
    torch.nn.init.zeros_(m.decoder.conv_out.weight)  # the decoder now outputs its bias: a constant image
    frames = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    result, recon = evaluate(m, frames)
    assert result["collapse_ratio"] < 1e-6 and recon.shape == (6, 3, 16, 16)
    with pytest.raises(PipelineError, match=r"^tokenizer collapsed: output varies 0\.000 as much as input.*likely causes"):
        check_collapse(result["collapse_ratio"], 0.5)
    check_collapse(0.9, 0.5)


def test_fit_refuses_a_collapsed_run_and_leaves_no_curve(tmp_path):
    train = [frames_store(tmp_path / f"t{i}.zarr", seed=i) for i in range(2)]
    val = [frames_store(tmp_path / "v.zarr", seed=9)]
    cfg = {
        "model": {"base_channels": 4, "max_mult": 2, "downsample": 4, "latent_channels": 3, "groups": 2},
        "train": {"steps": 3, "batch_size": 4, "warmup": 1, "log_every": 1},
        "val_frames": 6,
        "collapse_threshold": 0.0,  # 3 steps on noise: judged by the second call only
    }
    def outputs(d):
        d.mkdir()
        return SimpleNamespace(checkpoint=d / "tokenizer.pt", metrics=d / "metrics.json", curve=d / "c.csv", recon=d / "r.png")

    inputs, quiet = SimpleNamespace(train=train, val=val), lambda s: None
    ok = outputs(tmp_path / "ok")
    fit(from_dict(TokenizerStage, cfg, "tokenizer"), inputs, ok, tmp_path / "r.pt", log=quiet)
    result = json.loads(ok.metrics.read_text())
    assert result["steps"] == 3 and result["val_frames"] == 6 and math.isfinite(result["psnr"])
    assert result["latent_shape"] == [3, 4, 4] and ok.curve.exists() and ok.recon.exists()
    assert checkpoint.load(ok.checkpoint)["step"] == 3
    bad = outputs(tmp_path / "bad")
    with pytest.raises(PipelineError, match="tokenizer collapsed"):  # no real tokenizer varies 10x its input
        fit(from_dict(TokenizerStage, {**cfg, "collapse_threshold": 10.0}, "tokenizer"), inputs, bad, tmp_path / "r2.pt", log=quiet)
    assert not list((tmp_path / "bad").iterdir())  # not even the curve


# The stage in the real DAG (tests/tiny_config.yaml, run once per session by the tiny_run fixture).


@pytest.mark.slow
def test_tiny_run_tokenizer_outputs(tiny_run):
    ckpt = tiny_run / "results/tokenizer/tokenizer.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state["kind"] == "tokenizer"
    checkpoint.build_model(ckpt, kind="tokenizer")
    metrics = json.loads((tiny_run / "results/tokenizer/metrics.json").read_text())
    assert math.isfinite(metrics["psnr"]) and metrics["psnr"] > 5 and metrics["collapse_ratio"] > 0
    assert metrics["moved_psnr"] != metrics["baseline_moved_copy_psnr"]  # both measured, on the same moved frames
    assert (tiny_run / "results/tokenizer/reconstructions.png").stat().st_size > 0
    assert (tiny_run / "results/tokenizer/train_curve.csv").read_text().startswith("step,")
    assert not (tiny_run / "results/tokenizer/resume.pt").exists()


@pytest.mark.slow
def test_tiny_run_latents_and_stats(tiny_run):
    h = files.file_hash(tiny_run / "results/tokenizer/tokenizer.pt")
    splits = json.loads((tiny_run / "results/splits.json").read_text())
    shape = json.loads((tiny_run / "results/tokenizer/metrics.json").read_text())["latent_shape"]
    # one encode job per split here (each holds fewer than latents.videos_per_job videos): its folder
    # holds exactly that split's stores
    for split in ("train", "val", "test"):
        shard = tiny_run / f"results/latents/{split}_000"
        assert sorted(p.stem for p in shard.glob("*.zarr")) == splits[split], split
    for video in splits["train"] + splits["val"] + splits["test"]:
        arr = open_store(video_store(tiny_run / "results/latents", video), {"tokenizer_hash": h, "latent_shape": shape})
        frames = open_store(tiny_run / f"results/frames/{video}.zarr")
        assert arr.dtype == np.float16 and arr.shape == (frames.shape[0], *shape)
        assert arr.attrs["video"] == video and arr.attrs["fps"] == frames.attrs["fps"]
    stats = json.loads((tiny_run / "results/latents/stats.json").read_text())
    assert stats["tokenizer_hash"] == h and stats["videos"] == sorted(splits["train"])
    assert len(stats["mean"]) == len(stats["std"]) == shape[0] and min(stats["std"]) > 0


@pytest.mark.slow
def test_changing_the_tokenizer_reruns_it_and_downstream_only(tiny_run):
    cfg = yaml_config(tiny_run)
    cfg["tokenizer"]["train"]["steps"] += 1
    out = snakemake(tiny_run, None, "-n", "--configfile", str(write_config(tiny_run, cfg))).stdout
    jobs = job_counts(out)
    for rule in ("train_tokenizer", "encode_latents", "latent_stats", "train_dynamics"):
        assert rule in jobs, (rule, out[-3000:])
    assert not {"download", "extract_frames", "splits"} & set(jobs)


def yaml_config(workdir):
    import yaml

    return yaml.safe_load((workdir / "config.yaml").read_text())


def write_config(workdir, cfg):
    import yaml

    path = workdir / ".snakemake" / "changed_tokenizer.yaml"  # never touch tiny_run's config.yaml
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
