"""FrameBatches and LatentWindows over real zarr stores: determinism, windows, refusals, workers."""

from pathlib import Path

import numpy as np
import pytest
import torch

from latentwm.config.dynamics import AlternatingConfig, DataConfig
from latentwm.core.errors import PipelineError
from latentwm.data.store import StoreWriter
from latentwm.data.windows import FrameBatches, LatentWindows

C, H, W = 2, 4, 4
ATTRS = {"tokenizer_hash": "abc", "latent_shape": [C, H, W]}


def latent_store(path, n, video_id, attrs=ATTRS, chunk=8):
    """Latents whose every value is video_id * 1000 + frame index: windows can be checked by value."""
    t = np.arange(n, dtype=np.float32)[:, None, None, None] + 1000 * video_id
    with StoreWriter(path, (C, H, W), "float16", chunk, attrs, compress=False) as w:
        w.append(np.broadcast_to(t, (n, C, H, W)).astype(np.float16))
        w.commit()
    return str(path)


def frame_store(path, n, seed):
    data = np.random.default_rng(seed).integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    with StoreWriter(path, (3, 8, 8), "uint8", 8, {"source": "t", "fps": 15}) as w:
        w.append(data)
        w.commit()
    return str(path), data


@pytest.fixture
def stores(tmp_path):
    return [latent_store(tmp_path / f"v{i}.zarr", n, i) for i, n in enumerate([40, 25, 33])]


def test_frame_batches_are_deterministic_and_real_frames(tmp_path):
    (p0, d0), (p1, d1) = frame_store(tmp_path / "a.zarr", 20, 0), frame_store(tmp_path / "b.zarr", 13, 1)
    fb = FrameBatches([p0, p1], batch_size=6, seed=3)
    b = fb[5]
    assert b.shape == (6, 3, 8, 8) and b.dtype == torch.uint8
    assert torch.equal(b, FrameBatches([p0, p1], 6, seed=3, cache_mb=0)[5])  # new instance, no cache: same
    assert not torch.equal(b, fb[6]) and not torch.equal(b, FrameBatches([p0, p1], 6, seed=4)[5])
    for (k, t), frame in zip(fb.locate(5), b):
        assert np.array_equal(frame.numpy(), (d0, d1)[k][t])


def test_windows_are_deterministic_contiguous_and_float32(stores):
    lw = LatentWindows(stores, DataConfig(window=6, batch_size=5), seed=0)
    b = lw[7]
    assert b.shape == (5, 6, C, H, W) and b.dtype == torch.float32
    assert torch.equal(b, LatentWindows(stores, DataConfig(window=6, batch_size=5), seed=0, cache_mb=0)[7])
    assert not torch.equal(b, lw[8])
    for (k, s, t), win in zip(lw.locate(7), b):
        assert torch.equal(win[:, 0, 0, 0], torch.arange(s, s + t, dtype=torch.float32) + 1000 * k)


def test_stride_and_chunk_boundaries(stores):
    lw = LatentWindows(stores, DataConfig(window=10, batch_size=16, stride=4), seed=1)
    for i in range(10):
        for (k, s, t), win in zip(lw.locate(i), lw[i]):
            assert s % 4 == 0 and s + t <= lw.lengths[k]
            assert torch.equal(win[:, 0, 0, 0], torch.arange(s, s + t, dtype=torch.float32) + 1000 * k)


