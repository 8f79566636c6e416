"""Zarr stores of frames and latents: streamed in, committed atomically, opened with checks.

Layout: one zarr (v3) array per video at the store path, time on axis 0:
    results/frames/{video}.zarr           uint8   (T, 3, H, W)
    results/latents/{shard}/{video}.zarr  float16 (T, C, h, w)
chunked along time so that a random window touches one or two chunks. Provenance lives in the
array attrs; `complete: true` is written last, just before the rename, so a store found at its
final path was whole when written (a killed job leaves only a hidden .tmp directory behind).

A store also proves it is still whole when read. Zarr reads a missing chunk file as its fill value
(zeros) without a word, so:
- every chunk is written, zeros included (write_empty_chunks), and the count is recorded as
  `chunk_files` next to `complete`;
- every chunk carries a crc32c checksum (zarr 3's crc32c codec), so a damaged chunk fails to decode;
- `open_store` checks that every chunk file is there with its exact size (one stat per chunk), and
  its reads go through `WholeStore`, where a chunk that vanished since is an error, not zeros.
Any of these ends with one line naming the store and the fix (delete it and rerun its rule).

A float store (latents) holds finite values only: the writer refuses a block with a NaN or an inf,
naming the frame, and every read checks what it returns, so a value put there by other means (zarr's
own API keeps the checksums valid) fails the reader with one line instead of averaging into a result.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
from zarr.core.sync import sync
from zarr.storage import LocalStore

from latentwm.core.errors import PipelineError
from latentwm.core.files import is_write_failure, remove, sweep, temp_path, write_failure
from latentwm.core.files import write as atomic_write


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
        self.tmp = temp_path(self.path)
        self.tail, self.chunk = tuple(int(x) for x in tail), int(chunk_frames)
        self.attrs = dict(attrs)
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.frames = 0
        self.committed = False
        with self._writing():
            sweep(self.path)  # temp stores of killed writers of this store (and a stale one of ours)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.array = zarr.create_array(
                store=str(self.tmp),
                shape=(0, *self.tail),
                chunks=(self.chunk, *self.tail),
                dtype=dtype,
                # the checksum goes last, over the stored (compressed) bytes
                compressors=([ZstdCodec()] if compress else []) + [Crc32cCodec()],
                config={"write_empty_chunks": True},  # an absent chunk can then only mean damage
                zarr_format=3,
            )

    @contextmanager
    def _writing(self):
        """A failed write (disk full, read-only, permission) removes the temp store: one line."""
        try:
            yield
        except BaseException as e:
            if is_write_failure(e):
                self._discard()
                raise write_failure(self.path, e) from None
            raise

    def _discard(self) -> None:
        """Remove the temp store once no chunk write is in flight: zarr writes a block's chunks
        concurrently and, when one fails, raises at once while the others go on; left alone they
        recreate folders of the removed store, and their errors print as tracebacks at exit."""
        sync(_settle())
        remove(self.tmp)

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=self.array.dtype)
        if block.shape[1:] != self.tail:
            raise PipelineError(f"{self.path}: block of shape {block.shape[1:]} appended to a store of {self.tail}")
        bad = first_non_finite(block)
        if bad is not None:
            raise PipelineError(f"{self.path}: frame {self.frames + self.buffered + bad} is not finite (NaN or inf); nothing "
                                "is written: the model that made it diverged (see its health.json and curve), retrain it")
        self.buffer.append(block)
        self.buffered += len(block)
        if self.buffered >= self.chunk:
            with self._writing():
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
        with self._writing():
            self._flush(whole_chunks_only=False)
            n_chunks = math.ceil(self.frames / self.chunk)
            self.array.attrs.update({**self.attrs, **attrs, "frames": self.frames, "chunk_files": n_chunks, "complete": True})
            if self.path.exists():
                shutil.rmtree(self.path)
            os.rename(self.tmp, self.path)
        self.committed = True
        return self.frames

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.committed:
            self._discard()
        return False


async def _settle() -> None:
    """Wait for every other task on zarr's event loop (the writes still in flight), errors kept."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others, return_exceptions=True)


def first_non_finite(block) -> int | None:
    """Index along axis 0 of the first entry of a float block holding a NaN or an inf; None if all finite."""
    block = np.asarray(block)
    if block.dtype.kind != "f" or np.isfinite(block).all():
        return None
    return int(np.argwhere(~np.isfinite(block))[0][0]) if block.ndim else 0


def damaged(path, what: str) -> PipelineError:
    return PipelineError(f"store {path} is damaged: {what}; delete it and rerun (Snakemake then rewrites it)")


def chunk_key(i: int, ndim: int) -> str:
    """Zarr 3's default key of time chunk i (every other axis is one chunk): c/i/0/0/0."""
    return "/".join(["c", str(i)] + ["0"] * (ndim - 1))


def chunk_bytes(arr: zarr.Array) -> int | None:
    """The exact file size of every chunk when the codecs fix it (raw bytes + crc32c), else None."""
    codecs = arr.metadata.codecs
    if not all(isinstance(c, (BytesCodec, Crc32cCodec)) for c in codecs):
        return None  # compressed: the size varies and the checksum catches truncation
    raw = math.prod(arr.chunks) * arr.dtype.itemsize
    return raw + 4 * sum(isinstance(c, Crc32cCodec) for c in codecs)


class WholeStore(LocalStore):
    """A read-only local store where a missing or wrong-sized chunk raises instead of reading as zeros."""

    def __init__(self, root, size: int | None = None):
        super().__init__(root, read_only=True)
        self.size = size  # exact chunk file size, when known

    async def get(self, key, prototype=None, byte_range=None):
        buf = await super().get(key, prototype, byte_range)
        if key.startswith("c/") and byte_range is None:
            if buf is None:
                raise damaged(self.root, f"chunk {key} is missing")
            if self.size is not None and len(buf) != self.size:
                raise damaged(self.root, f"chunk {key} has {len(buf)} bytes, {self.size} expected")
        return buf


