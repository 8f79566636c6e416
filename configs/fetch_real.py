#!/usr/bin/env python3
"""Build the offline real-footage development set: data/real/*.mp4 (see configs/real.yaml).

Everything comes from package registries, nothing from the open internet:

  freedoom*_demo*  Freedoom (BSD licence) built-in demos, first person with the status-bar HUD,
                   rendered headless by the dsda-doom / prboom-plus source port (-timedemo with
                   -viddump, SDL dummy video driver) at 640x480, 35 fps (one frame per game tic)
                   [Debian: prboom-plus, freedoom; installed with apt-get when missing and root],
                   each with its sidecar freedoom*_demo*.actions.txt: the player's input behind
                   every frame, read from the demo and named by latentwm.data.doom_demo.ACTIONS
  bbb_*            Big Buck Bunny (c) Blender Foundation, CC-BY 3.0: the full film ships in the
                   moviepy 2.2.1 sdist on PyPI (docs/.../moviepy_10_minutes.zip), fetched with pip
  opencv_vtest     OpenCV's vtest.avi, a fixed street camera with pedestrians (Debian: opencv-doc,
                   apt-get download + dpkg-deb, nothing installed)

Clips are H.264 (libx264, yuv420p) mp4, no audio, at most 640 px wide and 35 fps. Idempotent: a
clip already in data/real is skipped. One line per clip; exit status 1 when any clip is missing.

    python configs/fetch_real.py
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from latentwm.core import files
from latentwm.data import doom_demo
from latentwm.data.actions import read_sidecar
from latentwm.data.video import probe as probe_video

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "real"
WADS = doom_demo.IWADS
DOOM_MAX_S = 90  # longer demos are cut to their first 90 s
MOVIEPY = "2.2.1"  # its sdist carries the whole Big Buck Bunny film (1280x720, 24 fps, 9:56)
BBB_MEMBER = "docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip"
BBB_CLIPS = {  # id: (start s, duration s, what)
    "bbb_1": (60, 60, "Big Buck Bunny 1:00-2:00: the bunny wakes, meadow, butterfly"),
    "bbb_2": (300, 60, "Big Buck Bunny 5:00-6:00: the bunny sets his traps in the forest"),
}
VTEST = "usr/share/doc/opencv-doc/examples/data/vtest.avi"
X264 = ["-an", "-c:v", "libx264", "-preset", "medium", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "2",
        "-movflags", "+faststart"]


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        exe = shutil.which("ffmpeg")
        if not exe:
            sys.exit("ERROR: no ffmpeg; run: pip install imageio-ffmpeg  (or apt-get install -y ffmpeg)")
        return exe


FFMPEG = ffmpeg_exe()


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def nice(cmd):
    return (["nice", "-n", "10"] if shutil.which("nice") else []) + list(cmd)


def probe(path: Path) -> str:
    """'DUR s WxH FPS fps' of a video, from ffmpeg's header dump (imageio-ffmpeg has no ffprobe)."""
    err = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", err)
    size = re.search(r"Video: .*?, (\d+)x(\d+)", err)
    fps = re.search(r"([\d.]+) fps", err)
    if not (dur and size and fps):
        return "unreadable"
    secs = int(dur[1]) * 3600 + int(dur[2]) * 60 + float(dur[3])
    return f"{secs:6.1f} s {size[1]}x{size[2]} {float(fps[1]):g} fps"


def encode(inputs: list[str], out: Path, vf: str) -> None:
    """ffmpeg inputs -> out (H.264 mp4, <= 640 px wide), written to a temp name then renamed."""
    tmp = out.with_name(f".{out.stem}.tmp.mp4")
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *inputs, "-vf", f"{vf},scale='min(640,iw)':-2",
           *X264, str(tmp)]
    try:
        run(nice(cmd), stdin=subprocess.DEVNULL)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def report(clip: str, what: str, state: str) -> None:
    path = OUT / f"{clip}.mp4"
    print(f"{path.relative_to(ROOT)}  {probe(path)}  {state:7s} {what}", flush=True)


