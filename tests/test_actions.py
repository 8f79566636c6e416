"""Per-frame actions: the generator's player, the sidecar format and its errors, and actions that
follow their frames through extraction's fps resampling (real videos, real stores)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latentwm.core.errors import PipelineError
from latentwm.data.actions import NO_ACTION, nmi, read_sidecar, read_store, source_index, write_given
from latentwm.data.download import fetch
from latentwm.data.sources import VideoSpec, sidecar_path
from latentwm.data.synthetic import ACTIONS, MOVES, Clip, clip_actions, render_clip, write_clip
from latentwm.data.video import extract

FRAMES = {"fps": 15, "height": 32, "width": 32, "min_frames": 1, "chunk_frames": 16}


def test_player_follows_its_actions_and_leaves_the_rest_alone():
    clip = Clip(2, 64, seed=3)
    pos = []
    for _ in range(40):
        pos.append(clip.player.pos.copy())
        clip.frame()
    acts = np.array(clip.actions[:40])
    assert acts[0] == NO_ACTION and set(acts[1:]) <= set(range(len(ACTIONS)))
    assert np.array_equal(acts, clip_actions(2, 40, 64, seed=3)), "the actions file is the rendered clip's"
    moved = np.diff(np.stack(pos), axis=0)  # (T-1, 2): the move into frames 1..T-1
    assert np.allclose(moved, MOVES[acts[1:]] * 2.5), "action t is the move from frame t-1 to frame t"
    runs = np.flatnonzero(np.diff(acts[1:])) + 1
    assert len(runs) < 20, "actions are held for several frames"
    with_player, without = render_clip(2, 12, 64, seed=3), render_clip(2, 12, 64, seed=3, player=False)
    assert 0 < (with_player != without).any(-1).mean() < 0.05, "the player is one small sprite on the same clip"


def test_sidecar_format_and_its_one_line_errors(tmp_path):
    video = tmp_path / "match.mp4"
    write_clip(video, 0, frames=10, fps=10, size=32, seed=0)
    side = sidecar_path(video)
    assert side.name == "match.actions.txt"
    side.write_text("# frame 0 has no action\n-1\n" + "\n".join(["1", "2"] * 4) + "\n\n3\n")
    assert read_sidecar(side)[0].tolist() == [-1, 1, 2, 1, 2, 1, 2, 1, 2, 3]
    record = tmp_path / "match.actions.json"
    fetch(VideoSpec("m", "m", "path", path=str(video)), tmp_path / "out.mp4", {}, lambda m: None, record)
    assert json.loads(record.read_text())["actions"] == [-1, 1, 2, 1, 2, 1, 2, 1, 2, 3]
    side.write_text("-1\n1\n2\n")
    with pytest.raises(PipelineError, match=r"^actions file .*match.actions.txt has 3 actions but video .* has 10 frames; "
                                            r"give exactly one action per frame"):
        fetch(VideoSpec("m", "m", "path", path=str(video)), tmp_path / "o2.mp4", {}, lambda m: None,
              tmp_path / "r2.json")
    assert not (tmp_path / "o2.mp4").exists(), "a bad actions file makes no video"
    side.write_text("-1\nleft\n")
    with pytest.raises(PipelineError, match=r"line 2: 'left' is not an integer action id"):
        read_sidecar(side)
    side.write_text("-1\n-3\n")
    with pytest.raises(PipelineError, match=r"line 2: -3 is not an action id"):
        read_sidecar(side)


@pytest.mark.parametrize("fps_in", [15, 20, 25])
def test_actions_follow_their_frames_through_fps_resampling(tmp_path, fps_in):
    """Extract at 15 fps; find which rendered frame each extracted frame shows; its stored action
    must be that frame's (a dropped frame takes its action along)."""
    n = 40
    video, record = tmp_path / "v.mp4", tmp_path / "v.actions.json"
    fetch(VideoSpec("v", "s", "generator", index=1, generator={"frames": n, "fps": fps_in, "size": 32, "seed": 0}), video, {}, lambda m: None, record)
    extract(video, tmp_path / "f.zarr", FRAMES, "s", lambda m: None)
    write_given(record, tmp_path / "f.zarr", tmp_path / "a.zarr", lambda m: None)
    from latentwm.data.store import open_store

    got = np.asarray(open_store(tmp_path / "f.zarr")[:], float)  # (T, 3, H, W)
    src = render_clip(1, n, 32, seed=0).transpose(0, 3, 1, 2).astype(float)
    shown = np.array([np.argmin(((src - f) ** 2).mean((1, 2, 3))) for f in got])
    assert np.array_equal(shown, source_index(len(got), fps_in, 15))
    want = held(clip_actions(1, n, 32, seed=0), shown)
    assert np.array_equal(read_store(tmp_path / "a.zarr", {"given": True}, frames=len(got)), want)