class WholeArray(zarr.Array):
    """zarr.Array whose reads turn a failed chunk checksum into the one-line damaged-store error."""

    def __getitem__(self, selection):
        try:
            out = super().__getitem__(selection)
        except ValueError as e:
            if "checksum" not in str(e):
                raise
            raise damaged(self.store_path.store.root, "a chunk fails its crc32c checksum") from None
        bad = first_non_finite(out)
        if bad is not None:
            first = selection[0] if isinstance(selection, tuple) and selection else selection
            at = f"frame {first}" if isinstance(first, (int, np.integer)) else (
                f"frame {(first.start or 0) + bad}" if isinstance(first, slice) and (first.step or 1) == 1 else "a frame it read")
            raise damaged(self.store_path.store.root, f"{at} is not finite (NaN or inf)")
        return out


def open_store(path, expect: dict[str, Any] | None = None, scan: bool = True) -> zarr.Array:
    """Open a committed store read-only; refuse an incomplete or damaged one, or one whose attrs differ.

    `expect` maps attr names to required values, e.g. {"tokenizer_hash": "ab12...", "latent_shape": [8, 16, 16]}.
    `scan` stats every chunk file up front (about 10 us each); reads check each chunk again anyway.
    """
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"store {path} does not exist; run the rule that writes it first")
    if not path.is_dir():
        raise PipelineError(f"store {path} is not a directory (a zarr store is one); delete it and rerun its rule")
    try:
        arr = WholeArray(zarr.open_array(WholeStore(path), mode="r")._async_array)
    except PipelineError:
        raise
    except Exception as e:
        raise PipelineError(f"store {path} cannot be opened ({type(e).__name__}); delete it and rerun") from e
    attrs = dict(arr.attrs)
    if not attrs.get("complete"):
        raise PipelineError(f"store {path} is incomplete (no 'complete' attr); delete it and rerun its rule")
    size = chunk_bytes(arr)
    arr.store_path.store.size = size
    if scan:
        check_chunks(path, arr, attrs, size)
    for key, want in (expect or {}).items():
        got = attrs.get(key)
        if _norm(got) != _norm(want):
            raise PipelineError(
                f"store {path}: {key} is {got!r} but {want!r} was expected; "
                "rerun its rule so that it matches (e.g. snakemake --forcerun for that stage)"
            )
    return arr


def check_chunks(path: Path, arr: zarr.Array, attrs: dict, size: int | None) -> None:
    """Every time chunk's file is there (and has its exact size, when that is fixed)."""
    n = math.ceil(arr.shape[0] / arr.chunks[0])
    if attrs.get("frames", arr.shape[0]) != arr.shape[0]:
        raise damaged(path, f"it records {attrs.get('frames')} frames but its array holds {arr.shape[0]}")
    if attrs.get("chunk_files", n) != n:
        raise damaged(path, f"it records {attrs.get('chunk_files')} chunk files but {arr.shape[0]} frames need {n}")
    for i in range(n):
        key = chunk_key(i, arr.ndim)
        try:
            got = os.stat(path / key).st_size
        except FileNotFoundError:
            raise damaged(path, f"chunk {key} ({i + 1} of {n}) is missing") from None
        if size is not None and got != size:
            raise damaged(path, f"chunk {key} ({i + 1} of {n}) has {got} bytes, {size} expected")


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def input_identity(paths) -> list:
    """What identifies the input stores for resuming: path, length, source, fps and size."""
    out = []
    for p in paths:
        a = dict(open_store(p).attrs)
        out.append([str(p), a.get("frames"), a.get("source"), a.get("fps"), a.get("height"), a.get("width")])
    return out


def stores_in(paths, videos=None) -> list[str]:
    """The stores `paths` name, in order: each path is a store (VIDEO.zarr) or a shard, the folder
    of stores one encode job writes (results/latents/train_000/VIDEO.zarr, ...), read in sorted
    order. With `videos`, the stores must be exactly those videos' in that order (stores read side by
    side pair by position)."""
    out = []
    for p in map(Path, paths):
        out += [str(s) for s in sorted(p.glob("*.zarr"))] if p.is_dir() and p.suffix != ".zarr" else [str(p)]
    if videos is not None and [Path(s).stem for s in out] != list(videos):
        missing = ", ".join(sorted(set(videos) - {Path(s).stem for s in out})) or "none"
        raise PipelineError(f"the stores {', '.join(map(str, paths))} are not those of the videos {', '.join(videos)} "
                            f"(missing: {missing}); rerun the rules that write them")
    return out


def write_shard(out, sources, encode: Callable[[str, Path], object]) -> None:
    """One encode job's shard: `encode(source, store)` for each source store into out/NAME.zarr
    (NAME: the source's), written in a hidden folder renamed into place when whole, so a shard that
    exists holds every store of its videos."""

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        for source in sources:
            encode(source, tmp / Path(source).name)

    sweep(out)  # a killed job's half-written shard
    atomic_write(out, fill)


def video_store(folder, video: str) -> Path:
    """The store of `video` in `folder` (results/latents, results/actions/KIND): FOLDER/SHARD/VIDEO.zarr
    where an encode job wrote it in a shard, else FOLDER/VIDEO.zarr (a store by hand, or a given action store)."""
    return next(iter(sorted(Path(folder).glob(f"*/{video}.zarr"))), Path(folder) / f"{video}.zarr")