def missing(clips) -> list[str]:
    return [c for c in clips if not (OUT / f"{c}.mp4").exists()]


def fail(clips, msg: str) -> None:
    for c in clips:
        print(f"data/real/{c}.mp4  ERROR: {msg}", flush=True)


# --- Freedoom demos ------------------------------------------------------------------------------


def demo_lumps(wad: Path) -> list[tuple[str, bytes]]:
    """(lump name, data) of the DEMOn lumps of a WAD."""
    data = wad.read_bytes()
    n, off = struct.unpack("<ii", data[4:12])
    out = []
    for i in range(n):
        pos, size, name = struct.unpack("<ii8s", data[off + 16 * i : off + 16 * i + 16])
        name = name.rstrip(b"\0").decode("ascii", "replace")
        if re.fullmatch(r"DEMO\d", name):
            out.append((name, data[pos : pos + size]))
    return out


def ensure_doom() -> str | None:
    if doom_demo.port() and all(w.exists() for w in WADS.values()):
        return doom_demo.port()
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing prboom-plus and freedoom with apt-get ...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(["apt-get", "install", "-y", "-q", "prboom-plus", "freedoom"], env=env,
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "apt-get failed", flush=True)
    if doom_demo.port() and all(w.exists() for w in WADS.values()):
        return doom_demo.port()
    return None


def doom_clips() -> list[tuple[str, int, str, bytes, str]]:
    """(clip id, phase, lump, demo bytes, description) for every demo of both Freedoom IWADs."""
    out = []
    for phase, wad in WADS.items():
        if not wad.exists():
            continue
        for lump, demo in demo_lumps(wad):
            # vanilla demo header: version, skill, episode, map, ...
            level = f"MAP{demo[3]:02d}" if phase == 2 else f"E{demo[2]}M{demo[3]}"
            clip = f"freedoom{phase}_{lump.lower()}"
            out.append((clip, phase, lump, demo, f"Freedoom Phase {phase} {lump} ({level}), rendered demo, status-bar HUD"))
    return out


def render_doom(port: str, phase: int, demo: bytes, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="fetch_real_doom.") as tmp:
        raw = Path(tmp) / "raw.mkv"  # lossless intermediate; the final encode cuts and compresses it
        doom_demo.render(port, WADS[phase], demo, raw)
        encode(["-i", str(raw), "-t", str(DOOM_MAX_S)], out, "fps=35")


def write_sidecar(clip: str, demo: bytes, what: str) -> bool:
    """data/real/CLIP.actions.txt: the demo's action per tic, one line per frame of the rendered clip
    (frame t shows the view after tic t; a clip cut at DOOM_MAX_S keeps its first tics). A sidecar
    that names another action set (an older ACTIONS) is written again; True when written."""
    side = OUT / f"{clip}.actions.txt"
    if side.exists() and read_sidecar(side)[1] == list(doom_demo.ACTIONS):
        return False
    ids = doom_demo.actions(doom_demo.read(demo, clip))
    frames = probe_video(OUT / f"{clip}.mp4", count_frames=True)["frames"]
    if frames != min(len(ids), DOOM_MAX_S * 35):
        raise RuntimeError(f"{clip}.mp4 has {frames} frames but its demo {len(ids)} tics (cut at {DOOM_MAX_S * 35}); "
                           f"delete {clip}.mp4 and rerun to render it again")
    files.write(side, lambda tmp: tmp.write_text(doom_demo.sidecar_text(ids[:frames], what)))
    return True


