"""One video spec -> one encoded file, results/videos/{video}.mp4.

    generator  the clip is rendered and encoded (latentwm.data.synthetic)
    path       the local file is linked (copied if links fail), never modified
    url        yt-dlp downloads it through its Python API, never a shell

yt-dlp writes to a fixed name inside a temp directory next to the output, so no title or id
from the internet ever becomes a path; the finished file is renamed into place.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from latentwm.config.data import DownloadConfig, GeneratorConfig
from latentwm.config.fields import from_dict
from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.data.actions import given_for_file, write_record
from latentwm.data.sources import VideoSpec, resolved_lists, safe_name, sidecar_path, usable_name
from latentwm.data.synthetic import ACTIONS, clip_actions, write_clip
from latentwm.data.video import ffmpeg_exe


class _Log:
    """yt-dlp's logger interface, writing to our log function; errors come back as exceptions."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log

    def debug(self, msg: str) -> None:
        if not msg.startswith("[debug]"):
            self.log(msg)

    info = warning = debug

    def error(self, msg: str) -> None:
        pass  # raised as DownloadError, which we turn into one PipelineError line


def _options(c: DownloadConfig, log: Callable[[str], None]) -> dict:
    return {
        "quiet": True,
        "noprogress": True,
        "logger": _Log(log),
        "retries": c.retries,
        "extractor_retries": c.retries,
        "fragment_retries": c.retries,
        "socket_timeout": c.socket_timeout,
        "ffmpeg_location": ffmpeg_exe(),
    }


def _reason(e: Exception) -> str:
    """The first line of a yt-dlp error, without its prefix and the nested 'caused by' repeat."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.removeprefix("ERROR: ").split(" (caused by ")[0]


def list_entries(
    url: str, c: DownloadConfig, source: str, log: Callable[[str], None] = lambda m: None
) -> Iterator[tuple]:
    """(extractor, id, url) of each video behind `url`: itself, or the entries of a playlist/channel."""
    import yt_dlp

    opts = {**_options(c, log), "extract_flat": "in_playlist", "skip_download": True}
    if c.playlist_limit:
        opts["playlist_items"] = f"1:{c.playlist_limit}"
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=False)
    except yt_dlp.utils.YoutubeDLError as e:
        raise PipelineError(
            f"source {source}: cannot list {url} ({_reason(e)}); check the URL and the network"
        ) from None
    if info.get("_type") != "playlist":
        yield info.get("extractor_key") or "generic", str(info["id"]), url
        return
    for e in info.get("entries") or []:
        if e and e.get("id"):
            yield e.get("ie_key") or info.get("extractor_key") or "generic", str(e["id"]), e.get("url") or url


def spec_from_resolved(resolved_json, video: str) -> VideoSpec:
    """The spec of `video` in a resolve_source output (results/sources/{source}.json)."""
    for spec in next(iter(resolved_lists([resolved_json]).values())):
        if spec.video == video:
            return spec
    raise PipelineError(f"video {video} is not listed in {resolved_json}; rerun resolve_source (delete that file)")


def fetch(spec: VideoSpec, out_path, cfg: dict, log: Callable[[str], None] = print, actions_path=None) -> None:
    """Produce `out_path` (an mp4) for one video spec, atomically; and `actions_path`, the video's
    own per-frame actions record (latentwm.data.actions): the generator's player, a local file's sidecar,
    none for a URL."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    kind = spec.kind
    record = {"actions": None, "fps": None, "names": None}
    if kind == "generator":
        g = from_dict(GeneratorConfig, spec.generator, f"sources.{spec.source}.generator")
        log(f"rendering clip {spec.index} of source {spec.source}: {g.frames} frames, {g.size}px, seed {g.seed}")
        write_clip(out_path, spec.index, g.frames, g.fps, g.size, g.seed, g.player)
        log(f"wrote {out_path} ({out_path.stat().st_size} bytes)")
        if g.player:
            record = {"actions": clip_actions(spec.index, g.frames, g.size, g.seed).tolist(), "fps": g.fps,
                      "names": list(ACTIONS)}
    elif kind == "path":
        sidecar = sidecar_path(spec.path)
        if actions_path is not None and sidecar.exists():  # checked before linking: a bad file makes no video
            record = given_for_file(spec.path, sidecar)
            log(f"{sidecar}: {len(record['actions'])} actions, one per frame")
        link_local(spec.path, out_path, spec.source, log)
    elif kind == "url":
        download_url(spec.url, out_path, from_dict(DownloadConfig, cfg, "download"), spec.video, log)
    else:
        raise PipelineError(f"video {spec.video}: unknown source kind {kind!r}; use generator, path or url")
    if actions_path is not None:
        write_record(actions_path, record)


