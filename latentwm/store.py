"""Zarr stores of frames and latents: streamed in, committed atomically, opened with checks.

Layout: one zarr (v3) array per video at the store path, time on axis 0:
    results/frames/{video}.zarr   uint8   (T, 3, H, W)
    results/latents/{video}.zarr  float16 (T, C, h, w)
chunked along time so that a random window touches one or two chunks. Provenance lives in the
array attrs; `complete: true` is written last, just before the rename, so a store found at its
final path is always whole (a killed job leaves only a hidden .tmp directory behind).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .errors import PipelineError


class StoreWriter:
    """Append (n, *tail) blocks; `commit()` writes attrs and renames the store into place.

    Blocks are buffered to whole chunks so each chunk is written once. Memory stays at one chunk.
        with StoreWriter(path, (3, 64, 64), "uint8", chunk_frames=64, attrs={...}) as w:
            for block in blocks: w.append(block)
            w.commit(extra_attr=...)
    Leaving the block without commit (an exception) deletes the temporary store.
    """

    def __init__(self, path, tail: tuple[int, ...], dtype, chunk_frames: int, attrs: dict[str, Any], compress=True):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tail, self.chunk = tuple(int(x) for x in tail), int(chunk_frames)
        self.array = zarr.create_array(
            store=str(self.tmp),
            shape=(0, *self.tail),
            chunks=(self.chunk, *self.tail),
            dtype=dtype,
            compressors="auto" if compress else None,
            zarr_format=3,
        )
        self.attrs = dict(attrs)
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.frames = 0
        self.committed = False

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=self.array.dtype)
        if block.shape[1:] != self.tail:
            raise PipelineError(f"{self.path}: block of shape {block.shape[1:]} appended to a store of {self.tail}")
        self.buffer.append(block)
        self.buffered += len(block)
        if self.buffered >= self.chunk:
            self._flush(whole_chunks_only=True)

    def _flush(self, whole_chunks_only: bool) -> None:
        if not self.buffer:
            return
        data = np.concatenate(self.buffer)
        n = (len(data) // self.chunk) * self.chunk if whole_chunks_only else len(data)
        if n:
            self.array.append(data[:n], axis=0)
            self.frames += n
        rest = data[n:]
        self.buffer, self.buffered = ([rest] if len(rest) else []), len(rest)

    def commit(self, **attrs) -> int:
        """Write what is buffered, the attrs and `complete`, then rename into place. Returns T."""
        self._flush(whole_chunks_only=False)
        self.array.attrs.update({**self.attrs, **attrs, "frames": self.frames, "complete": True})
        if self.path.exists():
            shutil.rmtree(self.path)
        os.rename(self.tmp, self.path)
        self.committed = True
        return self.frames

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.committed and self.tmp.exists():
            shutil.rmtree(self.tmp)
        return False


def open_store(path, expect: dict[str, Any] | None = None) -> zarr.Array:
    """Open a committed store read-only; refuse an incomplete one or one whose attrs differ.

    `expect` maps attr names to required values, e.g. {"tokenizer_hash": "ab12...", "latent_shape": [8, 16, 16]}.
    """
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"store {path} does not exist; run the rule that writes it first")
    try:
        arr = zarr.open_array(str(path), mode="r")
    except Exception as e:
        raise PipelineError(f"store {path} cannot be opened ({type(e).__name__}); delete it and rerun") from e
    attrs = dict(arr.attrs)
    if not attrs.get("complete"):
        raise PipelineError(f"store {path} is incomplete (no 'complete' attr); delete it and rerun its rule")
    for key, want in (expect or {}).items():
        got = attrs.get(key)
        if _norm(got) != _norm(want):
            raise PipelineError(
                f"store {path}: {key} is {got!r} but {want!r} was expected; "
                "rerun its rule so that it matches (e.g. snakemake --forcerun for that stage)"
            )
    return arr


def _norm(v):
    return list(v) if isinstance(v, tuple) else v
