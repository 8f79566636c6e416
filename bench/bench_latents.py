"""Benchmarks of the latents stage (not a test): python bench/bench_latents.py [--tokenizer PT]

1. encoding speed: frames/s of encode_latents (the encode_latents rule) on 64x64 frame stores
2. random T-frame window reads/s: the zarr latent stores (through LatentWindows' reader, with and
   without its chunk cache) vs the seeds' layout, one .npy file per latent frame; and what the
   stores' integrity checks cost against plain zarr stores without them
3. a training step with the real loader (LatentWindows through a DataLoader, as latentwm.training.loop
   uses it) vs the same steps on batches already in memory

Data: the built-in generator's clips (8 x 240 frames at 64x64, like config.yaml), written to
bench/out/ (git-ignored). Timings take the best of --repeats runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch
from timing import best_time as best

from latentwm.config.dynamics import DataConfig
from latentwm.config.tokenizer import TokenizerConfig
from latentwm.data.store import StoreWriter
from latentwm.data.synthetic import render_clip
from latentwm.data.windows import LatentWindows
from latentwm.models import checkpoint
from latentwm.models.tokenizer import Tokenizer
from latentwm.training.encode import encode_latents

OUT = Path(__file__).resolve().parent / "out"




def make_frames(videos: int, frames: int) -> list[Path]:
    paths = []
    for i in range(videos):
        p = OUT / "frames" / f"v{i}.zarr"
        if not p.exists():
            x = render_clip(i, frames, 64, seed=0).transpose(0, 3, 1, 2)  # (T, 3, 64, 64)
            with StoreWriter(p, (3, 64, 64), "uint8", 64, {"source": "bench", "fps": 15}) as w:
                w.append(x)
                w.commit()
        paths.append(p)
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", help="a trained tokenizer.pt (default: an untrained default-config one)")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--reads", type=int, default=500)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []

    # 1. encoding
    frames = make_frames(args.videos, args.frames)
    model = checkpoint.build_model(args.tokenizer, kind="tokenizer") if args.tokenizer else Tokenizer(TokenizerConfig()).eval()
    lat_dir = OUT / "latents"
    shutil.rmtree(lat_dir, ignore_errors=True)

    def encode_all():
        for p in frames:
            encode_latents(model, p, lat_dir / p.name, "bench", batch_size=64, chunk_frames=64, log=lambda s: None)

    t = best(encode_all, args.repeats)
    n = args.videos * args.frames
    rows.append(("encode_latents (batch 64, 64x64 -> 8x16x16)", f"{n / t:.0f} frames/s", ""))
    lat = sorted(lat_dir.glob("*.zarr"))

    # 2. window reads: zarr (cached / uncached) vs one .npy per frame
    npy_dir = OUT / "npy"
    shutil.rmtree(npy_dir, ignore_errors=True)
    for p in lat:
        import zarr

        z = zarr.open_array(str(p), mode="r")[:]
        (npy_dir / p.stem).mkdir(parents=True)
        for t_, frame in enumerate(z):
            np.save(npy_dir / p.stem / f"latent_{t_:06d}.npy", frame)
    T = args.window
    rng = np.random.default_rng(0)
    picks = [(int(rng.integers(len(lat))), int(rng.integers(0, args.frames - T + 1))) for _ in range(args.reads)]

    def npy_reads():
        for k, s in picks:
            np.stack([np.load(npy_dir / lat[k].stem / f"latent_{t_:06d}.npy") for t_ in range(s, s + T)])

    def zarr_reads(cache_mb):
        ds = LatentWindows(lat, DataConfig(window=T, batch_size=1), cache_mb=cache_mb, log=lambda s: None)
        ds.reader.read(0, 0, 1)  # open the stores (once per process in real use)
        return lambda: [ds.reader.read(k, s, s + T) for k, s in picks]

    t_npy = best(npy_reads, args.repeats)
    t_unc = best(zarr_reads(0), args.repeats)
    t_cached = best(zarr_reads(1024), args.repeats)  # the first repeat fills the cache
    rows.append((f"T={T} window reads, one .npy per frame (seeds)", f"{args.reads / t_npy:.0f} windows/s", "1.0x"))
    rows.append((f"T={T} window reads, zarr, no cache (cache_mb=0)", f"{args.reads / t_unc:.0f} windows/s", f"{t_npy / t_unc:.1f}x"))
    rows.append((f"T={T} window reads, zarr + chunk cache (default)", f"{args.reads / t_cached:.0f} windows/s", f"{t_npy / t_cached:.1f}x"))

    # 2b. what the integrity checks cost (crc32c per chunk, a missing chunk refused, the chunk scan
    # at open): the same latents as plain zarr stores without checksum, read the same uncached way
    import zarr
    from zarr.codecs import BytesCodec

    from latentwm.data.store import open_store

    plain = []
    for p in lat:
        src = zarr.open_array(str(p), mode="r")
        dst = zarr.create_array(store=str(OUT / "plain" / p.name), shape=src.shape, chunks=src.chunks, dtype=src.dtype,
                                serializer=BytesCodec(), compressors=None, overwrite=True, zarr_format=3)
        dst[:] = src[:]
        plain.append(dst)
    checked = [open_store(p) for p in lat]
    t_plain = best(lambda: [plain[k][s : s + T] for k, s in picks], args.repeats)
    t_checked = best(lambda: [checked[k][s : s + T] for k, s in picks], args.repeats)
    t_open = best(lambda: [open_store(p) for p in lat], args.repeats) / len(lat)
    rows.append((f"T={T} window reads, plain zarr (no checksum, no checks)", f"{args.reads / t_plain:.0f} windows/s", "1.00x"))
    rows.append((f"T={T} window reads, checked stores (crc32c, missing chunk refused)", f"{args.reads / t_checked:.0f} windows/s",
                 f"{t_checked / t_plain:.2f}x the time; open_store with its chunk scan {1000 * t_open:.1f} ms per store"))
    shutil.rmtree(OUT / "plain", ignore_errors=True)

    # 3. a training step: real loader vs batches in memory
    try:
        from latentwm.config.dynamics import DynamicsConfig, ObjectiveConfig
        from latentwm.models.dynamics.transformer import Dynamics
        from latentwm.models.flow import FlowObjective

        cfg = DynamicsConfig(size="tiny", arch="transformer", patch=4).resolve([8, 16, 16], max_frames=T)
        net = Dynamics(cfg)
        flow = FlowObjective(ObjectiveConfig(), cfg.k_max)
        objective, which = flow, f"latentwm.models.dynamics.transformer tiny (patch 4), {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M params"
    except ImportError:
        net = torch.nn.Sequential(torch.nn.Conv3d(8, 64, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv3d(64, 8, 3, padding=1))
        objective = lambda m, b: (m(b.transpose(1, 2)).transpose(1, 2) - b).pow(2).mean()  # noqa: E731
        which = "stand-in Conv3d model"
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    stats = {"mean": [0.0] * 8, "std": [1.0] * 8}
    ds = LatentWindows(lat, DataConfig(window=T, batch_size=args.batch), seed=0, stats=stats, log=lambda s: None)

    def step(batch):
        out = objective(net, batch)
        loss = out[0] if isinstance(out, tuple) else out
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def with_loader():
        loader = torch.utils.data.DataLoader(ds, sampler=range(args.steps), batch_size=None, num_workers=0)
        for b in loader:
            step(b)

    in_memory = [ds[i] for i in range(args.steps)]

    def from_memory():
        for b in in_memory:
            step(b)

    with_loader()  # warm up: thread pools, allocator, chunk cache
    t_mem, t_loader = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        t_mem.append(best(from_memory, 1))
        t_loader.append(best(with_loader, 1))
    t_mem, t_loader = min(t_mem), min(t_loader)
    rows.append((f"train step, batch {args.batch} x T={T}, in-memory batches", f"{1000 * t_mem / args.steps:.1f} ms/step", which))
    rows.append((f"train step, batch {args.batch} x T={T}, LatentWindows + DataLoader", f"{1000 * t_loader / args.steps:.1f} ms/step",
                 f"loader adds {100 * (t_loader / t_mem - 1):+.1f}%"))  # fmt: skip
    shutil.rmtree(npy_dir, ignore_errors=True)

    print("| measurement | result | note |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
