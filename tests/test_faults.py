"""Faults and bad input, as real Snakemake runs: nothing lost, every failure explained.

Each test's docstring is one row of docs/FAULTS.md: the first line is the fault, the rest what
the pipeline does. `python tests/fault_table.py > docs/FAULTS.md` regenerates the table, and
test_fault_table_is_current fails when it is stale.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zarr
from conftest import ROOT, job_counts, snakemake, tiny_config
from test_data_stages import config as data_config
from test_data_stages import targets
from test_download import closed_port_url

from latentwm.core.errors import PipelineError
from latentwm.data.actions import read_sidecar
from latentwm.data.actions import write_store as write_actions
from latentwm.data.store import StoreWriter, open_store
from latentwm.data.synthetic import write_clip
from latentwm.data.video import ffmpeg_exe
from latentwm.models import checkpoint

pytestmark = pytest.mark.slow


@contextmanager
def serve_any_path(body: bytes, pause: float = 0.0):
    """A real HTTP server on 127.0.0.1 that answers every GET path with `body` (an mp4), in 64 KiB
    pieces `pause` seconds apart (a slow server)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(0, len(body), 2**16):
                    self.wfile.write(body[i : i + 2**16])
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):  # the client stopped (a download limit)
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def start(workdir: Path, cfg: dict, *args: str) -> subprocess.Popen:
    """Snakemake in its own process group (so kill -9 takes its jobs with it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--configfile", "config.yaml", *args]
    out = open(workdir / "snakemake.out", "a")
    return subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill9_when(p: subprocess.Popen, condition, timeout: float = 300) -> None:
    """SIGKILL the whole Snakemake process group as soon as condition() holds."""
    deadline = time.time() + timeout
    while not condition():
        if p.poll() is not None:
            raise AssertionError(f"snakemake ended ({p.returncode}) before the moment to kill it; see snakemake.out")
        if time.time() > deadline:
            os.killpg(p.pid, signal.SIGKILL)
            raise AssertionError("the moment to kill never came")
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def last_logged_step(log: Path) -> int:
    steps = re.findall(r"step (\d+)/\d+", log.read_text())
    return int(steps[-1]) if steps else 0


def test_kill9_during_training_resumes_from_the_last_checkpoint(tmp_path):
    """kill -9 of the whole run during tokenizer training, then during dynamics training
    After `snakemake --unlock` (a killed Snakemake leaves its lock), rerunning with
    `--rerun-incomplete` resumes each from its last resume.pt (at most one checkpoint interval
    lost) and ends with exactly the configured number of optimizer steps."""
    cfg = tiny_config()
    cfg["tokenizer"]["train"].update(steps=200, checkpoint_every=50, log_every=10)
    cfg["dynamics"]["train"].update(steps=90, checkpoint_every=20, log_every=5)
    work = tmp_path / "run"
    target = "results/dynamics/dynamics.pt"
    for stage, steps, every in (("tokenizer", 200, 50), ("dynamics", 90, 20)):
        resume = work / f"results/{stage}/resume.pt"
        p = start(work, cfg, "--cores", "2", "--rerun-incomplete", target)
        kill9_when(p, resume.exists)
        time.sleep(0.5)  # a few more steps after the checkpoint: they are the ones lost
        killed_at = last_logged_step(work / f"logs/train_{stage}.log")
        assert resume.exists() and not (work / f"results/{stage}/{stage}.pt").exists()
        saved = checkpoint.load(resume)["step"]
        assert saved % every == 0 and saved >= killed_at - every, (saved, killed_at)
        snakemake(work, cfg, "--unlock")
    snakemake(work, cfg, "--cores", "2", "--rerun-incomplete", target)
    for stage, steps in (("tokenizer", 200), ("dynamics", 90)):
        log = (work / f"logs/train_{stage}.log").read_text()
        m = re.search(rf"resumed from results/{stage}/resume.pt at step (\d+)/{steps}", log)
        assert m and int(m.group(1)) > 0, log[-2000:]
        final = checkpoint.load(work / f"results/{stage}/{stage}.pt")
        assert final["step"] == steps
        assert not (work / f"results/{stage}/resume.pt").exists()  # superseded by the output


def test_kill9_during_extraction_or_encoding_leaves_no_store_taken_as_complete(tmp_path):
    """kill -9 during frame extraction of a long video, then during the encode job of its shard
    Only a hidden .tmp store (a hidden .tmp shard folder) is left, never a store or a shard at the
    final path; after `--unlock`, the rerun redoes that store (that shard) and no other, and sweeps
    the killed run's temp one."""
    data = tmp_path / "data"
    data.mkdir()
    long = data / "long.mp4"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-t", "90",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(long)],
        check=True,
    )  # fmt: skip
    cfg = data_config([{"id": "gen", "generator": {"clips": 2, "frames": 40, "fps": 10, "size": 32, "seed": 1}},
                       {"id": "long", "path": str(long)}])  # fmt: skip
    work = tmp_path / "work"
    frames = work / "results/frames"
    snakemake(work, cfg, "--cores", "1", *targets(["gen_000", "gen_001"])[:2])  # two videos done first
    p = start(work, cfg, "--cores", "1", "results/frames/long.zarr")
    kill9_when(p, lambda: frames.exists() and any(x.name.startswith(".long.zarr.tmp") for x in frames.iterdir()))
    assert not (frames / "long.zarr").exists()
    leftovers = [x for x in frames.iterdir() if x.name.startswith(".long.zarr.tmp")]
    with pytest.raises(PipelineError, match="incomplete|cannot be opened"):
        open_store(leftovers[0])  # even opened by hand, the partial store is refused
    snakemake(work, cfg, "--unlock")
    dry = snakemake(work, cfg, "-n", "--rerun-incomplete", *targets(["gen_000", "gen_001", "long"]))
    assert re.search(r"extract_frames\s+1\b", dry.stdout), dry.stdout[-2000:]
    assert "wildcards: video=long" in dry.stdout and "video=gen_000" not in dry.stdout
    snakemake(work, cfg, "--cores", "2", "--rerun-incomplete", "results/frames/long.zarr")
    assert open_store(frames / "long.zarr").shape[0] == 90 * 10  # 90 s resampled to frames.fps 10
    assert not [x for x in frames.iterdir() if ".tmp" in x.name]  # the killed run's temp store, swept

    # the same for latent encoding, one job per split here (3 videos: one each): the tokenizer and
    # the short videos' shards first
    snakemake(work, cfg, "--cores", "2", "results/tokenizer/tokenizer.pt")
    splits = json.loads((work / "results/splits.json").read_text())
    shard = {v: f"{split}_000" for split in ("train", "val", "test") for v in splits[split]}
    short = [f"results/latents/{shard[v]}" for v in ("gen_000", "gen_001")]
    snakemake(work, cfg, "--cores", "2", *short)
    latents, target = work / "results/latents", f"results/latents/{shard['long']}"
    p = start(work, cfg, "--cores", "1", target)
    kill9_when(p, lambda: any(latents.glob(f".{shard['long']}.tmp*/.long.zarr.tmp*")))
    assert not (work / target).exists()  # the shard is written in a hidden folder, renamed when whole
    snakemake(work, cfg, "--unlock")
    dry = snakemake(work, cfg, "-n", "--rerun-incomplete", target, *short)
    assert re.search(r"encode_latents\s+1\b", dry.stdout) and f"shard={shard['long']}" in dry.stdout, dry.stdout[-2000:]
    snakemake(work, cfg, "--cores", "2", "--rerun-incomplete", target)
    assert open_store(work / target / "long.zarr").shape[0] == 90 * 10
    assert not [x for x in latents.iterdir() if ".tmp" in x.name]  # the killed job's shard, swept


