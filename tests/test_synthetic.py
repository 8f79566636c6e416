"""The built-in clip generator: deterministic, moving, and predictable beyond copying the last frame."""

import numpy as np
import pytest

from latentwm.core.errors import PipelineError
from latentwm.data.synthetic import Clip, render_clip, write_clip
from latentwm.data.video import probe


def test_deterministic_per_seed_and_index():
    a, b = render_clip(3, 12, 32, seed=7), render_clip(3, 12, 32, seed=7)
    assert a.dtype == np.uint8 and a.shape == (12, 32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render_clip(3, 12, 32, seed=8))
    assert not np.array_equal(a, render_clip(4, 12, 32, seed=7))


def test_motion_everywhere_and_copy_last_is_wrong():
    clip = render_clip(0, 30, 64, seed=0).astype(float)
    diffs = ((clip[1:] - clip[:-1]) ** 2).mean(axis=(1, 2, 3))  # (T-1,) copy-last MSE per step
    assert (diffs > 0).all(), "every frame must differ from the one before"
    assert diffs.mean() > 100, f"copy-last MSE {diffs.mean():.0f} is too small: the clip barely moves"


def test_sprites_move_smoothly_with_momentum():
    """Sprite positions follow a linear extrapolation far better than 'stay put' (except at bounces)."""
    clip = Clip(1, 64, seed=0)
    pos = []
    for _ in range(60):
        pos.append(clip.pos.copy())
        clip.frame()
    pos = np.stack(pos)  # (T, k, 2)
    step = np.linalg.norm(pos[2:] - pos[1:-1], axis=-1)  # error of copying the last position
    extrap = np.linalg.norm(pos[2:] - (2 * pos[1:-1] - pos[:-2]), axis=-1)  # error of extrapolating
    assert 0.8 < np.median(step) < 3.5, "sprites move 1-3 px per frame"
    assert np.median(extrap) < 0.2 * np.median(step)


def _window(img, dy, dx, m=4):
    return img[m + dy : img.shape[0] - m + dy, m + dx : img.shape[1] - m + dx]


def test_motion_extrapolation_beats_copy_last_in_pixels():
    """Shift frame t by the camera pan estimated from frames t-2 -> t: a better guess of t+2 than frame t
    (the scene without the player, whose moves are its actions': not predictable from the past)."""
    copy, pred = [], []
    for index in range(3):
        arena = render_clip(index, 24, 64, seed=0, player=False).astype(float)[:, 8:]  # below the HUD strip
        for t in range(2, 22, 4):
            a, b, nxt = arena[t - 2], arena[t], arena[t + 2]
            shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
            dy, dx = min(shifts, key=lambda d: ((_window(a, *d) - _window(b, 0, 0)) ** 2).mean())
            pred.append(((_window(b, dy, dx) - _window(nxt, 0, 0)) ** 2).mean())
            copy.append(((_window(b, 0, 0) - _window(nxt, 0, 0)) ** 2).mean())
    assert np.mean(pred) < 0.85 * np.mean(copy)


def test_hud_counts_up():
    clip = render_clip(2, 41, 64, seed=0)
    assert not np.array_equal(clip[0, :7], clip[40, :7]), "the HUD timer must change"


def test_write_clip_is_a_real_h264_mp4(tmp_path):
    out = tmp_path / "clip.mp4"
    write_clip(out, 0, frames=30, fps=10, size=32, seed=0)
    info = probe(out)
    assert (info["width"], info["height"], info["fps"]) == (32, 32, 10.0)
    assert abs(info["duration"] - 3.0) < 0.2
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"], "no temp file left behind"


def test_odd_size_is_refused():
    with pytest.raises(PipelineError, match="even"):
        Clip(0, 33, seed=0)