NOT_REGULAR = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def local_file(path, source: str) -> Path:
    """The absolute path of a local source file, checked: there, a regular file, readable, not empty,
    and a name Snakemake can take as an input; one line saying which it is not."""
    src = Path(path).expanduser().absolute()
    where = f"source {source}: file {path}"
    try:
        mode = os.stat(src).st_mode
    except FileNotFoundError:
        raise PipelineError(f"{where} does not exist; fix sources[].path in the config, or mount its drive and rerun "
                            "(what was made from it is kept)") from None
    except OSError as e:  # ELOOP, EACCES on a folder above it, ...
        raise PipelineError(f"{where} cannot be reached ({os.strerror(e.errno) if e.errno else e}): a symlink loop or a "
                            "folder this user may not enter; point sources[].path at the video file itself") from None
    if not stat.S_ISREG(mode):
        raise PipelineError(f"{where} is {NOT_REGULAR.get(stat.S_IFMT(mode), 'not a regular file')}, not a video file; "
                            "point sources[].path at a video file")
    if not os.access(src, os.R_OK):
        raise PipelineError(f"{where} cannot be read by this user; make it readable (chmod a+r) or copy it somewhere that is")
    if not usable_name(src):
        raise PipelineError(f"{where} has a brace ({{ or }}) in its path, which Snakemake reads as a wildcard; rename it, "
                            "or link it under a name without braces and point sources[].path there")
    if src.stat().st_size == 0:
        raise PipelineError(f"{where} is empty (zero bytes); point sources[].path at a real video")
    return src


def link_local(path, out_path: Path, source: str, log: Callable[[str], None]) -> None:
    """Symlink the original (absolute) to out_path; copy where symlinks are not allowed."""
    src = local_file(path, source)

    def fill(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(src, tmp)
            log(f"linked {src} -> {out_path}")
        except OSError:
            shutil.copyfile(src, tmp)
            log(f"copied {src} -> {out_path} (symlinks not allowed here)")

    files.write(out_path, fill)


def limits(c: DownloadConfig, what: str) -> Callable[[dict], None]:
    """A yt-dlp progress hook that stops a download past download.max_mb or download.max_seconds
    (its error propagates out of yt-dlp; the caller removes the partial file)."""
    start = time.monotonic()

    def hook(d: dict) -> None:
        got = (d.get("downloaded_bytes") or 0) / 2**20
        if got > c.max_mb:
            raise PipelineError(f"{what} is larger than download.max_mb ({c.max_mb:g} MiB); stopped at {got:.1f} MiB and "
                                "nothing kept: raise download.max_mb if the video is meant to be this big")
        if time.monotonic() - start > c.max_seconds:
            raise PipelineError(f"{what} took longer than download.max_seconds ({c.max_seconds:g} s); stopped at "
                                f"{got:.1f} MiB and nothing kept: raise download.max_seconds for a slow connection")

    return hook


def download_url(url: str, out_path: Path, c: DownloadConfig, video: str, log: Callable[[str], None]) -> None:
    """yt-dlp download of one video, height <= max_height, remuxed to mp4, renamed to out_path."""
    import yt_dlp

    h = c.max_height
    # absolute: yt-dlp joins relative "home" and "temp" paths into each other
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{out_path.stem}.", dir=out_path.parent.absolute()))
    opts = {
        **_options(c, log),
        "format": f"bv*[height<={h}]/b[height<={h}]/bv*/b",  # video only is fine; audio is never used
        "noplaylist": True,
        "paths": {"home": str(tmpdir), "temp": str(tmpdir)},
        "outtmpl": {"default": "video.%(ext)s"},  # a fixed name: nothing from the site becomes a path
        "restrictfilenames": True,
        "merge_output_format": "mp4",
        "postprocessors": [{"key": "FFmpegVideoRemuxer", "preferedformat": "mp4"}],
        "overwrites": True,
    }
    opts["progress_hooks"] = [limits(c, f"video {video}: {url}")]
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
        files = [Path(d["filepath"]) for d in info.get("requested_downloads") or [] if d.get("filepath")]
        files = [f for f in files if f.resolve().parent == tmpdir.resolve() and f.is_file()]
        if not files:
            raise PipelineError(f"video {video}: yt-dlp reported no file for {url}; try again or another format")
        os.replace(files[0], out_path)
        log(f"downloaded {url} -> {out_path} ({out_path.stat().st_size} bytes)")
    except yt_dlp.utils.YoutubeDLError as e:
        raise PipelineError(f"video {video}: cannot download {url} ({_reason(e)})") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def resolve_url(entry: dict, cfg: dict, log=lambda msg: None) -> list[VideoSpec]:
    """The videos of a URL source: yt-dlp lists a playlist or channel flat (no download).

    One spec per entry (kind url, with its url and key); `key` is
    "{extractor}:{yt-dlp id}", so that rules/common.smk can drop a video two sources list.
    """
    sid, url = entry["id"], entry["url"]
    specs, keys = [], set()
    for extractor, ytid, entry_url in list_entries(url, from_dict(DownloadConfig, cfg, "download"), sid, log):
        key = f"{extractor.lower()}:{ytid}"
        if key in keys:
            continue
        keys.add(key)
        video, n = f"{sid}_{safe_name(ytid)}", 2
        while any(s.video == video for s in specs):  # two ids that differ only in unsafe characters
            video, n = f"{sid}_{safe_name(ytid)}_{n}", n + 1
        specs.append(VideoSpec(video, sid, "url", url=entry_url, key=key))
    if not specs:
        raise PipelineError(f"source {sid}: {url} lists no videos; check the URL (a channel's /videos page?)")
    return specs
