"""Encoded video -> frames: probe without ffprobe, stream resampled/resized frames, write a store.

Frames leave ffmpeg as raw rgb24 on a pipe and are read in fixed-size blocks, so memory stays
flat in the video length. Resize policies (all end at exactly height x width):
    crop     scale to cover, then center-crop   (no borders, loses the edges of other aspects)
    pad      scale to fit, then pad black        (keeps everything, adds borders)
    stretch  scale to the target                 (ignores the aspect ratio)
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import ffmpeg
import numpy as np

from latentwm.config.data import RESIZE, FramesConfig
from latentwm.config.fields import from_dict, to_dict
from latentwm.core.errors import PipelineError
from latentwm.data.store import StoreWriter

BLOCK_BYTES = 4 << 20  # bytes of frames per block read from ffmpeg in extract()
QUIET = ("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error")


def ffmpeg_exe() -> str:
    """The system ffmpeg if there is one on PATH, else the binary bundled with imageio-ffmpeg."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def probe(path, count_frames: bool = False) -> dict:
    """width, height, fps, duration (s, None if unknown) and has_video of a video file; with
    `count_frames`, also "frames": the whole first video stream decoded and counted (exact, whatever
    the container says).

    Parses the stream header that `ffmpeg -i` prints and decodes the first frame, so a file whose
    header looks fine but whose video cannot be decoded fails here, not half-way through a job.
    """
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"video {path} does not exist; check the path (or rerun its download)")
    if path.stat().st_size == 0:
        raise PipelineError(f"video {path} is an empty (zero-byte) file; replace it with a real video")
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        *([] if count_frames else ["-frames:v", "1"]),
        "-f",
        "null",
        "-",
    ]
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
    err = p.stderr
    if "Input #0" not in err:
        raise PipelineError(
            f"video {path} cannot be opened, it is corrupt, truncated or not a video ({_last_line(err)})"
        )
    stream = re.search(r"Stream #0:\d+.*?: Video: .*?(\d{2,5})x(\d{2,5})[ ,\[]", err)
    if not stream:
        raise PipelineError(f"video {path} has no video stream (audio-only or data file?); use a file with video")
    frames = re.findall(r"frame=\s*(\d+)", err)
    if p.returncode != 0 or (frames and int(frames[-1]) == 0):
        raise PipelineError(f"video {path} cannot be decoded, the file may be truncated or corrupt ({_last_line(err)})")
    line = err[stream.start() : err.find("\n", stream.start())]
    fps = re.search(r"([\d.]+)(k?) fps", line) or re.search(r"([\d.]+)(k?) tbr", line)
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", err)
    counted = {"frames": int(frames[-1])} if count_frames and frames else {}
    return {
        **counted,
        "width": int(stream.group(1)),
        "height": int(stream.group(2)),
        "fps": float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None,
        "duration": int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None,
        "has_video": True,
    }


