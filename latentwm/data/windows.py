"""Datasets of whole batches over zarr stores, as the shared training loop wants them.

`batches[i]` is batch i, a pure function of (seed, i) (np.random.default_rng([seed, i])), so
resuming at step s replays the same batches and DataLoader workers hold no sampler state.

    FrameBatches   frames  uint8 (T, 3, H, W) stores  -> uint8 (B, 3, H, W) random frames
    LatentWindows  latents float16 (T, C, h, w) stores -> float32 (B, T, C, h, w) random windows
    Normalisation  the per-channel (z - mean) / std of stats.json, for training and evaluation

Data parallel: `shard(rank, world)` gives a view whose batch i is the rank's contiguous slice of
global batch i (`batch_size` stays the global batch), so the processes together see exactly the
batches one process would.

Stores are opened lazily, once per process (each DataLoader worker opens its own), and decoded
time chunks are kept in a per-process LRU cache (`cache_mb`): a zarr read costs about 0.5 ms
of fixed overhead, a slice of a cached chunk a few microseconds (bench/bench_latents.py).
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch
import zarr

from latentwm.config.dynamics import DataConfig
from latentwm.core.errors import PipelineError
from latentwm.data.actions import read_store
from latentwm.data.store import open_store

LARGE = 2**31 - 1  # __len__ of the batch datasets: the loop's sampler picks the indices it needs


class Sharded:
    """Mixin of the batch datasets: `shard(rank, world)` and the slice of a batch's items."""

    part: tuple[int, int] = (0, 1)  # (rank, world)

    def shard(self, rank: int, world: int):
        view = copy.copy(self)
        view.part = (int(rank), int(world))
        return view

    def own(self, items: list, i: int) -> list:
        """The items of global batch i this rank loads."""
        rank, world = self.part
        if len(items) % world:
            raise PipelineError(
                f"batch {i} has {len(items)} samples, not divisible by {world} processes; "
                f"set the batch size (and alternating long_batch/short_batch) to a multiple of {world}"
            )
        n = len(items) // world
        return items[rank * n : (rank + 1) * n]