def test_broken_videos_fail_alone_with_one_line_each(tmp_path):
    """Broken sources among good ones: truncated mp4, audio-only file, a text file named .mp4,
    a 1-frame video, an unreachable URL
    Under --keep-going the good videos finish; each broken one fails its own job with one ERROR
    line naming the source and why (no traceback), shown in Snakemake's output."""
    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "good.mp4", 0, frames=30, fps=10, size=32, seed=0)
    whole = (data / "good.mp4").read_bytes()
    (data / "truncated.mp4").write_bytes(whole[: len(whole) // 3])
    (data / "notvideo.mp4").write_text("this is not a video\n" * 50)
    write_clip(data / "oneframe.mp4", 0, frames=1, fps=10, size=32, seed=0)
    ff = ffmpeg_exe()
    subprocess.run([ff, "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3", str(data / "audio.m4a")], check=True)
    sources = [
        {"id": "gen", "generator": {"clips": 2, "frames": 40, "fps": 10, "size": 32, "seed": 1}},
        {"id": "truncated", "path": str(data / "truncated.mp4")},
        {"id": "audioonly", "path": str(data / "audio.m4a")},
        {"id": "notvideo", "path": str(data / "notvideo.mp4")},
        {"id": "oneframe", "path": str(data / "oneframe.mp4")},
        {"id": "offline", "url": closed_port_url()},
    ]
    cfg = data_config(sources)
    work = tmp_path / "work"
    videos = ["gen_000", "gen_001", "truncated", "audioonly", "notvideo", "oneframe"]
    p = snakemake(work, cfg, "--cores", "2", "--keep-going", *targets(videos), check=False)
    assert p.returncode != 0
    expected = {
        "truncated": "source truncated",
        "audioonly": "source audioonly",
        "notvideo": "source notvideo",
        "oneframe": r"source oneframe: .*1 frames?",
    }
    for video, pattern in expected.items():
        logs = list((work / "logs").rglob(f"{video}.log"))
        errors = [line for f in logs for line in f.read_text().splitlines() if line.startswith("ERROR:")]
        assert len(errors) == 1 and re.search(pattern, errors[0]), (video, [f.read_text()[-800:] for f in logs])
        assert not any("Traceback" in f.read_text() for f in logs), video
        assert errors[0][len("ERROR: "):] in p.stdout, f"{video}: snakemake does not show the error line"
    resolve_log = (work / "logs/resolve_source/offline.log").read_text()
    errors = [line for line in resolve_log.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "offline" in errors[0] and "Traceback" not in resolve_log, resolve_log
    for video in ("gen_000", "gen_001"):
        assert open_store(work / f"results/frames/{video}.zarr").shape == (40, 3, 32, 32)
    assert sorted(x.name for x in (work / "results/frames").iterdir() if not x.name.startswith(".")) == [
        "gen_000.zarr", "gen_001.zarr"]  # fmt: skip


def test_paths_that_are_not_video_files_say_what_they_are(tmp_path):
    """Local sources that are not plain video files among a good one: a FIFO, /dev/zero, a symlink
    loop, a file with braces in its name
    Under --keep-going the good video finishes; each other fails its own job with one ERROR line
    saying what the path is (`is a named pipe (FIFO)`, `is a character device`, `cannot be reached
    (Too many levels of symbolic links)`, `has a brace ({ or }) in its path, which Snakemake reads as a
    wildcard`) and the fix, never "does not exist" and never Snakemake's WildcardError for the
    whole DAG."""
    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "good.mp4", 0, frames=30, fps=10, size=32, seed=0)
    shutil.copy(data / "good.mp4", data / "clip{1}.mp4")
    os.mkfifo(data / "pipe.mp4")
    os.symlink(data / "loop_b.mp4", data / "loop_a.mp4")
    os.symlink(data / "loop_a.mp4", data / "loop_b.mp4")
    expected = {
        "pipe": (data / "pipe.mp4", r"is a named pipe \(FIFO\), not a video file"),
        "zero": ("/dev/zero", "is a character device, not a video file"),
        "loop": (data / "loop_a.mp4", r"cannot be reached \(Too many levels of symbolic links\): a symlink loop"),
        "brace": (data / "clip{1}.mp4", r"has a brace \(\{ or \}\) in its path, which Snakemake reads as a wildcard"),
    }
    sources = [{"id": "good", "path": str(data / "good.mp4")}] + [{"id": k, "path": str(v[0])} for k, v in expected.items()]
    work = tmp_path / "work"
    p = snakemake(work, data_config(sources), "--cores", "2", "--keep-going", *targets(["good", *expected]), check=False)
    assert p.returncode != 0 and "WildcardError" not in p.stdout
    for video, (_, pattern) in expected.items():
        errors = error_lines(work / f"logs/source_away/{video}.log")
        assert len(errors) == 1 and re.search(rf"^ERROR: source {video}: file .* {pattern}", errors[0]), (video, errors)
        assert errors[0][len("ERROR: "):] in p.stdout and "Traceback" not in p.stdout
    assert open_store(work / "results/frames/good.zarr").shape[0] > 0


def test_downloads_past_their_size_or_time_limit_fail_and_leave_nothing(tmp_path):
    """A URL whose server sends 3 MiB under `download.max_mb: 1`, and one that trickles under
    `download.max_seconds: 1`
    The download stops with one line naming the video, the URL, the limit and the key to raise
    (`... is larger than download.max_mb (1 MiB); stopped at 2.0 MiB and nothing kept`, `took longer
    than download.max_seconds (1 s)`); nothing of it is left in results/videos/ (no video, no
    partial file)."""
    from latentwm.config.data import DownloadConfig
    from latentwm.data.download import download_url

    videos = tmp_path / "results/videos"
    videos.mkdir(parents=True)
    cases = [(3 * 2**20, 0.0, DownloadConfig(max_mb=1), r"is larger than download.max_mb \(1 MiB\); stopped at [\d.]+ MiB"),
             (2**20, 0.2, DownloadConfig(max_seconds=1), r"took longer than download.max_seconds \(1 s\); stopped at")]
    for size, pause, cfg, want in cases:
        with serve_any_path(bytes(size), pause) as base:
            with pytest.raises(PipelineError, match=rf"^video v: http://127.0.0.1:\d+/v.mp4 {want} .*nothing kept"):
                download_url(f"{base}/v.mp4", videos / "v.mp4", cfg, "v", lambda m: None)
        assert list(videos.iterdir()) == []


def test_steer_checks_its_arguments_before_the_work(tmp_path):
    """steer.py, typed by a person: an empty --actions, --context -2, an --out in a folder that does
    not exist, a checkpoint path that is not a file, no --video, a --replay file that is not there
    Each exits with status 1 and one ERROR line naming the argument and the fix, before any model is
    loaded or any rollout runs (a rollout takes minutes); no traceback."""
    from types import SimpleNamespace

    from latentwm.evaluation.steer import arguments

    (tmp_path / "d.pt").write_bytes(b"")  # never opened: the arguments fail first
    base = dict(dynamics=str(tmp_path / "d.pt"), tokenizer=str(tmp_path / "d.pt"), actions="1,2", out=str(tmp_path / "s.gif"),
                sweep=None, start=0, context=8, threads=2, temperature=None, guidance=None, video="v", replay=None)  # fmt: skip
    cases = {
        "video": (None, r"--video missing: give them \(or --replay RECORDING.json\)"),
        "replay": (str(tmp_path / "r.json"), r"--replay .*r.json is not a file; give the .json saved beside"),
        "actions": (",", r"--actions ',' gives no action: give one id per frame"),
        "context": (-2, r"--context -2: give 1 or more"),
        "out": (str(tmp_path / "missing/s.gif"), r"--out .*missing/s.gif: its folder .*missing does not exist"),
        "tokenizer": (str(tmp_path / "nope.pt"), r"--tokenizer .*nope.pt is not a file"),
    }
    for name, (value, want) in cases.items():
        with pytest.raises(PipelineError, match=rf"^{want}"):
            arguments(SimpleNamespace(**(base | {name: value})))
    assert arguments(SimpleNamespace(**base)) == [1, 2]
    # the command itself: exit status 1, that one line, nothing else
    cmd = [sys.executable, str(ROOT / "workflow_scripts/steer.py"), "--video", "v", "--context", "-2",
           *(f"--{k}={v}" for k, v in base.items() if k in ("dynamics", "tokenizer", "actions", "out"))]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 1 and p.stderr.strip().splitlines() == ["ERROR: --context -2: give 1 or more"], p.stderr


def test_damaged_media_are_refused_or_reported_never_silently_used(tmp_path):
    """A local mp4 with 20% of its bytes zeroed in the middle (ffmpeg conceals the damage and exits
    0), and one with 8 bytes zeroed (a glitch), under `frames.max_decode_errors: 0.05`
    The first fails its extraction with one ERROR line naming the file, the count of decode errors,
    the first of them and the setting; no frame store is written. The second is kept with a WARNING
    line in its log and `decode_errors` in its store's attrs; the generated videos finish."""
    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "clip.mp4", 0, frames=300, fps=30, size=64, seed=0)
    whole = bytearray((data / "clip.mp4").read_bytes())
    n = len(whole)
    zeroed = bytearray(whole)
    zeroed[int(n * 0.4) : int(n * 0.6)] = bytes(int(n * 0.6) - int(n * 0.4))
    (data / "zeroed.mp4").write_bytes(zeroed)
    write_clip(data / "long.mp4", 0, frames=600, fps=30, size=64, seed=0)
    nicked = bytearray((data / "long.mp4").read_bytes())
    nicked[len(nicked) // 2 : len(nicked) // 2 + 8] = bytes(8)
    (data / "nicked.mp4").write_bytes(nicked)
    sources = [{"id": "gen", "generator": {"clips": 3, "frames": 40, "fps": 10, "size": 32, "seed": 1}},
               {"id": "zeroed", "path": str(data / "zeroed.mp4")}, {"id": "nicked", "path": str(data / "nicked.mp4")}]
    cfg = data_config(sources)
    cfg["frames"]["max_decode_errors"] = 0.05
    work = tmp_path / "work"
    p = snakemake(work, cfg, "--cores", "2", "--keep-going", *targets(["gen_000", "zeroed", "nicked"]), check=False)
    assert p.returncode != 0
    errors = error_lines(work / "logs/extract_frames/zeroed.log")
    want = (r"^ERROR: source zeroed: video .*zeroed.mp4: ffmpeg reported \d+ decode errors for \d+ frames \(\[h264\] .*\), "
            r"over frames.max_decode_errors=0.05 per frame: the file is damaged")
    assert len(errors) == 1 and re.search(want, errors[0]), (errors, p.stdout[-2000:])
    assert "Traceback" not in p.stdout and not (work / "results/frames/zeroed.zarr").exists()
    kept = dict(open_store(work / "results/frames/nicked.zarr").attrs)
    assert kept["decode_errors"] > 0 and kept["decode_error"], kept
    assert "WARNING: video" in (work / "logs/extract_frames/nicked.log").read_text()
    assert open_store(work / "results/frames/gen_000.zarr").attrs["decode_errors"] == 0


def test_a_video_without_timing_is_named_not_silently_resampled(tmp_path):
    """A raw H.264 stream (no container: no frame rate, no duration; ffmpeg guesses one), as a plain
    source and with an actions sidecar
    Extraction goes on with a WARNING line naming the file, that its speed is a guess, and the
    remux that fixes it; with a sidecar the video is refused with one line (its actions cannot be
    placed in time)."""
    from latentwm.data.actions import given_for_file
    from latentwm.data.video import extract

    write_clip(tmp_path / "clip.mp4", 0, frames=60, fps=30, size=32, seed=0)
    raw = tmp_path / "raw.h264"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "clip.mp4"), "-c", "copy", "-bsf:v", "h264_mp4toannexb",
                    "-f", "h264", str(raw)], check=True)  # fmt: skip
    lines = []
    n = extract(raw, tmp_path / "raw.zarr", {"fps": 15, "height": 32, "width": 32, "min_frames": 10}, "raw", lines.append)
    assert n > 0 and any(re.match(r"WARNING: video .*raw.h264 states no frame rate or duration .* its speed .* remux", m)
                         for m in lines), lines  # fmt: skip
    (tmp_path / "raw.actions.txt").write_text("\n".join(["-1"] + ["0"] * 59) + "\n")
    with pytest.raises(PipelineError, match=r"raw.h264 states no frame rate or duration .* its actions cannot be placed in time"):
        given_for_file(raw, tmp_path / "raw.actions.txt")


