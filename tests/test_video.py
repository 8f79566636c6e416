"""Video probing and frame extraction on real encoded files, good and bad."""

import subprocess

import numpy as np
import pytest
import zarr

from latentwm.core.errors import PipelineError
from latentwm.data.store import open_store
from latentwm.data.synthetic import write_clip
from latentwm.data.video import extract, ffmpeg_exe, iter_frames, probe


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A real H.264 clip: 40 frames, 48x32 (wide, so crop and pad differ), 10 fps."""
    d = tmp_path_factory.mktemp("video")
    square = d / "square.mp4"
    write_clip(square, 0, frames=40, fps=10, size=32, seed=0)
    wide = d / "wide.mp4"
    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(square), "-vf", "scale=48:32", "-c:v", "libx264", str(wide)]
    subprocess.run(cmd, check=True)
    return wide


def test_probe(clip):
    assert probe(clip) == {
        "width": 48,
        "height": 32,
        "fps": 10.0,
        "duration": pytest.approx(4.0, abs=0.2),
        "has_video": True,
    }


@pytest.mark.parametrize("resize", ["crop", "pad", "stretch"])
def test_iter_frames_shapes(clip, resize):
    blocks = list(iter_frames(clip, fps=10, height=16, width=16, resize=resize, block=16))
    assert [b.shape for b in blocks] == [(16, 3, 16, 16), (16, 3, 16, 16), (8, 3, 16, 16)]
    assert all(b.dtype == np.uint8 for b in blocks)
    frames = np.concatenate(blocks)
    if resize == "pad":  # 48x32 fits 16x16 as 16x~11: black bars top and bottom
        assert frames[:, :, :2].max() == 0 and frames[:, :, -2:].max() == 0
        assert frames[:, :, 6:10].mean() > 20
    else:
        assert frames[:, :, :2].mean() > 20 and frames[:, :, -2:].mean() > 20


def test_fps_resampling_changes_frame_count(clip):
    count = lambda fps: sum(len(b) for b in iter_frames(clip, fps, 8, 8))  # noqa: E731
    assert count(10) == 40
    assert count(5) == 20
    assert count(20) == 80


def test_stopping_early_leaves_no_process(clip):
    frames = iter_frames(clip, 10, 8, 8, block=4)
    assert next(frames).shape == (4, 3, 8, 8)
    frames.close()  # kills ffmpeg; must not hang or raise


def bad_files(d):
    """name -> path of files that are not usable videos."""
    good = d / "good.mp4"
    write_clip(good, 0, frames=20, fps=10, size=16, seed=0)
    data = good.read_bytes()
    (d / "zero.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    audio = d / "audio.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(audio)], check=True
    )
    return {p.stem: p for p in [d / "missing.mp4", d / "zero.mp4", d / "random.mp4", d / "truncated.mp4", audio]}


def test_bad_inputs_fail_with_one_line_naming_the_file(tmp_path):
    reasons = {"missing": "does not exist", "zero": "zero-byte", "random": "cannot be opened",
               "truncated": "cannot be opened", "audio": "no video stream"}  # fmt: skip
    for name, path in bad_files(tmp_path).items():
        with pytest.raises(PipelineError) as e:
            probe(path)
        msg = str(e.value)
        assert str(path) in msg and reasons[name] in msg and "\n" not in msg, msg
        with pytest.raises(PipelineError, match="ffmpeg failed"):  # even without probing first
            list(iter_frames(path, 10, 8, 8))


def test_extract_writes_a_store_with_provenance(clip, tmp_path):
    cfg = {"fps": 5, "height": 16, "width": 24, "resize": "pad", "min_frames": 10, "chunk_frames": 8}
    out = tmp_path / "v.zarr"
    assert extract(clip, out, cfg, source="mine", log=lambda m: None) == 20
    arr = open_store(out, expect={"source": "mine", "fps": 5, "height": 16, "width": 24, "resize": "pad"})
    assert arr.shape == (20, 3, 16, 24) and arr.dtype == np.uint8 and arr.chunks[0] == 8
    attrs = dict(arr.attrs)
    assert attrs["frames"] == 20 and attrs["settings"].items() >= cfg.items() and attrs["probe"]["width"] == 48
    assert attrs["video_path"] == str(clip)
    # the store equals a direct read
    direct = np.concatenate(list(iter_frames(clip, 5, 16, 24, "pad")))
    assert np.array_equal(zarr.open_array(str(out), mode="r")[:], direct)


def test_extract_too_short_leaves_no_store(clip, tmp_path):
    cfg = {"fps": 10, "height": 8, "width": 8, "min_frames": 41}
    with pytest.raises(
        PipelineError, match=r"^source mine: .* has 40 frames at 10 fps, fewer than frames.min_frames=41"
    ):
        extract(clip, tmp_path / "v.zarr", cfg, source="mine", log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_unknown_frames_key_is_an_error(clip, tmp_path):
    with pytest.raises(PipelineError, match="frames.heigth is unknown"):
        extract(clip, tmp_path / "v.zarr", {"heigth": 8}, source="mine", log=lambda m: None)


def test_extract_a_part_is_that_stretch_of_the_whole(clip, tmp_path):
    """part [k, parts]: the k-th equal stretch in time (its frames are the whole extraction's frames
    there), recorded in the store's attrs; the parts together cover the video."""
    cfg = {"fps": 10, "height": 16, "width": 24, "min_frames": 1, "chunk_frames": 8}
    whole = np.concatenate(list(iter_frames(clip, 10, 16, 24, "crop")))  # (40, 3, 16, 24)
    counts = []
    for k in range(4):
        out = tmp_path / f"p{k}.zarr"
        counts.append(extract(clip, out, cfg, source="mine", log=lambda m: None, part=[k, 4]))
        arr = open_store(out)
        assert arr.attrs["part"] == [k, 4] and arr.attrs["span_s"] == [k, 1.0]
        # H.264 is lossy and decoding restarts at the cut: equal within a few grey levels
        got = np.asarray(arr[:])
        diff = np.abs(got.astype(int) - whole[10 * k : 10 * k + len(got)].astype(int)).mean()
        assert diff < 2, (k, diff)
    assert counts == [10, 10, 10, 10]


def test_a_part_too_short_names_the_file_and_the_parts_that_fit(clip, tmp_path):
    link = tmp_path / "rec_part00.mp4"
    link.symlink_to(clip)  # as download links a local file
    cfg = {"fps": 10, "height": 8, "width": 8, "min_frames": 10}
    with pytest.raises(PipelineError, match=rf"^source mine: part 0 of 8 of {clip} has 5 frames at 10 fps, fewer than "
                                            r"frames.min_frames=10; set its source's parts to at most 4 or lower"):
        extract(link, tmp_path / "v.zarr", cfg, source="mine", log=lambda m: None, part=[0, 8])
    assert not (tmp_path / "v.zarr").exists()