class Normalisation:
    """The per-channel latent normalisation of stats.json, the one place it is applied: the
    dynamics model trains and rolls out on (z - mean) / std. Works on numpy arrays and tensors
    (..., C, h, w) alike; mean and std follow z's kind and device."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32).reshape(-1, 1, 1)  # (C, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(-1, 1, 1)

    @classmethod
    def of(cls, stats: dict) -> Normalisation:
        return cls(stats["mean"], stats["std"])

    def _like(self, z):
        if torch.is_tensor(z):
            return torch.from_numpy(self.mean).to(z.device), torch.from_numpy(self.std).to(z.device)
        return self.mean, self.std

    def apply(self, z):
        mean, std = self._like(z)
        return (z - mean) / std

    def invert(self, z):
        mean, std = self._like(z)
        return z * std + mean


class StoreReader:
    """Read [start, stop) along time from store k; stores open on first use in each process."""

    def __init__(self, paths: list[str], cache_mb: float = 1024):
        self.paths = [str(p) for p in paths]
        self.cache_bytes = int(cache_mb * 2**20)
        self._pid: int | None = None
        self._arrays: list[zarr.Array] = []
        self._cache: OrderedDict = OrderedDict()
        self._used = 0

    def __getstate__(self):  # pickled into a worker: send paths only, never handles or cache
        state = dict(self.__dict__)
        state.update(_pid=None, _arrays=[], _cache=OrderedDict(), _used=0)
        return state

    def _open(self) -> None:
        if self._pid != os.getpid():  # first use here, or a forked worker inherited our handles
            # through open_store: a chunk that goes missing or bad mid-training is an error, not zeros
            # (the up-front scan ran when the dataset was built)
            self._arrays = [open_store(p, scan=False) for p in self.paths]
            self._cache, self._used, self._pid = OrderedDict(), 0, os.getpid()

    def read(self, k: int, start: int, stop: int) -> np.ndarray:
        self._open()
        arr = self._arrays[k]
        if self.cache_bytes <= 0:
            return arr[start:stop]  # one contiguous read: one or two chunks
        c = arr.chunks[0]
        parts = []
        for ci in range(start // c, (stop - 1) // c + 1):
            chunk = self._chunk(k, ci)
            parts.append(chunk[max(start - ci * c, 0) : min(stop - ci * c, len(chunk))])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _chunk(self, k: int, ci: int) -> np.ndarray:
        key = (k, ci)
        data = self._cache.get(key)
        if data is not None:
            self._cache.move_to_end(key)
            return data
        arr = self._arrays[k]
        c = arr.chunks[0]
        data = arr[ci * c : min((ci + 1) * c, arr.shape[0])]
        self._cache[key] = data
        self._used += data.nbytes
        while self._used > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._used -= old.nbytes
        return data


class FrameBatches(Sharded, torch.utils.data.Dataset):
    """[i] -> uint8 (B, 3, H, W): B random frames, each from a store chosen by its frame count."""

    def __init__(self, store_paths, batch_size: int, seed: int = 0, expect: dict | None = None, cache_mb: float = 1024):
        if not store_paths:
            raise PipelineError("no frame stores to train on; check the splits (train needs at least one video)")
        lengths = []
        for p in store_paths:
            arr = open_store(p, expect)  # validate now, keep no handle
            lengths.append(arr.shape[0])
        self.lengths = np.array(lengths)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])  # global frame index -> store
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.reader = StoreReader([str(p) for p in store_paths], cache_mb)

    def __len__(self) -> int:
        return LARGE

    def locate(self, i: int) -> list[tuple[int, int]]:
        """The (store, frame) pairs of batch i: frames uniform over all frames of all stores."""
        rng = np.random.default_rng([self.seed, i])
        g = rng.integers(0, self.offsets[-1], self.batch_size)
        k = np.searchsorted(self.offsets, g, side="right") - 1
        return [(int(a), int(b)) for a, b in zip(k, g - self.offsets[k])]

    def __getitem__(self, i: int) -> torch.Tensor:
        frames = [self.reader.read(k, t, t + 1)[0] for k, t in self.own(self.locate(i), i)]
        return torch.from_numpy(np.stack(frames))  # (B, 3, H, W) uint8


class LatentWindows(Sharded, torch.utils.data.Dataset):
    """[i] -> float32 (B, T, C, h, w): B windows of T consecutive latent frames, starts % stride == 0
    (any time-major store works: the latent action model reads frame stores through it, stats None);
    with `action_paths` (one action store per latent store, latentwm.data.actions) the pair (latents,
    int64 (B, T) actions of the same frames).

    Windows, batch size and stride are the `dynamics.data` section (settings.DataConfig). Every
    window start of every usable store is equally likely. With `data.shift` each window is rolled
    over its latent grid by its own offset in [-shift, shift]^2, drawn from default_rng([seed, i,
    1]). With `data.alternating.enabled` (DreamerV4 3.4), batch i is long (long_window x
    long_batch) when default_rng([seed, i]).random() < long_ratio, else short (short_window x
    short_batch).
    """

    def __init__(
        self,
        store_paths,
        data: DataConfig,
        seed: int = 0,
        stats: dict[str, Any] | None = None,
        expect: dict[str, Any] | None = None,
        log: Callable[[str], None] = print,
        cache_mb: float = 1024,
        action_paths=None,
        action_expect: dict[str, Any] | None = None,
    ):
        self.window, self.batch_size, self.seed, self.stride = data.window, data.batch_size, int(seed), data.stride
        self.shift = data.shift
        self.alternating = data.alternating if data.alternating.enabled else None
        longest = data.longest()
        if self.stride < 1 or min(self.window, longest) < 1:
            raise PipelineError(f"window {self.window} and stride {self.stride} must be at least 1")
        if not store_paths:
            raise PipelineError("no latent stores to train on; check the splits (train needs at least one video)")
        if action_paths is not None and len(action_paths) != len(store_paths):
            raise PipelineError(f"{len(action_paths)} action stores for {len(store_paths)} latent stores; give one per video")
        usable, lengths, best, acts = [], [], (0, None), []
        for j, p in enumerate(store_paths):
            n = open_store(p, expect).shape[0]  # validates attrs; the handle is dropped here
            best = max(best, (n, str(p)), key=lambda t: t[0])
            if n < longest:
                log(f"WARNING: skipping {p}: {n} frames, shorter than the window of {longest}")
                continue
            if action_paths is not None:
                acts.append(read_store(action_paths[j], action_expect, frames=n))  # (T,) int64, small: kept
            usable.append(str(p))
            lengths.append(n)
        if not usable:
            raise PipelineError(
                f"no latent store is as long as the window of {longest} frames (longest video: {best[1]} with "
                f"{best[0]} frames); lower the window or add longer videos"
            )
        self.lengths = np.array(lengths)
        self.reader = StoreReader(usable, cache_mb)
        self.paths = usable
        self.norm = Normalisation.of(stats) if stats is not None else None
        self.actions = acts if action_paths is not None else None

    def __len__(self) -> int:
        return LARGE

    def shape_of(self, i: int) -> tuple[int, int]:
        """(window, batch size) of batch i."""
        if not self.alternating:
            return self.window, self.batch_size
        a = self.alternating
        if np.random.default_rng([self.seed, i]).random() < a.long_ratio:
            return a.long_window, a.long_batch
        return a.short_window, a.short_batch

    def locate(self, i: int) -> list[tuple[int, int, int]]:
        """(store, start, T) of each window of batch i."""
        rng = np.random.default_rng([self.seed, i])
        if self.alternating:
            rng.random()  # the long/short draw of shape_of
        t, b = self.shape_of(i)
        starts = (self.lengths - t) // self.stride + 1  # window starts per store (all >= 1 here)
        offsets = np.concatenate([[0], np.cumsum(starts)])
        g = rng.integers(0, offsets[-1], b)
        k = np.searchsorted(offsets, g, side="right") - 1
        return [(int(a), int(s) * self.stride, t) for a, s in zip(k, g - offsets[k])]

    def __getitem__(self, i: int):
        where = self.locate(i)
        own = self.own(where, i)
        wins = [self.reader.read(k, s, s + t) for k, s, t in own]
        z = np.stack(wins).astype(np.float32)  # (B, T, C, h, w)
        if self.shift:  # one offset per window, the same for its frames: the motion stays the motion
            offsets = np.random.default_rng([self.seed, i, 1]).integers(-self.shift, self.shift + 1, (len(where), 2))
            z = np.stack([np.roll(w, tuple(o), axis=(-2, -1)) for w, o in zip(z, self.own(list(offsets), i))])
        if self.norm is not None:
            z = self.norm.apply(z)
        if self.actions is None:
            return torch.from_numpy(z)
        a = np.stack([self.actions[k][s : s + t] for k, s, t in own])  # (B, T): the action that produced each frame
        return torch.from_numpy(z), torch.from_numpy(a)