def test_keep_going_past_a_source_that_cannot_be_listed(tmp_path):
    """One dead URL source (nothing listens) among a generator and a good URL source, the default
    target, `--keep-going`
    The dead source's listing fails with one ERROR line naming it; every other video (the generated
    clips and the good URL's) is still downloaded and extracted; what needs every video (splits,
    training) waits, and the run exits non-zero."""
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 0, frames=40, fps=10, size=32, seed=0)
    with serve_any_path(clip.read_bytes()) as base:
        sources = [{"id": "gen", "generator": {"clips": 2, "frames": 40, "fps": 10, "size": 32, "seed": 1}},
                   {"id": "dead", "url": closed_port_url()}, {"id": "good", "url": f"{base}/good.mp4"}]
        work = tmp_path / "work"
        p = snakemake(work, data_config(sources), "--cores", "2", "--keep-going", check=False)
    assert p.returncode != 0
    errors = error_lines(work / "logs/resolve_source/dead.log")
    assert len(errors) == 1 and errors[0].startswith("ERROR: source dead") and "Traceback" not in p.stdout, errors
    made = sorted(x.name for x in (work / "results/frames").iterdir() if not x.name.startswith("."))
    assert made == ["gen_000.zarr", "gen_001.zarr", "good_good.zarr"], (made, p.stdout[-3000:])
    assert not (work / "results/splits.json").exists()


