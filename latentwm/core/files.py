"""Writes that either land whole or fail cleanly, and the sweep of what dead writers left.

Every output is written under a hidden temp name beside it, `.NAME.tmpPID` (a directory for a
zarr store), and renamed into place when whole. A write that fails (disk full, read-only file
system, permission) removes its own temp file and becomes one PipelineError line that says what
happened, where, and what to do. A process killed mid-write (kill -9, node lost) cannot clean up:
the job that next owns the output sweeps its temp names when it starts (Snakemake runs one job
per output at a time, so no live writer owns them then).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path
from typing import Callable

from latentwm.core.errors import PipelineError

WHY = {
    errno.ENOSPC: ("disk full", "free space"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota"),
    errno.EROFS: ("read-only file system", "make it writable (remount, or run where results/ can be written)"),
    errno.EACCES: ("permission denied", "make the folder writable for this user"),
    errno.EPERM: ("permission denied", "make the folder writable for this user"),
}


def temp_path(path: str | Path, keep_suffix: bool = False) -> Path:
    """The hidden temp name of `path` for this process: .NAME.tmpPID beside it, or with
    keep_suffix .STEM.tmpPID.SUFFIX (for writers that pick the format by the suffix: ffmpeg)."""
    path = Path(path)
    if keep_suffix:
        return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write(path: str | Path, fill: Callable[[Path], object], then: str = "", keep_suffix: bool = False) -> None:
    """Write `path` whole or not at all: `fill(temp)` writes the temp name, which then replaces
    `path` (its folder made first). On any failure the temp is removed and the old `path` kept; a failed write (disk
    full, read-only, permission) becomes one PipelineError line naming `path`, `then` appended."""
    path = Path(path)
    tmp = temp_path(path, keep_suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fill(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        remove(tmp)
        if is_write_failure(e):
            raise write_failure(path, e, then) from None
        raise


def _os_error(e: BaseException | None) -> OSError | None:
    """The OSError behind `e`: itself, or one it was raised while handling (torch.save's C++
    writer turns a failed write into a RuntimeError raised during the OSError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno in WHY:
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def is_write_failure(e: BaseException) -> bool:
    return _os_error(e) is not None


def write_failure(path: str | Path, e: BaseException, then: str = "") -> PipelineError:
    """The one line of a failed write: `disk full while writing X: free space and rerun[; then]`."""
    what, fix = WHY[_os_error(e).errno]
    return PipelineError(f"{what} while writing {path}: {fix} and rerun" + (f"; {then}" if then else ""))


def remove(path: Path) -> None:
    """Remove a temp file or directory; never raise (it is cleanup after a failure)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def sweep(*paths: str | Path, log: Callable[[str], None] = lambda msg: None) -> list[Path]:
    """Remove the temp names (.NAME.tmp*, and .STEM.tmp*.SUFFIX of videos) that dead writers of
    `paths` left; called at the start of the job that owns them. Returns what was removed."""
    gone = []
    for path in map(Path, paths):
        if not path.parent.is_dir():
            continue
        for pattern in (f".{path.name}.tmp*", f".{path.stem}.tmp*{path.suffix}"):
            for leftover in path.parent.glob(pattern):
                if leftover not in gone:
                    remove(leftover)
                    gone.append(leftover)
    if gone:
        log(f"removed {len(gone)} temp file(s) left by an interrupted run: {', '.join(str(g) for g in gone)}")
    return gone


def unwritable(paths) -> list[str]:
    """One line for each folder that would hold one of `paths` (its nearest existing ancestor) but
    cannot be written by this user, saying why and what to do; none above another one listed."""
    folders = set()
    for path in map(Path, paths):
        folder = path.parent
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
        folders.add(folder)
    lines, blocked = [], []
    for folder in sorted(folders, key=lambda f: len(f.parts)):
        if os.access(folder, os.W_OK) or any(folder.is_relative_to(b) for b in blocked):
            continue
        blocked.append(folder)
        # root passes os.access everywhere but on a read-only mount, so the flag tells the two apart
        code = errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES
        what, fix = WHY[code]
        lines.append(f"{what} at {folder}: {fix} and rerun; no job was started")
    return lines


def file_hash(path: str | Path, n: int = 16) -> str:
    """Short sha256 of a file: the provenance tag latents carry of the tokenizer that made them."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]