def test_shift_rolls_each_window_as_a_whole(tmp_path):
    rng = np.random.default_rng(0)
    raw = [rng.standard_normal((n, C, H, W)).astype(np.float16) for n in (30, 20)]
    paths = []
    for j, z in enumerate(raw):
        with StoreWriter(tmp_path / f"s{j}.zarr", (C, H, W), "float16", 8, ATTRS, compress=False) as w:
            w.append(z)
            w.commit()
        paths.append(str(tmp_path / f"s{j}.zarr"))
    lw = LatentWindows(paths, DataConfig(window=4, batch_size=8, shift=1), seed=2)
    assert torch.equal(lw[3], LatentWindows(paths, DataConfig(window=4, batch_size=8, shift=1), seed=2)[3])  # resumable
    offsets = set()
    for i in range(4):
        for (k, s, t), win in zip(lw.locate(i), lw[i].numpy()):
            truth = raw[k][s : s + t].astype(np.float32)
            found = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if np.array_equal(win, np.roll(truth, (dy, dx), (-2, -1)))]
            assert len(found) == 1, "every frame of a window moved by one offset within the bound"
            offsets.add(found[0])
    assert len(offsets) > 4  # offsets drawn per window
    halves = [lw.shard(r, 2)[5] for r in (0, 1)]  # two ranks see the one process's batch
    assert torch.equal(torch.cat(halves), lw[5])
    plain = LatentWindows(paths, DataConfig(window=4, batch_size=8, shift=0), seed=2)
    for (k, s, t), win in zip(plain.locate(0), plain[0].numpy()):
        assert np.array_equal(win, raw[k][s : s + t].astype(np.float32))


def test_alternating_lengths_follow_the_documented_draw(stores):
    alt = AlternatingConfig(enabled=True, short_window=4, long_window=12, short_batch=6, long_batch=2, long_ratio=0.3)
    lw = LatentWindows(stores, DataConfig(window=99, batch_size=99, alternating=alt), seed=5)
    shapes = set()
    for i in range(40):
        long = np.random.default_rng([5, i]).random() < 0.3
        want = (2, 12) if long else (6, 4)
        assert tuple(lw[i].shape[:2]) == want
        shapes.add(want)
    assert shapes == {(2, 12), (6, 4)}


def test_short_videos_are_skipped_with_a_warning(stores):
    lines = []
    lw = LatentWindows(stores, DataConfig(window=30, batch_size=4), seed=0, log=lines.append)
    assert [p.rsplit("/", 1)[-1] for p in lw.paths] == ["v0.zarr", "v2.zarr"]
    assert len(lines) == 1 and "v1.zarr" in lines[0] and "25 frames" in lines[0]


def test_no_video_long_enough_is_an_error_naming_the_longest(stores):
    with pytest.raises(PipelineError, match=r"window of 50 frames.*v0\.zarr with 40 frames"):
        LatentWindows(stores, DataConfig(window=50, batch_size=4), seed=0, log=lambda m: None)


def test_attr_mismatch_is_refused(stores):
    with pytest.raises(PipelineError, match="tokenizer_hash"):
        LatentWindows(stores, DataConfig(window=4, batch_size=2), expect={"tokenizer_hash": "other"})
    with pytest.raises(PipelineError, match="latent_shape"):
        LatentWindows(stores, DataConfig(window=4, batch_size=2), expect={"tokenizer_hash": "abc", "latent_shape": [8, 4, 4]})
    LatentWindows(stores, DataConfig(window=4, batch_size=2), expect={"tokenizer_hash": "abc", "latent_shape": (C, H, W)})


def test_stats_normalise_per_channel(stores):
    stats = {"mean": [10.0, 20.0], "std": [2.0, 4.0]}
    raw, norm = LatentWindows(stores, DataConfig(window=4, batch_size=3), seed=2)[0], LatentWindows(stores, DataConfig(window=4, batch_size=3), seed=2, stats=stats)[0]
    assert torch.allclose(norm[:, :, 0], (raw[:, :, 0] - 10) / 2) and torch.allclose(norm[:, :, 1], (raw[:, :, 1] - 20) / 4)