def error_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("ERROR:")]


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy of a finished run (mtimes and .snakemake metadata kept: nothing is stale)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def test_damaged_store_is_refused_never_read_as_zeros(tiny_run, tmp_path):
    """A damaged zarr store: one chunk file of a test video's latent store deleted, then one chunk
    of its frame store truncated
    Evaluation (and encoding) stop with one ERROR line naming the store, the chunk and the fix
    (delete the store and rerun), in the rule's log and Snakemake's output; no metrics are
    written. Deleting the store and rerunning rebuilds it and gives exactly the metrics of the
    undamaged run."""
    work = copy_run(tiny_run, tmp_path / "run")
    cfg = tiny_config()
    video = json.loads((work / "results/splits.json").read_text())["test"][0]
    shard = "results/latents/test_000"  # the test videos' encode job (fewer than latents.videos_per_job)
    lat, fr = f"{shard}/{video}.zarr", f"results/frames/{video}.zarr"
    metrics = "results/eval/default/metrics.csv"
    (work / lat / "c/1/0/0/0").unlink()  # 48 frames in chunks of 16: the middle one
    p = snakemake(work, cfg, "--cores", "2", "--forcerun", "evaluate_rollouts", metrics, check=False)
    assert p.returncode != 0
    errors = error_lines(work / "logs/evaluate_rollouts/default.log")
    want = rf"^ERROR: store {lat} is damaged: chunk c/1/0/0/0 \(2 of 3\) is missing; delete it and rerun"
    assert len(errors) == 1 and re.search(want, errors[0]), p.stdout[-3000:]
    assert errors[0] in p.stdout and "Traceback" not in p.stdout
    assert not (work / metrics).exists()  # nothing scored on zeros

    chunk = work / fr / "c/0/0/0/0"
    chunk.write_bytes(chunk.read_bytes()[:1000])
    p = snakemake(work, cfg, "--cores", "2", "--forcerun", "encode_latents", shard, check=False)
    assert p.returncode != 0
    errors = error_lines(work / "logs/encode_latents/test_000.log")
    want = rf"^ERROR: store {fr} is damaged: chunk c/0/0/0/0 \(1 of 3\) has 1000 bytes, \d+ expected; delete it and rerun"
    assert len(errors) == 1 and re.search(want, errors[0]), p.stdout[-3000:]
    assert "Traceback" not in p.stdout
    assert not [x.name for x in (work / "results/latents").iterdir() if ".tmp" in x.name]

    shutil.rmtree(work / fr)  # the fix the line names
    shutil.rmtree(work / lat, ignore_errors=True)
    snakemake(work, cfg, "--cores", "2", metrics)
    assert (work / metrics).read_text() == (tiny_run / metrics).read_text()


def test_non_finite_latents_are_refused_where_written_and_where_read(tiny_run, tmp_path):
    """NaN and inf in a latent store: written into a test video's store through zarr's own API (its
    checksums stay valid), and handed to the store writer
    Evaluation stops with one ERROR line naming the store and the frame (`store ... is damaged: frame
    5 is not finite (NaN or inf); delete it and rerun`), no metrics written; the writer refuses the
    block, names the frame and leaves no store behind."""
    work = copy_run(tiny_run, tmp_path / "run")
    video = json.loads((work / "results/splits.json").read_text())["test"][0]
    lat = f"results/latents/test_000/{video}.zarr"
    arr = zarr.open_array(str(work / lat), mode="r+")
    arr[5, 0, 0, 0], arr[9, 1, 2, 3] = np.nan, np.inf
    metrics = "results/eval/default/metrics.csv"
    p = snakemake(work, tiny_config(), "--cores", "2", "--forcerun", "evaluate_rollouts", metrics, check=False)
    assert p.returncode != 0
    errors = error_lines(work / "logs/evaluate_rollouts/default.log")
    want = rf"^ERROR: store {lat} is damaged: frame 5 is not finite \(NaN or inf\); delete it and rerun"
    assert len(errors) == 1 and re.search(want, errors[0]), p.stdout[-3000:]
    assert "Traceback" not in p.stdout and not (work / metrics).exists()

    block = np.zeros((4, 2, 2, 2), np.float32)
    block[2, 1] = np.nan
    out = tmp_path / "lat.zarr"
    with pytest.raises(PipelineError, match=r"lat.zarr: frame 6 is not finite \(NaN or inf\); nothing is written"):
        with StoreWriter(out, (2, 2, 2), "float16", 8, {}) as w:
            w.append(np.zeros((4, 2, 2, 2)))
            w.append(block)
    assert not out.exists() and not list(tmp_path.glob(".lat.zarr*"))