def fetch_doom() -> int:
    clips = doom_clips()
    todo = missing(c[0] for c in clips)
    port = ensure_doom() if (todo or not clips) else None
    if not clips:  # the IWADs (and so the demo list) may have just been installed
        clips = doom_clips()
        todo = missing(c[0] for c in clips)
    if not clips or (todo and port is None):
        # the clip names are fixed by the WADs; name the usual ones when the WADs are missing
        names = [c[0] for c in clips] or [f"freedoom{p}_demo{d}" for p in (1, 2) for d in (1, 2, 3, 4)]
        fail(missing(names), "no Doom port or no Freedoom IWADs; run: apt-get install -y prboom-plus freedoom")
        return len(missing(names))
    bad = 0
    for clip, phase, lump, demo, what in clips:
        out = OUT / f"{clip}.mp4"
        try:
            state = "present" if out.exists() else "made"
            if not out.exists():
                render_doom(port, phase, demo, out)
            inputs = "its inputs written" if write_sidecar(clip, demo, what) else "with its inputs"
            report(clip, f"{what}, {inputs}", state)
        except Exception as e:
            fail([clip], str(e))
            bad += 1
    return bad


# --- Big Buck Bunny from the moviepy sdist -------------------------------------------------------


def fetch_bbb() -> int:
    todo = missing(BBB_CLIPS)
    with tempfile.TemporaryDirectory(prefix="fetch_real_bbb.") as tmp:
        tmp = Path(tmp)
        if todo:
            try:
                run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                     f"moviepy=={MOVIEPY}", "-d", str(tmp)], capture_output=True)
                sdist = next(tmp.glob("moviepy-*.tar.gz"))
                with tarfile.open(sdist) as tar:
                    member = tar.getmember(f"moviepy-{MOVIEPY}/{BBB_MEMBER}")
                    with tar.extractfile(member) as src, open(tmp / "mp.zip", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                with zipfile.ZipFile(tmp / "mp.zip") as z, z.open("moviepy_10_minutes/resources/bbb.mp4") as src, \
                        open(tmp / "bbb.mp4", "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except Exception as e:
                fail(todo, f"Big Buck Bunny from the moviepy {MOVIEPY} sdist failed ({e}); "
                           f"try: pip download --no-deps --no-binary :all: moviepy=={MOVIEPY}")
                return len(todo)
        bad = 0
        for clip, (start, dur, what) in BBB_CLIPS.items():
            if clip in todo:
                try:
                    encode(["-ss", str(start), "-t", str(dur), "-i", str(tmp / "bbb.mp4")], OUT / f"{clip}.mp4",
                           "fps=24")
                except Exception as e:
                    fail([clip], str(e))
                    bad += 1
                    continue
            report(clip, what + " (CC-BY 3.0, Blender Foundation)", "made" if clip in todo else "present")
        return bad


# --- OpenCV vtest.avi from Debian's opencv-doc ---------------------------------------------------


def fetch_vtest() -> int:
    clip, what = "opencv_vtest", "OpenCV vtest.avi: fixed street camera, pedestrians (opencv-doc)"
    if not missing([clip]):
        report(clip, what, "present")
        return 0
    with tempfile.TemporaryDirectory(prefix="fetch_real_vtest.") as tmp:
        tmp = Path(tmp)
        src = Path("/") / VTEST
        if not src.exists():
            try:
                run(["apt-get", "download", "opencv-doc"], cwd=tmp, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)
                deb = next(tmp.glob("opencv-doc_*.deb"))
                tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
                run(["tar", "-x", "-C", str(tmp), f"./{VTEST}"], stdin=tar.stdout)
                tar.wait()
                src = tmp / VTEST
            except Exception as e:
                fail([clip], f"opencv-doc download failed ({e}); run: apt-get update (then rerun this script)")
                return 1
        try:
            encode(["-i", str(src)], OUT / f"{clip}.mp4", "fps=10")
        except Exception as e:
            fail([clip], str(e))
            return 1
    report(clip, what, "made")
    return 0


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    bad = fetch_doom() + fetch_bbb() + fetch_vtest()
    clips = sorted(OUT.glob("*.mp4"))
    print(f"{len(clips)} clips in {OUT.relative_to(ROOT)}" + (f", {bad} missing" if bad else ""), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
