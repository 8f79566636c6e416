"""Frames -> latents with a trained tokenizer, and the per-channel statistics of the latents.

    results/latents/{shard}/{video}.zarr  float16 (T, C, h, w), chunked along time, uncompressed
                                  (float16 latents barely compress, and raw chunks read twice as fast);
                                  a shard (SPLIT_NNN) is the videos one encode job writes
    attrs: tokenizer_hash (checkpoint.file_hash of tokenizer.pt), latent_shape [C, h, w], fps,
           source, video, frames_store, height, width (+ frames, complete from StoreWriter)
    results/latents/stats.json    {"mean": [C], "std": [C], "tokenizer_hash", "latent_shape", "videos"}

Both stream chunk by chunk: memory stays at one batch of frames, whatever the video length.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from latentwm.core.errors import PipelineError
from latentwm.core.image import to_float
from latentwm.data import actions as A
from latentwm.data.store import StoreWriter, open_store
from latentwm.models.lam import Lam
from latentwm.models.tokenizer import Tokenizer


def frame_batches(frames, batch_size: int, device, overlap: int = 0):
    """(start, uint8 frames (b + overlap, 3, H, W) on `device`) of a frame store, batch after batch, one
    read each; with overlap 1 a batch also holds the next one's first frame, so it covers every transition."""
    n = frames.shape[0]
    for s in range(0, n - overlap, batch_size):
        yield s, torch.from_numpy(np.asarray(frames[s : min(s + batch_size + overlap, n)])).to(device)


@torch.no_grad()
def encode_actions(model: Lam, ckpt: dict, frames_path, out_path, lam_hash: str, batch_size: int = 256,
                 log: Callable[[str], None] = print) -> int:
    """Frame store -> action store int16 (T,): ids[t] = the code of frame t-1 -> t, ids[0] = NO_ACTION."""
    frames = open_store(frames_path)
    shape = list(frames.shape[1:])
    if shape != list(ckpt["frame_shape"]):
        raise PipelineError(f"{frames_path} holds frames of shape {shape} but the latent action model was trained on "
                            f"{ckpt['frame_shape']}; rerun train_lam on these frames (snakemake --forcerun train_lam)")
    n, device = frames.shape[0], next(model.parameters()).device
    ids = [np.full(1, A.NO_ACTION, np.int64)]
    for _, x in frame_batches(frames, batch_size, device, overlap=1):  # (b+1, 3, H, W): b transitions
        ids.append(model.infer(x[:-1], x[1:]).cpu().numpy())
    actions = np.concatenate(ids)
    attrs = {"lam_hash": lam_hash, "n_actions": model.cfg.codes, "frames_store": str(frames_path),
             "video": Path(out_path).name.removesuffix(".zarr")}
    A.write_store(out_path, actions, attrs)
    used = np.bincount(actions[1:], minlength=model.cfg.codes)
    log(f"[actions] {Path(out_path).name}: {n} frames, codes used {used.tolist()}")  # out_path: in the shard's temp folder
    return n


@torch.no_grad()
def encode_latents(
    model: Tokenizer,
    frames_path,
    out_path,
    tokenizer_hash: str,
    batch_size: int = 64,
    chunk_frames: int = 64,
    log: Callable[[str], None] = print,
) -> int:
    """Encode every frame of a frames store into a latent store; returns the number of frames."""
    frames = open_store(frames_path)
    _, c, h, w = frames.shape
    if c != 3:
        raise PipelineError(f"store {frames_path} holds {c} channels per frame; expected RGB frames (T, 3, H, W)")
    shape = model.latent_shape(h, w)
    device = next(model.parameters()).device
    attrs = dict(frames.attrs)
    out_attrs = {
        "tokenizer_hash": tokenizer_hash,
        "latent_shape": shape,
        "fps": attrs.get("fps"),
        "source": attrs.get("source"),
        "video": Path(out_path).name.removesuffix(".zarr"),
        "frames_store": str(frames_path),
        "height": h,
        "width": w,
    }
    model.eval()
    n, t0 = frames.shape[0], time.perf_counter()
    with StoreWriter(out_path, tuple(shape), "float16", chunk_frames, out_attrs, compress=False) as writer:
        for s, x in frame_batches(frames, batch_size, device):
            z = model.encode(to_float(x)).float()  # (b, C, h, w)
            if not torch.isfinite(z).all():
                raise PipelineError(f"tokenizer produced non-finite latents for {frames_path} frames {s}+; retrain it")
            writer.append(z.cpu().numpy().astype(np.float16))
            done = min(s + batch_size, n)
            if done == n or (s // batch_size) % 20 == 0:
                rate = done / (time.perf_counter() - t0)
                log(f"[encode] {Path(out_path).name}: {done}/{n} frames ({rate:.0f} frames/s)")
        return writer.commit()


def latent_stats(paths, tokenizer_hash: str, log: Callable[[str], None] = print, min_std: float = 1e-3) -> dict:
    """Per-channel mean and std over every frame and pixel of the given latent stores.

    Sums run in float64, one time chunk at a time. A channel whose std is below `min_std` is a
    dead channel: its std is floored (so normalising never divides by ~0) and a warning is logged.
    """
    if not paths:
        raise PipelineError("latent stats need at least one train video; check the splits")
    total, s1, s2, shape = 0, None, None, None
    for p in paths:
        arr = open_store(p, {"tokenizer_hash": tokenizer_hash})
        shape = shape or list(arr.attrs["latent_shape"])
        if list(arr.attrs["latent_shape"]) != shape:
            raise PipelineError(f"store {p}: latent_shape {arr.attrs['latent_shape']} differs from {shape}; rerun encode_latents")
        step = arr.chunks[0]
        for s in range(0, arr.shape[0], step):
            z = np.asarray(arr[s : s + step], dtype=np.float64)  # (t, C, h, w)
            zc = z.transpose(1, 0, 2, 3).reshape(z.shape[1], -1)  # (C, t*h*w)
            s1 = zc.sum(1) if s1 is None else s1 + zc.sum(1)
            s2 = (zc**2).sum(1) if s2 is None else s2 + (zc**2).sum(1)
            total += zc.shape[1]
    mean = s1 / total
    std = np.sqrt(np.maximum(s2 / total - mean**2, 0.0))
    for ch in np.flatnonzero(std < min_std):
        log(f"WARNING: latent channel {ch} is nearly constant (std {std[ch]:.2e}); its std is floored at {min_std}")
    std = np.maximum(std, min_std)
    return {
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "tokenizer_hash": tokenizer_hash,
        "latent_shape": shape,
        "videos": [Path(p).name.removesuffix(".zarr") for p in paths],
    }