def test_a_prediction_with_nan_is_never_averaged_into_a_summary():
    """A model that predicts NaN on one window (a diverged network), scored by the evaluation's
    metrics
    The scoring stops with one line naming the metric, the step, the condition, the video and the
    window; the metrics that are undefined by design on some windows (still pixels, motion,
    sharpness of a flat frame) stay NaN there, and the summary says over how many windows each
    metric's means are (`windows_scored`)."""
    import pandas as pd

    from latentwm.evaluation import metrics
    from latentwm.evaluation.summary import summarise

    g = torch.Generator().manual_seed(0)
    window = torch.rand(2, 6, 3, 16, 16, generator=g)
    truth, pred = window[:, 4:], window[:, 3:4].expand(-1, 2, -1, -1, -1).clone()
    z = torch.zeros(2, 2, 4, 4, 4)
    keys = [("clip_a", 0), ("clip_b", 3)]
    ok = metrics.score(pred, truth, lambda b: f"model on {keys[b][0]} window {keys[b][1]}", pred_z=z, truth_z=z, window=window)
    pred[1, 1, 0, 5, 5] = float("nan")
    with pytest.raises(PipelineError, match=r"^psnr is nan at step 2 of model on clip_b window 3: the prediction holds"):
        metrics.score(pred, truth, lambda b: f"model on {keys[b][0]} window {keys[b][1]}", pred_z=z, truth_z=z, window=window)
    ok["motion"][0] = float("nan")  # undefined by design on window 0 (its truth would stand still)
    rows = [{"video": v, "window": w, "condition": "model", "sampler": "euler4", "metric": m, "step": t + 1,
             "value": float(ok[m][b, t])} for b, (v, w) in enumerate(keys) for m in ok for t in range(2)]
    rows += [dict(r, condition="copy_last", sampler="") for r in rows]
    entry = next(e for e in summarise(pd.DataFrame(rows), {"euler4": 1.0}).values() if e["condition"] == "model")
    assert entry["windows"] == 2 and entry["windows_scored"]["motion"] == 1 and entry["windows_scored"]["psnr"] == 2


def test_action_ids_outside_the_vocabulary_are_refused(tmp_path):
    """A sidecar with an action id of 70000, one of 10^9, one of -2; an action store handed an id
    that int16 would wrap
    Each sidecar is refused with one line naming the file, the line and the range (-1..1023, the
    largest id, in the README); the store writer refuses the id instead of wrapping it into a valid-
    looking one, and writes nothing."""
    for bad in ("70000", "1000000000", "-2"):
        side = tmp_path / f"v{bad}.actions.txt"
        side.write_text(f"-1\n0\n{bad}\n1\n")
        with pytest.raises(PipelineError, match=rf"actions file {side} line 3: {bad} is not an action id; .*at most 1023"):
            read_sidecar(side)
    with pytest.raises(PipelineError, match=r"frame 2 has action 70000, outside -1..1023"):
        write_actions(tmp_path / "a.zarr", np.array([-1, 0, 70000]), {})
    assert not (tmp_path / "a.zarr").exists()


def test_source_away_for_one_run_costs_that_run_only(tmp_path):
    """A local source file away for one run (an unmounted drive), then back unchanged
    That run fails with one ERROR line naming the source, the file and the fix (mount its drive or
    fix sources[].path), from a job that stands in for the download, so the download never starts
    and the link it made (`results/videos/{id}.mp4`) and its actions record stay. With the file
    back, the dry run is empty: no download, no extraction, no training reruns."""
    data = tmp_path / "data"
    write_clip(data / "mine.mp4", 0, frames=40, fps=10, size=32, seed=3)
    cfg = data_config([{"id": "gen", "generator": {"clips": 2, "frames": 40, "fps": 10, "size": 32, "seed": 1}},
                       {"id": "mine", "path": str(data / "mine.mp4")}])  # fmt: skip
    work = tmp_path / "work"
    data_targets = targets(["gen_000", "gen_001", "mine"])
    snakemake(work, cfg, "--cores", "2", *data_targets)
    planned = job_counts(snakemake(work, cfg, "-n").stdout)  # the rest of the DAG: training on
    link, store = work / "results/videos/mine.mp4", work / "results/frames/mine.zarr"
    made = {f: f.lstat().st_mtime_ns for f in (link, link.with_suffix(".actions.json"), store)}

    (data / "mine.mp4").rename(tmp_path / "mine.mp4")  # the drive is unmounted
    p = snakemake(work, cfg, "--cores", "2", check=False)
    errors = error_lines(work / "logs/source_away/mine.log")
    want = (f"ERROR: source mine: file {data}/mine.mp4 does not exist; fix sources[].path in the config, "
            "or mount its drive and rerun (what was made from it is kept)")  # fmt: skip
    assert p.returncode != 0 and errors == [want], p.stdout[-3000:]
    assert want[len("ERROR: "):] in p.stdout and "Traceback" not in p.stdout
    assert not (work / "logs/download/mine.log").read_text().count("ERROR")  # download never started
    assert {f: f.lstat().st_mtime_ns for f in made} == made and link.is_symlink()

    (tmp_path / "mine.mp4").rename(data / "mine.mp4")  # mounted again, the file unchanged
    assert job_counts(snakemake(work, cfg, "-n").stdout) == planned  # nothing added downstream
    assert not {"source_away", "download", "extract_frames"} & set(planned)


