"""Rollout speed and quality: Euler-64 vs shortcut-4, and with vs without the KV cache.

    python bench/bench_rollout.py                                   # untrained default-size model
    python bench/bench_rollout.py --checkpoint results/dynamics/dynamics.pt \\
        --latents results/latents/VIDEO.zarr [...]                  # + latent MSE vs the real future

Speed: generated frames per second (batch 1 by default, after one warm-up rollout). Quality:
agreement of the cached rollout with the recomputed one (max |diff|), and with --latents the
latent MSE (normalised units) against the true future frames, per sampler, next to copy-last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from latentwm.config.dynamics import DynamicsConfig
from latentwm.config.evaluation import SamplerConfig
from latentwm.data.store import open_store
from latentwm.models import checkpoint
from latentwm.models.dynamics.transformer import Dynamics
from latentwm.models.sampler import rollout, trained_tau_ctx


def timed(fn, repeat=1):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t) / repeat, out


def real_windows(paths, stats, context, horizon, n, seed=0):
    """n windows (n, context + horizon, C, h, w) of normalised latents from the given stores."""
    rng = np.random.default_rng(seed)
    mean = np.asarray(stats["mean"], np.float32)[None, :, None, None]
    std = np.asarray(stats["std"], np.float32)[None, :, None, None]
    out = []
    for i in range(n):
        arr = open_store(paths[i % len(paths)])
        s = int(rng.integers(0, arr.shape[0] - context - horizon + 1))
        out.append((np.asarray(arr[s : s + context + horizon], np.float32) - mean) / std)
    return torch.from_numpy(np.stack(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint"), p.add_argument("--latents", nargs="*", default=[])
    p.add_argument("--context", type=int, default=8), p.add_argument("--horizons", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--batch", type=int, default=1), p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.checkpoint:
        ckpt = checkpoint.load(a.checkpoint)
        model, stats = checkpoint.build_model(ckpt, kind="dynamics"), ckpt["stats"]
    else:
        # k_max 64 (DreamerV4's) so that Euler-64 runs on its training grid
        model, stats = Dynamics(DynamicsConfig(arch="transformer", latent_channels=8, latent_hw=(16, 16), max_frames=12, k_max=64)).eval(), None
    cfg = model.cfg
    print(f"model: {sum(q.numel() for q in model.parameters()) / 1e6:.2f}M params, {to_str(cfg)}, threads {a.threads}")
    shape = (a.batch, a.context, cfg.latent_channels, *cfg.latent_hw)
    ctx = torch.randn(shape)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    tau_ctx = trained_tau_ctx(ckpt if a.checkpoint else {})
    res = {"samplers": {}, "cache": []}

    # 1. Euler at the finest step (64 steps, or k_max when smaller) vs shortcut-4 (cached), horizon 8
    H = a.horizons[0]
    K = min(64, cfg.k_max)
    samplers = (SamplerConfig(f"euler{K}", "euler", K), SamplerConfig("shortcut4", "shortcut", 4))
    for s in samplers:
        sec, _ = timed(lambda: rollout(model, ctx, H, s, gen(), tau_ctx=tau_ctx))
        res["samplers"][s.name] = {"frames_per_s": a.batch * H / sec}
    speedup = res["samplers"]["shortcut4"]["frames_per_s"] / res["samplers"][f"euler{K}"]["frames_per_s"]
    res["shortcut_speedup"] = speedup
    print(f"\nhorizon {H}, cached | frames/s")
    for name, r in res["samplers"].items():
        print(f"  {name:10s} {r['frames_per_s']:8.2f}")
    print(f"  shortcut-4 / Euler-{K} speedup: {speedup:.1f}x")

    # 2. with vs without the cache, per-frame cost as the horizon grows (shortcut-4)
    s = samplers[1]
    print(f"\nshortcut-4, context {a.context}, max_frames {cfg.max_frames} | ms per frame | max |cached - recomputed|")
    for H in a.horizons:
        t_c, y_c = timed(lambda: rollout(model, ctx, H, s, gen(), use_cache=True, tau_ctx=tau_ctx))
        t_n, y_n = timed(lambda: rollout(model, ctx, H, s, gen(), use_cache=False, tau_ctx=tau_ctx))
        row = {"horizon": H, "cached_ms": 1e3 * t_c / H, "recomputed_ms": 1e3 * t_n / H, "max_abs_diff": float((y_c - y_n).abs().max())}
        res["cache"].append(row)
        print(f"  H={H:3d}  cached {row['cached_ms']:8.1f}  recomputed {row['recomputed_ms']:8.1f}  diff {row['max_abs_diff']:.2e}")

    # 3. quality on real latents (needs a trained checkpoint and its latents)
    if a.latents and stats:
        H = a.horizons[0]
        win = real_windows(a.latents, stats, a.context, H, n=8)
        c, truth = win[:, : a.context], win[:, a.context :]
        q = {"copy_last": float(((c[:, -1:] - truth) ** 2).mean((0, 2, 3, 4)).mean())}
        per_step = {"copy_last": ((c[:, -1:] - truth) ** 2).mean((0, 2, 3, 4)).tolist()}
        for s in samplers:
            y = rollout(model, c, H, s, gen(), tau_ctx=tau_ctx)
            per_step[s.name] = ((y - truth) ** 2).mean((0, 2, 3, 4)).tolist()
            q[s.name] = float(np.mean(per_step[s.name]))
        res["quality"], res["quality_per_step"] = q, per_step
        print(f"\nlatent MSE vs truth over {H} steps (8 windows): " + ", ".join(f"{k} {v:.4f}" for k, v in q.items()))
        for k, v in per_step.items():
            print(f"  {k:10s} " + " ".join(f"{x:.3f}" for x in v))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


def to_str(cfg):
    return f"patch {cfg.patch} dim {cfg.dim} depth {cfg.depth} temporal_every {cfg.temporal_every} max_frames {cfg.max_frames}"


if __name__ == "__main__":
    with torch.no_grad():
        main()