def test_dataloader_workers_give_the_same_batches(stores):
    lw = LatentWindows(stores, DataConfig(window=5, batch_size=3, stride=2), seed=9)
    lw[0]  # opened and cached in this process first: workers must still open their own
    serial = list(torch.utils.data.DataLoader(lw, sampler=range(3, 11), batch_size=None, num_workers=0))
    parallel = list(torch.utils.data.DataLoader(lw, sampler=range(3, 11), batch_size=None, num_workers=2))
    assert len(serial) == 8 and all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_damaged_store_is_refused_at_open_and_at_read(tmp_path):
    """A missing chunk file must never read as zeros, a truncated or altered one never decode."""
    from latentwm.data.store import open_store

    path = latent_store(tmp_path / "v.zarr", 40, 1)  # chunks of 8 frames: c/0 .. c/4
    ds = LatentWindows([path], DataConfig(window=4, batch_size=2), seed=0, log=lambda s: None)
    ds.reader.read(0, 0, 4)  # opened, chunk 0 cached
    chunk = tmp_path / "v.zarr/c/2/0/0/0"
    good = chunk.read_bytes()
    chunk.unlink()  # gone after the dataset was built: the read itself must refuse
    with pytest.raises(PipelineError, match=r"v\.zarr is damaged: chunk c/2/0/0/0 is missing; delete it and rerun"):
        ds.reader.read(0, 16, 20)
    with pytest.raises(PipelineError, match=r"chunk c/2/0/0/0 \(3 of 5\) is missing"):
        open_store(path)
    chunk.write_bytes(good[:-100])  # truncated
    with pytest.raises(PipelineError, match=r"chunk c/2/0/0/0 \(3 of 5\) has \d+ bytes, \d+ expected"):
        open_store(path)
    flipped = bytearray(good)
    flipped[10] ^= 1  # same size, one bit changed: only the checksum can tell
    chunk.write_bytes(bytes(flipped))
    with pytest.raises(PipelineError, match=r"v\.zarr is damaged: a chunk fails its crc32c checksum"):
        open_store(path)[16:20]
    chunk.write_bytes(good)
    assert float(open_store(path)[16, 0, 0, 0]) == 1016.0


def test_store_of_all_zero_chunks_is_whole(tmp_path):
    """Zarr skips writing all-zero chunks by default: a black stretch of video must not read as damage."""
    from latentwm.data.store import open_store

    with StoreWriter(tmp_path / "black.zarr", (3, 8, 8), "uint8", 8, {}, compress=False) as w:
        w.append(np.zeros((20, 3, 8, 8), np.uint8))
        w.commit()
    arr = open_store(tmp_path / "black.zarr")
    assert arr.attrs["chunk_files"] == 3 and int(arr[:].sum()) == 0


def test_encode_jobs_write_whole_shards_read_back_in_video_order(tmp_path):
    """Shards: each split's sorted videos in runs of videos_per_job, never mixing splits; a shard
    is written whole or not at all (a failing video leaves no folder, the temp one removed); its
    stores read back in video order, paired by video or refused with the missing ones named."""
    from latentwm.data.splits import shards
    from latentwm.data.store import open_store, stores_in, video_store, write_shard

    split = {"train": ["a", "b", "c", "d", "e"], "val": ["f"], "test": []}
    assert shards(split, 2) == {"train_000": ["a", "b"], "train_001": ["c", "d"], "train_002": ["e"], "val_000": ["f"]}
    assert shards(split, 64) == {"train_000": split["train"], "val_000": ["f"]}
    assert [v for vs in shards(split, 2).values() for v in vs] == split["train"] + split["val"]  # name order = sorted

    frames = [frame_store(tmp_path / f"frames/{v}.zarr", 9, i)[0] for i, v in enumerate("abc")]
    copy = lambda src, dst: latent_store(dst, open_store(src).shape[0], ord(Path(src).stem[0]) - ord("a"))  # noqa: E731
    out = tmp_path / "latents/train_000"
    write_shard(out, frames, copy)
    assert stores_in([out]) == [str(out / f"{v}.zarr") for v in "abc"]
    assert stores_in([out], videos=["a", "b", "c"]) == stores_in([str(out / "a.zarr"), out / "b.zarr", out / "c.zarr"])
    with pytest.raises(PipelineError, match=r"not those of the videos a, b, c, d \(missing: d\)"):
        stores_in([out], videos=["a", "b", "c", "d"])
    assert video_store(tmp_path / "latents", "b") == out / "b.zarr"

    def fails_on_c(src, dst):
        if Path(src).stem == "c":
            raise PipelineError("c is broken")
        copy(src, dst)

    with pytest.raises(PipelineError, match="c is broken"):
        write_shard(tmp_path / "latents/val_000", frames, fails_on_c)
    assert sorted(p.name for p in (tmp_path / "latents").iterdir()) == ["train_000"]  # no half shard, no temp
