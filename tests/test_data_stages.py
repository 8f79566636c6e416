"""The data stages (sources -> download -> extract_frames -> splits) as real Snakemake runs.

Explicit targets (frame stores + splits.json), not rule all: later stages are not under test here.
"""

import json
import re

import numpy as np
import pytest
import zarr
from conftest import job_counts, tiny_config
from test_download import serve_dir

from latentwm.data.store import open_store
from latentwm.data.synthetic import render_clip, write_clip

pytestmark = pytest.mark.slow

GEN = {"clips": 2, "frames": 40, "fps": 10, "size": 32, "seed": 1}
FRAMES = {"fps": 10, "height": 32, "width": 32, "resize": "crop", "min_frames": 24, "chunk_frames": 16}


def config(sources):
    """The shared tiny config (later stages need their sections to parse) with our data sections."""
    return tiny_config() | {
        "sources": sources,
        "download": {"max_height": 360, "retries": 0, "socket_timeout": 5, "playlist_limit": 0},
        "frames": dict(FRAMES),
        "splits": {"val": 0.2, "test": 0.2, "seed": 0},
    }


def targets(videos):
    return [f"results/frames/{v}.zarr" for v in videos] + ["results/splits.json"]


def test_data_stages_end_to_end(run_snakemake, tmp_path):
    site = tmp_path / "site"
    write_clip(site / "clip.mp4", 5, frames=30, fps=15, size=48, seed=2)  # 2 s at 15 fps
    work = tmp_path / "work"
    videos = ["gen_000", "gen_001", "web_clip"]
    with serve_dir(site) as base:
        cfg = config([{"id": "gen", "generator": GEN}, {"id": "web", "url": f"{base}/clip.mp4"}])
        cfg["frames"]["min_frames"] = 20
        dry = run_snakemake(work, cfg, "-n", *targets(videos))
        counts = job_counts(dry.stdout)
        # the URL video's download waits for its source's resolution (whether the video is cut in parts,
        # all read from one download, depends on how many videos the source lists)
        assert counts["resolve_source"] == 1 and counts["download"] == 2 and counts["extract_frames"] == 3
        run_snakemake(work, cfg, "--cores", "2", *targets(videos))
        again = run_snakemake(work, cfg, "--cores", "2", *targets(videos))
        assert "Nothing to be done" in again.stdout

    for video in videos:
        arr = open_store(work / f"results/frames/{video}.zarr", expect={"fps": 10, "height": 32, "width": 32})
        assert arr.dtype == np.uint8 and arr.shape[1:] == (3, 32, 32) and arr.chunks[0] == 16
        assert arr.attrs["source"] == video.split("_")[0] and arr.attrs["frames"] == arr.shape[0]
        assert arr.attrs["settings"].items() >= (FRAMES | {"min_frames": 20}).items()
    assert zarr.open_array(str(work / "results/frames/gen_000.zarr"), mode="r").shape[0] == 40
    assert zarr.open_array(str(work / "results/frames/web_clip.zarr"), mode="r").shape[0] == 20  # 30 at 15 fps
    # what was rendered comes back (after H.264) in the store's (T, 3, H, W) layout, channels in order
    stored = zarr.open_array(str(work / "results/frames/gen_001.zarr"), mode="r")[:].astype(float)
    rendered = render_clip(1, 40, 32, seed=1).transpose(0, 3, 1, 2).astype(float)
    err, swapped = np.abs(stored - rendered).mean(), np.abs(stored - rendered[:, ::-1]).mean()
    assert err < 10 and swapped > 2 * err  # 4:2:0 chroma blurs 32x32 sprites: a few levels of error

    split = json.loads((work / "results/splits.json").read_text())
    assert sorted(split["train"] + split["val"] + split["test"]) == videos
    assert len(split["val"]) == len(split["test"]) == 1 and split["seed"] == 0