def decode_errors(text: str) -> dict:
    """{"decode_errors": the error messages in ffmpeg's log (a "repeated N times" line counts N), "decode_error": the first}."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    repeats = [re.search(r"Last message repeated (\d+) times", ln) for ln in lines]
    n = sum(int(m.group(1)) if m else 1 for m in repeats)
    first = next((ln for ln, m in zip(lines, repeats) if not m), None)
    return {"decode_errors": n, "decode_error": re.sub(r" @ 0x[0-9a-f]+", "", first) if first else None}


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("frame=")]
    return lines[-1] if lines else "no message from ffmpeg"


def frame_stream(path, fps: float, height: int, width: int, resize: str = "crop", span: tuple[float, float] | None = None):
    """The ffmpeg-python graph: fps resample first (so fewer frames are scaled), then resize.
    `span` (start, duration) in seconds: only that stretch (ffmpeg seeks the input, then decodes from the exact time)."""
    if resize not in RESIZE:
        raise PipelineError(f"frames.resize is {resize!r}; use one of {', '.join(RESIZE)}")
    seek = {} if span is None else {"ss": f"{span[0]:.6f}", "t": f"{span[1]:.6f}"}
    v = ffmpeg.input(str(path), **seek).video.filter("fps", fps=fps)
    if resize == "crop":
        v = v.filter("scale", width, height, force_original_aspect_ratio="increase", flags="area")
        v = v.filter("crop", width, height)
    elif resize == "pad":
        v = v.filter("scale", width, height, force_original_aspect_ratio="decrease", flags="area")
        v = v.filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2", color="black")
    else:
        v = v.filter("scale", width, height, flags="area")
    return v.filter("setsar", 1).output("pipe:", format="rawvideo", pix_fmt="rgb24").global_args(*QUIET)


def iter_frames(
    path, fps: float, height: int, width: int, resize: str = "crop", block: int = 64, span: tuple[float, float] | None = None,
    report: dict | None = None,
) -> Iterator[np.ndarray]:
    """Yield uint8 blocks (n, 3, H, W), n <= block, of the video resampled to `fps`.

    A reader thread keeps up to two blocks ahead, so ffmpeg goes on decoding while the consumer
    (e.g. zarr compression) works, instead of stalling on a full 64 KiB pipe. ffmpeg's stderr
    goes to a temp file, never a pipe that could fill up; a non-zero exit becomes a PipelineError.
    ffmpeg exits 0 on damaged data (it conceals what it cannot decode), so the error messages it
    printed are counted into `report` ("decode_errors", and the first as "decode_error").
    """
    size = block * 3 * height * width
    args = ffmpeg.compile(frame_stream(path, fps, height, width, resize, span), cmd=ffmpeg_exe())
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, bufsize=0)
        ahead: queue.Queue[bytes] = queue.Queue(maxsize=2)
        reader = threading.Thread(target=_read_blocks, args=(proc.stdout, size, ahead), daemon=True)
        reader.start()
        try:
            while True:
                buf = ahead.get()
                n = len(buf) // (3 * height * width)
                if n:
                    # (n, H, W, 3) rgb24 -> (n, 3, H, W), the store layout
                    yield np.frombuffer(buf, np.uint8, n * 3 * height * width).reshape(n, height, width, 3).transpose(
                        0, 3, 1, 2
                    )
                if len(buf) < size:
                    break
            rc = proc.wait()
        finally:
            if proc.poll() is None:  # the consumer stopped early: end ffmpeg, then free the reader
                proc.kill()
                proc.wait()
            while reader.is_alive():
                with contextlib.suppress(queue.Empty):
                    ahead.get_nowait()
                reader.join(0.01)
            proc.stdout.close()
        err.seek(0)
        text = err.read().decode(errors="replace")
        if rc != 0:
            raise PipelineError(f"video {path}: ffmpeg failed while extracting frames ({_last_line(text)})")
        if report is not None:
            report.update(decode_errors(text))


def encode_mp4(path, frames: Iterable[np.ndarray], fps: float, height: int, width: int, what: str) -> None:
    """uint8 frames (H, W, 3) -> an H.264 mp4 (yuv420p, crf 18) at `path` (even sides); `what` names it in errors."""
    stream = (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps)
        .output(str(path), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=18, preset="fast")
        .global_args("-hide_banner", "-nostats", "-loglevel", "error")
        .overwrite_output()
    )
    proc = stream.run_async(cmd=ffmpeg_exe(), pipe_stdin=True, pipe_stderr=True)
    try:
        try:
            for frame in frames:
                proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:  # ffmpeg quit early; its stderr below says why
            pass
        _, err = proc.communicate()  # closes stdin; stderr is tiny at loglevel error
        if proc.returncode != 0:
            raise PipelineError(f"encoding {what} failed: {err.decode(errors='replace').strip()}")
    finally:
        if proc.poll() is None:
            proc.kill()


def _read_blocks(stream, size: int, out: queue.Queue) -> None:
    """Put `size`-byte blocks of `stream` into `out`; the last one is short (maybe empty)."""
    while True:
        buf = _read_exactly(stream, size)
        out.put(buf)
        if len(buf) < size:
            return


def _read_exactly(stream, size: int) -> bytes:
    """Read `size` bytes, fewer only at end of stream (a pipe returns short reads)."""
    parts, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def extract(video_path, out_store, cfg: dict, source: str, log: Callable[[str], None] = print,
            part: list[int] | None = None) -> int:
    """Stream `video_path` into the zarr store `out_store`, uint8 (T, 3, H, W); returns T. With
    `part` [k, parts], only the k-th of `parts` equal stretches of the video in time.

    Fails (and leaves no store) if the video gives fewer than cfg.min_frames frames.
    """
    c = from_dict(FramesConfig, cfg, "frames")
    try:
        return _extract(video_path, out_store, c, source, log, part)
    except PipelineError as e:  # name the source too: that is what the user configured
        raise PipelineError(f"source {source}: {e}") from None


def part_span(part: list[int] | None, duration: float | None, video_path) -> tuple[float, float] | None:
    """(start, length) in seconds of part [k, parts] of a video of `duration` seconds; None: the whole video."""
    if part is None:
        return None
    k, parts = part
    if not duration:
        raise PipelineError(f"video {os.path.realpath(video_path)} does not say how long it is, so it cannot be cut "
                            f"into {parts} parts; re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)")
    # (the container's duration, to 0.01 s: a stream that outlasts the video shortens the last part)
    return k * duration / parts, duration / parts


def damaged_data(video_path, report: dict, n: int, limit: float, log: Callable[[str], None]) -> None:
    """Refuse a video whose decoder reported more errors than `limit` per extracted frame (its frames
    would be concealment garbage); under it, warn."""
    errors = report.get("decode_errors", 0)
    if not errors:
        return
    what = f"video {video_path}: ffmpeg reported {errors} decode errors for {n} frames ({report['decode_error']})"
    if errors > limit * n:
        raise PipelineError(f"{what}, over frames.max_decode_errors={limit:g} per frame: the file is damaged and its frames "
                            "would be decoder garbage; re-download or re-encode it (or raise frames.max_decode_errors)")
    log(f"WARNING: {what}; under frames.max_decode_errors={limit:g} per frame, kept (the count is in the store's attrs)")


def frame_rate(source_fps: float | None, ceiling: float) -> float:
    """The rate a video of `source_fps` (None: unknown) is read at under the `ceiling` (frames.fps): the
    ceiling, or the video's own rate when it is slower. Resampling up would repeat frames, which makes
    copy-last score near the ceiling and teaches the model to copy. 1% of slack: a 29.97 fps source at a
    ceiling of 30 is read at 30."""
    return source_fps if source_fps and ceiling > source_fps * 1.01 else ceiling


def _extract(video_path, out_store, c: FramesConfig, source: str, log: Callable[[str], None], part=None) -> int:
    info = probe(video_path)
    log(f"{video_path}: {info['width']}x{info['height']} at {info['fps']} fps, {info['duration']} s")
    span = part_span(part, info["duration"], video_path)
    if span is not None:
        log(f"{Path(video_path).stem}: part {part[0]} (from 0) of {part[1]}, {span[0]:.2f} s to {span[0] + span[1]:.2f} s")
    src = info["fps"]
    if not src or info["duration"] is None:  # a raw stream: ffmpeg guesses (25 fps) and the clip may play at the wrong speed
        log(f"WARNING: video {video_path} states no frame rate or duration (a raw stream?), so its timing is ffmpeg's guess "
            "and its speed (motion per frame) may be off; remux it with its true rate "
            "(ffmpeg -r RATE -i IN -c copy OUT.mp4)")
    fps = frame_rate(src, c.fps)
    if fps != c.fps:
        log(f"{Path(video_path).stem}: {src:g} fps, under frames.fps {c.fps:g}: kept at its own rate (no frame repeated)")
    attrs = {
        "source": source,
        "video": Path(video_path).stem,
        "video_path": str(video_path),
        "fps": fps,
        "height": c.height,
        "width": c.width,
        "resize": c.resize,
        "settings": to_dict(c),
        "probe": info,
        "part": part,  # [k, parts] of a local file cut in time, or None
        "span_s": span,
    }
    # blocks of whole chunks, ~4 MB: fewer zarr appends, memory still flat in the video length.
    # Uncompressed: zstd shrank 64x64 frames only 1.1-1.3x but cost ~2x the extraction time.
    block = c.chunk_frames * max(1, BLOCK_BYTES // (3 * c.height * c.width * c.chunk_frames))
    t0, n, next_log, report = time.time(), 0, 4096, {}
    with StoreWriter(out_store, (3, c.height, c.width), "uint8", c.chunk_frames, attrs, compress=False) as w:
        for frames in iter_frames(video_path, fps, c.height, c.width, c.resize, block=block, span=span, report=report):
            w.append(frames)
            n += len(frames)
            if n >= next_log:
                log(f"{n} frames, {n / max(time.time() - t0, 1e-9):.0f} frames/s")
                next_log += 4096
        if n < c.min_frames:  # a part names the user's file and the parts that would fit
            what, fix = (f"video {video_path}", "use a longer video") if part is None else (
                f"part {part[0]} of {part[1]} of {os.path.realpath(video_path)}",
                f"set its source's parts to at most {max(1, int(n * part[1] / c.min_frames))}")
            raise PipelineError(f"{what} has {n} frames at {fps:g} fps, fewer than frames.min_frames={c.min_frames}; "
                                f"{fix} or lower frames.min_frames")
        damaged_data(video_path, report, n, c.max_decode_errors, log)
        w.commit(**report)
    log(f"wrote {out_store}: {n} frames of 3x{c.height}x{c.width} in {time.time() - t0:.1f} s")
    return n