def held(actions, shown) -> np.ndarray:
    """What each extracted frame's action must be: the most frequent action of the source frames since
    the previous extracted frame (ties: the latest), written out plainly."""
    out = [NO_ACTION]
    for prev, cur in zip(shown[:-1], shown[1:]):
        span = list(actions[prev + 1 : cur + 1])
        out.append(max(reversed(span), key=span.count) if span else NO_ACTION)  # max keeps the first maximum: the latest
    return np.array(out)


def test_resampled_actions_stand_for_the_dropped_frames():
    """35 -> 15 fps keeps every 2nd or 3rd source frame; a turn held on the dropped frames is still a
    turn, a one-frame tap between two extracted frames loses to what was held."""
    from latentwm.data.actions import resample

    a = np.array([0, 0, 0, 3, 3, 0, 3, 3, 0, 0, 0, 0, 0, 0, 4, 0, 1, 1, 2, 2])
    idx = source_index(9, 35, 15)
    assert idx.tolist() == [1, 3, 5, 8, 10, 12, 15, 17, 19], "ffmpeg's fps filter: frames 2 or 3 source frames apart"
    got = resample(a, 35, 15, 9, "test")
    assert got[0] == NO_ACTION
    assert got[3] == 3, "frames 6-7 held turn 3 and frame 8 (shown) released it: the turn, held longest, wins"
    assert got[6] == 0, "a one-frame tap of 4 between noops is outvoted"
    assert got[1] == 3 and got[2] == 0, "a tie goes to the latest"
    assert got[7:].tolist() == [1, 2]
    assert np.array_equal(got, held(a, idx))
    assert (got[1:] == a[idx][1:]).mean() < 1, "the rule is not 'the action of the frame shown'"
    slow = resample(np.array([5, 1, 2, 3]), 10, 15, 6, "test")  # 10 -> 15 fps repeats every other frame
    assert slow.tolist() == [NO_ACTION, NO_ACTION, 1, 2, NO_ACTION, 3], "a repeated frame shows no change: no action"


def test_nmi():
    a = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    assert nmi(a, a) == pytest.approx(1.0)
    assert nmi(a, (a + 1) % 3) == pytest.approx(1.0), "renaming the ids changes nothing"
    assert nmi(a, np.zeros_like(a)) == 0.0
    rng = np.random.default_rng(0)
    assert nmi(rng.integers(0, 5, 5000), rng.integers(0, 8, 5000)) < 0.01


def _player_moves(frames: np.ndarray, hud: int) -> np.ndarray:
    """(T-1,) the direction id (ACTIONS) of the white player's move into each frame, from its pixels:
    the centroid of the near-white pixels below the HUD strip, frames uint8 (T, 3, H, W)."""
    white = (frames[:, :, hud:] > 200).all(1)  # (T, H', W)
    ys, xs = np.indices(white.shape[1:])
    c = np.stack([[(xs * w).sum() / max(w.sum(), 1), (ys * w).sum() / max(w.sum(), 1)] for w in white])  # (T, 2)
    d = np.diff(c, axis=0)  # (T-1, 2): (dx, dy)
    still = np.abs(d).max(1) < 1.0
    return np.where(still, 0, np.where(np.abs(d[:, 0]) > np.abs(d[:, 1]), np.where(d[:, 0] < 0, 3, 4),
                                       np.where(d[:, 1] < 0, 1, 2)))


def test_stored_actions_are_the_moves_seen_in_the_extracted_frames(tmp_path):
    """End to end (render, encode, extract, store): the action stored at frame t is the move seen
    between frames t-1 and t; the same actions shifted by one frame agree clearly less."""
    video, record = tmp_path / "v.mp4", tmp_path / "v.actions.json"
    fetch(VideoSpec("v", "s", "generator", index=4, generator={"frames": 80, "fps": 15, "size": 64, "seed": 0}), video, {}, lambda m: None, record)
    extract(video, tmp_path / "f.zarr", {**FRAMES, "height": 64, "width": 64}, "s", lambda m: None)
    write_given(record, tmp_path / "f.zarr", tmp_path / "a.zarr", lambda m: None)
    from latentwm.data.store import open_store

    seen = _player_moves(np.asarray(open_store(tmp_path / "f.zarr")[:]), hud=8)
    acts = read_store(tmp_path / "a.zarr")
    aligned = (acts[1:] == seen).mean()
    shifted = (acts[:-1][1:] == seen[1:]).mean()  # the action of frame t-1 stored at t
    assert aligned > 0.9, f"only {aligned:.0%} of the stored actions match the player's moves"
    assert aligned > shifted + 0.1, f"shifting by one frame should cost agreement: {aligned:.0%} vs {shifted:.0%}"