def test_one_recording_is_cut_into_parts_that_fill_the_splits(run_snakemake, tmp_path):
    """One local file and nothing else: the DAG cuts it into 8 videos in time, and the splits get
    train, val and test from it; each part's frames are its stretch of the recording."""
    rec = tmp_path / "rec.mp4"
    write_clip(rec, 3, frames=80, fps=10, size=32, seed=4)  # 8 s: 8 parts of 1 s, 10 frames each
    work, videos = tmp_path / "work", [f"rec_part{k:02d}" for k in range(8)]
    cfg = config([{"id": "rec", "path": str(rec)}])
    cfg["frames"]["min_frames"] = 8
    run_snakemake(work, cfg, "--cores", "2", *targets(videos))
    split = json.loads((work / "results/splits.json").read_text())
    assert sorted(split["train"] + split["val"] + split["test"]) == videos
    assert min(len(split[k]) for k in ("train", "val", "test")) >= 1
    assert [p.name for p in (work / "results/videos").glob("*.mp4")] == ["rec.mp4"]  # one link for 8 parts
    whole = render_clip(3, 80, 32, seed=4).transpose(0, 3, 1, 2).astype(float)
    for k, video in enumerate(videos):
        arr = open_store(work / f"results/frames/{video}.zarr")
        assert arr.shape[0] == 10 and arr.attrs["part"] == [k, 8]
        got = np.asarray(arr[:]).astype(float)
        assert np.abs(got - whole[10 * k : 10 * k + 10]).mean() < 10  # its own stretch of the recording


def test_one_url_video_is_downloaded_once_and_cut_into_parts(run_snakemake, tmp_path):
    """One YouTube-like video and nothing else: once resolved it is too few videos for the
    splits, so it is cut into 8 parts in time, all extracted from its one download."""
    site = tmp_path / "site"
    write_clip(site / "clip.mp4", 6, frames=80, fps=10, size=32, seed=5)  # 8 s: 8 parts of 10 frames
    work, videos = tmp_path / "work", [f"web_clip_part{k:02d}" for k in range(8)]
    with serve_dir(site) as base:
        cfg = config([{"id": "web", "url": f"{base}/clip.mp4"}])
        cfg["frames"]["min_frames"] = 8
        run_snakemake(work, cfg, "--cores", "2", *targets(videos))
    split = json.loads((work / "results/splits.json").read_text())
    assert sorted(split["train"] + split["val"] + split["test"]) == videos
    assert [p.name for p in (work / "results/videos").glob("*.mp4")] == ["web_clip.mp4"]
    assert len(list((work / "logs/download").iterdir())) == 1 and len(list((work / "logs/extract_frames").iterdir())) == 8
    whole = render_clip(6, 80, 32, seed=5).transpose(0, 3, 1, 2).astype(float)
    for k, video in enumerate(videos):
        arr = open_store(work / f"results/frames/{video}.zarr")
        assert arr.shape[0] == 10 and arr.attrs["part"] == [k, 8] and arr.attrs["source"] == "web"
        assert np.abs(np.asarray(arr[:]).astype(float) - whole[10 * k : 10 * k + 10]).mean() < 10


def test_bad_inputs_fail_alone_with_one_line(run_snakemake, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "empty.mp4").write_bytes(b"")
    write_clip(data / "short.mp4", 0, frames=10, fps=10, size=32, seed=0)
    sources = [
        {"id": "gen", "generator": GEN},
        {"id": "missing", "path": str(data / "missing.mp4")},
        {"id": "empty", "path": str(data / "empty.mp4")},
        {"id": "short", "path": str(data / "short.mp4")},
    ]
    work = tmp_path / "work"
    videos = ["gen_000", "gen_001", "missing", "empty", "short"]
    p = run_snakemake(work, config(sources), "--cores", "2", "--keep-going", *targets(videos), check=False)
    assert p.returncode != 0

    expected = {
        "source_away/missing": rf"source missing: file {data}/missing.mp4 does not exist; fix sources\[\].path",
        "download/empty": rf"source empty: file {data}/empty.mp4 is empty \(zero bytes\)",
        "extract_frames/short": r"source short: video results/videos/short.mp4 has 10 frames at 10 fps, "
        r"fewer than frames.min_frames=24; use a longer video or lower frames.min_frames",
    }
    for log, pattern in expected.items():
        text = (work / f"logs/{log}.log").read_text()
        errors = [line for line in text.splitlines() if line.startswith("ERROR:")]
        assert len(errors) == 1 and re.search(pattern, errors[0]), text
        assert "Traceback" not in text
        assert re.search(pattern, p.stdout), f"the error line of {log} is not shown by snakemake"
    for video in ("gen_000", "gen_001"):
        assert open_store(work / f"results/frames/{video}.zarr").shape == (40, 3, 32, 32)
    assert sorted(x.name for x in (work / "results/frames").iterdir()) == ["gen_000.zarr", "gen_001.zarr"]
    assert (work / "results/splits.json").exists()
    assert not (work / "results/videos/missing.mp4").exists() and not (work / "results/videos/empty.mp4").exists()
