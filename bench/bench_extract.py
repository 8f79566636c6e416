"""Frame extraction throughput: latentwm.data.video.extract vs bare ffmpeg on the same clip.

    python bench/bench_extract.py [--frames 1200] [--size 256] [--out 64] [--repeat 3]

Renders one generated clip (size x size, H.264) into bench/out/ once, then times
  extract      video.extract -> a zarr store (decode, fps, scale, pipe, store writes)
  ffmpeg null  ffmpeg -i clip -vf fps,scale -f null -          (decode + filters only)
  ffmpeg raw   the same filter graph as extract, rawvideo rgb24 to /dev/null
and prints a markdown table; ratio = extract frames/s over the faster bare ffmpeg.
Best of --repeat runs each, so other load on the machine hurts less.
"""

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import ffmpeg
from timing import best_time

from latentwm.data.synthetic import write_clip
from latentwm.data.video import extract, ffmpeg_exe, frame_stream

FPS = 15




def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=1200)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()

    clip = Path(__file__).parent / "out" / f"clip_{a.frames}_{a.size}.mp4"
    if not clip.exists():
        t0 = time.perf_counter()
        write_clip(clip, 0, a.frames, FPS, a.size, seed=0)
        print(f"rendered {clip} in {time.perf_counter() - t0:.1f} s")
    cfg = {"fps": FPS, "height": a.out, "width": a.out, "resize": "crop", "min_frames": 1, "chunk_frames": 64}
    tmp = Path(tempfile.mkdtemp())

    runs = iter(range(a.repeat))

    def run_extract():  # a fresh store each time; deleting one is not part of extracting
        n = extract(clip, tmp / f"frames{next(runs)}.zarr", cfg, source="bench", log=lambda m: None)
        assert n == a.frames, n

    vf = f"fps={FPS},scale={a.out}:{a.out}:flags=area"
    null_cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(clip), "-vf", vf, "-f", "null", "-"]
    raw_cmd = ffmpeg.compile(frame_stream(clip, FPS, a.out, a.out, "crop"), cmd=ffmpeg_exe())
    raw_cmd = ["-y" if x == "pipe:" else x for x in raw_cmd] + ["/dev/null"]  # same graph, no pipe to read
    rows = {
        "extract (pipe + zarr)": best_time(run_extract, a.repeat),
        "ffmpeg -f null": best_time(lambda: subprocess.run(null_cmd, check=True), a.repeat),
        "ffmpeg rawvideo > /dev/null": best_time(lambda: subprocess.run(raw_cmd, check=True), a.repeat),
    }
    shutil.rmtree(tmp)
    fastest_bare = min(rows["ffmpeg -f null"], rows["ffmpeg rawvideo > /dev/null"])
    print(f"\n{a.frames} frames, {a.size}x{a.size} H.264 -> {a.out}x{a.out} at {FPS} fps, best of {a.repeat}\n")
    print("| method | seconds | frames/s |\n|---|---:|---:|")
    for name, t in rows.items():
        print(f"| {name} | {t:.2f} | {a.frames / t:.0f} |")
    print(f"\nratio extract / fastest bare ffmpeg: {fastest_bare / rows['extract (pipe + zarr)']:.2f}")


if __name__ == "__main__":
    main()