@contextmanager
def mounted(target: Path, *options: str):
    """A real tmpfs mounted at `target` with mount `options` (e.g. "size=..."); skips where not allowed."""
    target.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(target)]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        pytest.skip(f"this machine does not allow `{' '.join(cmd)}`: {p.stdout.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def test_full_disk_fails_cleanly(tiny_run, tmp_path):
    """Disk full while training writes its checkpoint (results/dynamics on a real small tmpfs),
    with temp files of a killed run lying there, then while extraction writes a frame store
    The job stops with one ERROR line saying what, where and what to do (`disk full while
    writing results/dynamics/resume.pt: free space and rerun; training resumes from step 3`), in
    the rule's log and Snakemake's output, no traceback; its temp file is removed and the
    previous checkpoint kept; the dead run's temp file is swept at the job's start. After the space
    is freed the rerun resumes from that step. Extraction likewise (`disk full while writing
    results/frames/ID.zarr: free space and rerun`), its temp store removed, the other stores
    there untouched."""
    work = copy_run(tiny_run, tmp_path / "run")
    cfg = tiny_config()
    cfg["dynamics"]["train"].update(steps=9, checkpoint_every=3)  # resume.pt at steps 3 and 6
    dyn = work / "results/dynamics"
    shutil.rmtree(dyn)
    # a tmpfs that holds one resume.pt but not a second one beside it (written, then renamed)
    one = (tiny_run / "results/dynamics/dynamics.pt").stat().st_size
    with mounted(dyn, f"size={int(one * 1.6) // 4096 * 4096 + 4096}") as full:
        (full / ".resume.pt.tmp999999").write_bytes(b"x")  # a killed run's
        p = snakemake(work, cfg, "--cores", "2", "results/dynamics/dynamics.pt", check=False)
        assert p.returncode != 0
        errors = error_lines(work / "logs/train_dynamics.log")
        want = "ERROR: disk full while writing results/dynamics/resume.pt: free space and rerun; training resumes from step 3"
        assert errors[-1] == want, p.stdout[-3000:]
        assert want[len("ERROR: "):] in p.stdout and "Traceback" not in p.stdout
        assert checkpoint.load(full / "resume.pt")["step"] == 3  # the previous checkpoint, kept
        # the job swept the killed run's temp file at its start and removed its own failed one
        assert not [x.name for x in full.iterdir() if ".tmp" in x.name]
        assert "removed 1 temp file(s)" in (work / "logs/train_dynamics.log").read_text()
        subprocess.run(["mount", "-o", "remount,size=64m", str(full)], check=True)  # space freed
        snakemake(work, cfg, "--cores", "2", "results/dynamics/dynamics.pt")
        log = (work / "logs/train_dynamics.log").read_text()
        assert "resumed from results/dynamics/resume.pt at step 3/9" in log, log[-2000:]
        assert checkpoint.load(full / "dynamics.pt")["step"] == 9
        assert sorted(x.name for x in full.iterdir()) == ["dynamics.pt", "health.json", "train_curve.csv"]

    # extraction: results/frames on a disk that holds one other video's store and little more
    frames, other = work / "results/frames", tiny_run / "results/frames/tiny_001.zarr"
    size = sum(f.stat().st_size for f in other.rglob("*") if f.is_file())
    with mounted(frames, f"size={size // 4096 * 4096 + 16 * 4096}") as full:
        shutil.copytree(other, full / other.name)
        p = snakemake(work, cfg, "--cores", "1", "results/frames/tiny_000.zarr", check=False)
        errors = error_lines(work / "logs/extract_frames/tiny_000.log")
        want = "ERROR: source tiny: disk full while writing results/frames/tiny_000.zarr: free space and rerun"
        assert p.returncode != 0 and errors == [want], p.stdout[-3000:]
        assert want[len("ERROR: "):] in p.stdout and "Traceback" not in p.stdout, p.stdout[-3000:]
        assert [x.name for x in full.iterdir()] == [other.name], list(full.iterdir())  # its temp store removed, the other kept
        assert open_store(full / other.name).shape == (48, 3, 32, 32)


def test_folder_without_write_permission_is_named_for_a_user_who_is_not_root():
    """A folder of results/ without write permission (chmod a-w), for a user who is not root
    (root writes through chmod: as root the check runs in a child that drops to nobody).
    The onstart check names it in one line with the fix (`permission denied at
    .../results/dynamics: make the folder writable for this user and rerun; no job was started`);
    a writable folder beside it is not named."""
    import tempfile

    from latentwm.core.files import unwritable

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # under /tmp: pytest's tmp_path is not traversable by nobody
    try:
        (base / "results/dynamics").mkdir(parents=True)
        (base / "results/frames").mkdir()
        base.chmod(0o755)
        for d in (base / "results", base / "results/frames"):
            d.chmod(0o777)
        (base / "results/dynamics").chmod(0o555)
        paths = [base / "results/dynamics/dynamics.pt", base / "results/frames/a.zarr", base / "results/new/b.pt"]
        if os.geteuid() != 0:
            lines = unwritable(paths)
        else:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: nobody, then the check, its lines through the pipe
                try:
                    os.setgid(65534), os.setuid(65534)
                    os.write(write, json.dumps(unwritable(paths)).encode())
                finally:
                    os._exit(0)
            os.close(write)
            with os.fdopen(read) as f:
                out = f.read()
            os.waitpid(pid, 0)
            lines = json.loads(out)
        assert lines == [f"permission denied at {base}/results/dynamics: make the folder writable for this user and rerun; "
                         "no job was started"], lines
    finally:
        (base / "results/dynamics").chmod(0o755)
        shutil.rmtree(base)


@contextmanager
def read_only(folder: Path):
    """`folder` made read-only: a real read-only bind mount onto itself, or where mounts are not
    allowed and the user is not root, chmod a-w (root writes through that); skips otherwise."""
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if bind.returncode == 0:
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
            yield "read-only file system"
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    elif os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(mode & ~0o222)
        try:
            yield "permission denied"
        finally:
            folder.chmod(mode)
    else:
        pytest.skip(f"no read-only folder here: mount --bind is refused ({bind.stderr.strip()}) and root ignores chmod")


def test_read_only_results_fail_in_one_line(tiny_run, tmp_path):
    """A read-only results/ (a real read-only bind mount of results/dynamics) before a run, then
    during training
    Before, with the job's outputs not there yet: Snakemake stops before any job with one ERROR
    line naming the folder and the fix (`read-only file system at results/dynamics: make it
    writable (remount, ...) and rerun; no job was started`), not the traceback Snakemake gave when
    it removed the job's old outputs; with them there, Snakemake's own "Write-protected output
    files" message lists them, no traceback; a dry run still works. During training: its next
    write there fails with one ERROR line (`read-only file system while writing
    results/dynamics/train_curve.csv: ...; training resumes from step 20`), its temp file removed
    and the previous checkpoint kept; once writable again, the rerun resumes from that step."""
    work = copy_run(tiny_run, tmp_path / "run")
    cfg = tiny_config()
    dyn = work / "results/dynamics"
    model = "results/dynamics/dynamics.pt"
    with read_only(dyn):
        p = snakemake(work, cfg, "--cores", "2", "--forcerun", "train_dynamics", model, check=False)
        assert p.returncode != 0 and "Write-protected output files" in p.stdout and "Traceback" not in p.stdout
    for f in dyn.iterdir():
        f.unlink()  # as before its first training
    with read_only(dyn) as what:
        p = snakemake(work, cfg, "--cores", "2", model, check=False)
        fix = "make it writable (remount, or run where results/ can be written)" if what.startswith("read-only") \
            else "make the folder writable for this user"  # fmt: skip
        lines = [line for line in p.stdout.splitlines() if line.startswith("ERROR:")]
        assert lines == [f"ERROR: {what} at results/dynamics: {fix} and rerun; no job was started"], p.stdout[-3000:]
        assert p.returncode != 0 and "Traceback" not in p.stdout
        assert not list(dyn.iterdir()) and not (work / "logs/train_dynamics.log").read_text().count("ERROR")
        assert "train_dynamics" in snakemake(work, cfg, "-n", model).stdout

    cfg["dynamics"]["train"].update(steps=60, checkpoint_every=20, log_every=20)
    resume = dyn / "resume.pt"
    run = start(work, cfg, "--cores", "2", model)
    deadline = time.time() + 120
    while not resume.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    with read_only(dyn) as what:
        assert run.wait(timeout=300) != 0
    errors = error_lines(work / "logs/train_dynamics.log")
    assert len(errors) == 1 and re.match(rf"ERROR: {what} while writing results/dynamics/\S+: .* and rerun; "
                                         r"training resumes from step 20$", errors[0]), errors  # fmt: skip
    assert errors[0][len("ERROR: "):] in (work / "snakemake.out").read_text()
    assert checkpoint.load(resume)["step"] == 20 and not [x.name for x in dyn.iterdir() if ".tmp" in x.name]
    snakemake(work, cfg, "--cores", "2", model)
    assert "resumed from results/dynamics/resume.pt at step 20/60" in (work / "logs/train_dynamics.log").read_text()
    assert checkpoint.load(work / model)["step"] == 60


def test_yaml_syntax_error_names_its_line(tmp_path):
    """A YAML syntax error in config.yaml (an unclosed `{`)
    Snakemake stops before any job with one `config error:` line giving the file, the line and
    column, and where the unclosed mapping was opened."""
    text = yaml.safe_dump(tiny_config(), sort_keys=False).replace("sources:\n", "sources: {\n", 1)
    (tmp_path / "config.yaml").write_text(text)
    p = snakemake(tmp_path, None, "--cores", "2", check=False)
    lines = [line for line in p.stdout.splitlines() if line.startswith("config error:")]
    assert p.returncode != 0 and len(lines) == 1, p.stdout[-2000:]
    assert re.match(r"config error: config\.yaml line \d+, column \d+: .*opened at line \d+\); fix the YAML syntax there", lines[0]), lines
    assert not (tmp_path / "results").exists()


def test_a_source_slower_than_frames_fps_keeps_its_own_rate(tmp_path):
    """frames.fps above a source's own frame rate (20 fps asked of a 10 fps video)
    Extraction keeps the video at its own 10 fps, not resampled up (half its frames would be
    repeats, which make copy-last score near the ceiling and teach the model to copy), says so in
    one log line, and writes the rate it used in the store's attrs; the frames are the video's own,
    each once."""
    cfg = data_config([{"id": "gen", "generator": {"clips": 3, "frames": 40, "fps": 10, "size": 32, "seed": 1}}])
    cfg["frames"]["fps"] = 20
    snakemake(tmp_path, cfg, "--cores", "1", "results/frames/gen_000.zarr")
    log = (tmp_path / "logs/extract_frames/gen_000.log").read_text()
    assert "gen_000: 10 fps, under frames.fps 20: kept at its own rate (no frame repeated)" in log, log[-2000:]
    store = open_store(tmp_path / "results/frames/gen_000.zarr")
    assert store.shape[0] == 40 and store.attrs["fps"] == 10
    frames = np.asarray(store[:]).astype(np.int16)
    assert np.abs(np.diff(frames, axis=0)).reshape(39, -1).max(1).min() > 0  # no frame repeats the one before


CONFIG_ERRORS = {
    "unknown key": (lambda c: c["tokenizer"]["train"].update(stesp=5), r"config key tokenizer\.train\.stesp is unknown; expected one of: .*steps"),
    "wrong type": (lambda c: c["tokenizer"]["train"].update(steps="many"), r"config key tokenizer\.train\.steps is 'many'; expected integer"),
    "negative size": (lambda c: c["frames"].update(height=-32), r"config key frames\.height is -32; expected a value >= 8"),
    "absurd size": (lambda c: c["frames"].update(height=100000), r"config key frames\.height is 100000; expected a value <= 4096"),
    "latent channels": (lambda c: c["dynamics"]["model"].update(latent_channels=16), r"dynamics\.model\.latent_channels is 16 but the latents have 4"),
    "window too long": (lambda c: c["evaluations"]["default"].update(context=40), r"evaluations\.default: context 40 \+ horizon 4 = 44 frames, longer than frames\.min_frames=24"),
    "training window": (lambda c: c["dynamics"]["data"].update(window=30), r"config key dynamics\.data\.window is 30, longer than frames\.min_frames=24"),
    "empty test split": (lambda c: c["splits"].update(test=0), r"config key splits\.test is 0; expected > 0"),
    "too few videos": (lambda c: c["sources"][0]["generator"].update(clips=2), r"splits: 2 video\(s\) cannot fill train, val and test"),
    "unsafe id": (lambda c: c["sources"][0].update(id="x;rm -rf ~"), r"config key sources\[0\]\.id is 'x;rm -rf ~'; expected it to match"),
    "same id twice": (lambda c: c["sources"].extend([{"id": "clip", "path": str(ROOT / "README.md")}, {"id": "clip", "path": str(ROOT / "Snakefile")}]),
                      r"config key sources\[2\]\.id: 'clip' \(path\) is also the id of sources\[1\]; expected each id once"),
    "id of two kinds": (lambda c: c["sources"].append({"id": "tiny", "path": str(ROOT / "README.md")}),
                        r"config key sources\[1\]\.id: 'tiny' \(path\) is also the id of the generator source sources\[0\]"),
    "one file, two ids": (lambda c: c["sources"].extend([{"id": "a", "path": str(ROOT / "README.md")}, {"id": "b", "path": str(ROOT / "tests" / ".." / "README.md")}]),
                          r"config key sources\[2\]\.path: .*README\.md \(id 'b'\) is the same file as sources\[1\] \(id 'a'\), both .*; expected each file once"),
    "symlink to a listed file": (lambda c: c["sources"].extend([{"id": "a", "path": str(ROOT / "README.md")}, {"id": "b", "path": "link.mp4"}]),
                                 r"config key sources\[2\]\.path: link\.mp4 \(id 'b'\) is the same file as sources\[1\] \(id 'a'\), both .*README\.md; expected each file once"),
    "directory as path": (lambda c: c["sources"].append({"id": "folder", "path": str(ROOT / "tests")}),
                          r"config key sources\[1\]\.path: .*tests is a directory; expected a video file"),
    "shortcut steps": (lambda c: c["evaluations"]["default"]["samplers"].append({"name": "sc3", "kind": "shortcut", "steps": 3}),
                       r"config key evaluations\.default\.samplers\[2\] \(sc3\): shortcut sampling with 3 steps needs a power of two <= k_max 8"),
    "euler steps": (lambda c: c["evaluations"]["default"]["samplers"].append({"name": "e64", "kind": "euler", "steps": 64}),
                    r"config key evaluations\.default\.samplers\[2\] \(e64\): euler sampling with 64 steps .* k_max 8; use at most 8 steps"),
    "shortcut untrained": (lambda c: c["dynamics"]["objective"].update(shortcut=False),
                           r"config key evaluations\.default\.samplers\[0\] \(shortcut4\): shortcut sampling with 4 steps takes steps of 1/4, which only dynamics\.objective\.shortcut: true trains"),
    "frame size vs patch": (lambda c: (c["frames"].update(height=36), c["dynamics"]["model"].update(arch="transformer")),
                            r"config key frames\.height/width is 36x32: .* 9x8 latent grid that dynamics\.model\.patch 4 cannot tile; expected .* multiples of 16"),
    "conv patch vs grid": (lambda c: c["dynamics"]["model"].update(conv_patch=3),
                           r"dynamics\.model\.conv_patch 3 does not divide the latent grid \d+x\d+; pick a divisor"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_errors_are_rejected_before_any_job(tmp_path, case):
    """Config errors: unknown key, wrong type, negative size, latent channels that do not match
    the tokenizer, a context window or training window longer than any kept video, an empty test
    split, too few videos, a frame height past the stated maximum (4096), an unsafe source id, the same id twice, one id on two kinds of source,
    one file under two ids (realpath: a symlink or another spelling), a directory as `path`, a
    sampler whose steps do not fit k_max (shortcut: a power of two up to k_max; euler: at most
    k_max) or its training (shortcut steps without shortcut forcing), a frame size the transformer's
    patch grid cannot tile, a conv patch that does not divide the latent grid
    Snakemake exits before any job runs, with one `config error:` line naming the key and the
    expected value; nothing is written under results/."""
    change, pattern = CONFIG_ERRORS[case]
    cfg = copy.deepcopy(tiny_config())
    change(cfg)
    (tmp_path / "link.mp4").symlink_to(ROOT / "README.md")  # listed by its case, relative to the workdir
    p = snakemake(tmp_path, cfg, "--cores", "2", check=False)
    assert p.returncode != 0
    lines = [line for line in p.stdout.splitlines() if line.startswith("config error:")]
    assert len(lines) == 1 and re.search(pattern, lines[0]), p.stdout[-3000:]
    assert "Traceback" not in p.stdout and "rule " not in p.stdout
    assert not (tmp_path / "results").exists()


def test_nan_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    """NaN during training (an absurd learning rate)
    The job stops at once with one line naming the step, the loss or gradient value and the
    likely causes; the last good resume checkpoint stays on disk and health.json
    records the stop; no model output is written."""
    cfg = tiny_config()
    cfg["tokenizer"]["train"].update(steps=2000, lr=1e30, warmup=1, checkpoint_every=1, log_every=1)
    p = snakemake(tmp_path, cfg, "--cores", "2", "results/tokenizer/tokenizer.pt", check=False)
    assert p.returncode != 0
    log = (tmp_path / "logs/train_tokenizer.log").read_text()
    errors = [line for line in log.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in log, log[-2000:]
    m = re.search(r"tokenizer training stopped at step (\d+): (loss|gradient norm) is (nan|inf)", errors[0])
    assert m and "learning rate too high" in errors[0], errors[0]
    stopped = int(m.group(1))
    assert stopped >= 1  # a first good step happened, so there is a checkpoint to keep
    resume = checkpoint.load(tmp_path / "results/tokenizer/resume.pt")
    assert resume["step"] == stopped and all(torch.isfinite(v).all() for v in resume["model"].values())
    assert not (tmp_path / "results/tokenizer/tokenizer.pt").exists()


def test_untrusted_input_never_reaches_a_shell_or_escapes_results(tmp_path):
    """Untrusted input: a URL with shell metacharacters, a site whose video title is a path
    traversal, a pickled checkpoint that would run code
    The URL only ever goes to yt-dlp's API (no shell), so nothing runs; downloads are written
    under a fixed name (`results/videos/{id}.mp4`) whatever the site calls them; checkpoints are
    loaded with weights_only and a malicious one is refused with one line."""
    clip = tmp_path / "clip.mp4"
    write_clip(clip, 0, frames=30, fps=10, size=32, seed=0)
    canary = tmp_path / "pwned"
    with serve_any_path(clip.read_bytes()) as base:  # every path is the clip: the names come through
        sources = [
            {"id": "gen", "generator": {"clips": 3, "frames": 40, "fps": 10, "size": 32, "seed": 1}},
            {"id": "evil", "url": f"{base}/clip.mp4;touch${{IFS}}{canary};`touch {canary}`$(touch {canary})"},
            {"id": "traversal", "url": f"{base}/..%2F..%2F..%2Fescaped.mp4"},
        ]
        work = tmp_path / "work"
        snakemake(work, data_config(sources), "--cores", "2", "results/splits.json")
        videos = json.loads((work / "results/splits.json").read_text())
        ids = sorted(v for split in ("train", "val", "test") for v in videos[split])
        snakemake(work, data_config(sources), "--cores", "2", *(f"results/videos/{v}.mp4" for v in ids))
    assert not canary.exists()
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_]*", v) for v in ids), ids  # safe names only
    assert any(v.startswith("traversal_") for v in ids) and any(v.startswith("evil_") for v in ids), ids
    written = sorted(str(x.relative_to(tmp_path)) for x in tmp_path.rglob("*") if x.is_file() and x.suffix == ".mp4")
    assert written == sorted(["clip.mp4", *(f"work/results/videos/{v}.mp4" for v in ids)]), written

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {canary}",))

    bad = tmp_path / "bad.pt"
    torch.save({"model": Boom()}, bad)
    with pytest.raises(PipelineError, match="bad.pt holds pickled objects that could run code when loaded, so it is not") as e:
        checkpoint.load(bad)
    assert "weights_only=False" not in str(e.value)  # torch's hint, the one unsafe thing to do
    assert not canary.exists()


def test_same_config_and_seed_give_the_same_metrics(tiny_run, tmp_path):
    """Determinism: the tiny pipeline run twice from scratch with the same config and seed
    Tokenizer metrics, the training curves' losses and every evaluation metric are bitwise
    equal on CPU (timings and memory excepted)."""
    # what is compared, not the plots (their jobs would add seconds and nothing to compare)
    snakemake(tmp_path, tiny_config(), "--cores", "2", "results/eval/default/metrics.csv")
    a, b = json.loads((tiny_run / "results/tokenizer/metrics.json").read_text()), json.loads(
        (tmp_path / "results/tokenizer/metrics.json").read_text()
    )
    for key in ("psnr", "ssim", "collapse_ratio", "steps"):
        assert a[key] == b[key], key
    import pandas as pd

    timing = {"batches_per_s", "memory_mb"}
    for curve in ("tokenizer/train_curve.csv", "dynamics/train_curve.csv"):
        x, y = pd.read_csv(tiny_run / "results" / curve), pd.read_csv(tmp_path / "results" / curve)
        cols = [c for c in x.columns if c not in timing]
        pd.testing.assert_frame_equal(x[cols], y[cols], check_exact=True)
    ma, mb = pd.read_csv(tiny_run / "results/eval/default/metrics.csv"), pd.read_csv(tmp_path / "results/eval/default/metrics.csv")
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)


def test_fault_table_is_current():
    """(not a fault: keeps docs/FAULTS.md in step with the docstrings of this file)"""
    from fault_table import table

    assert (ROOT / "docs" / "FAULTS.md").read_text() == table(), "regenerate: python tests/fault_table.py > docs/FAULTS.md"
