"""Doom demos: the parser on demos the project writes, the action set, and (where the engine and
Freedoom are installed) frame/input alignment and the flow measure on real engine footage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentwm.core.errors import PipelineError
from latentwm.data import doom_demo as D

ENGINE = D.port() and D.IWADS[1].exists()
needs_engine = pytest.mark.skipif(not ENGINE, reason="no Doom port or Freedoom IWAD (apt-get install -y dsda-doom freedoom)")


def test_a_written_demo_reads_back_with_its_inputs_and_end_marker():
    fwd, side, turn = [0, 50, -25, 0, 0], [0, 0, 0, 40, -24], [0, 0, 5, -5, 0]
    data = D.write(fwd, side, turn, [0, 1, 0, 2, 129], episode=1, map=3)
    assert len(data) == 13 + 4 * 5 + 1 and data[0] == 109 and data[-1] == 0x80
    demo = D.read(data)
    assert (demo.episode, demo.map, len(demo)) == (1, 3, 5)
    assert demo.forward.tolist() == fwd and demo.side.tolist() == side and demo.turn.tolist() == turn
    assert demo.buttons.tolist() == [0, 1, 0, 2, 129]
    names = [D.ACTIONS[a] for a in D.actions(demo)]
    assert names == ["noop", "forward", "turn_left", "turn_right", "strafe_left"]


def test_the_action_set_names_each_input():
    a = lambda *t: D.ACTIONS[D.action_of(*t)]  # noqa: E731
    assert a(50, 0, 5, 0) == "forward_turn_left" and a(50, 0, -5, 0) == "forward_turn_right"
    assert a(-25, 24, 5, 1) == "turn_left", "backing or strafing while turning: the turn moves the view"
    speeds = [a(0, 0, t, 0) for t in (1, 2, 3, 5, 6, 127)] + [a(50, 0, t, 0) for t in (-1, -4, -128)]
    assert speeds == ["turn_left_slow"] * 2 + ["turn_left"] * 2 + ["turn_left_fast"] * 2 + [
        "forward_turn_right_slow", "forward_turn_right", "forward_turn_right_fast"], "a turn names its speed"
    assert D.ACTIONS[:11] == ("noop", "forward", "back", "turn_left", "turn_right", "strafe_left", "strafe_right",
                              "forward_turn_left", "forward_turn_right", "fire", "use"), "older sidecars' ids keep their names"
    assert len(set(D.ACTIONS)) == len(D.ACTIONS) == 19
    assert a(-25, 0, 0, 1) == "back" and a(10, -40, 0, 0) == "strafe_left" and a(0, 40, 0, 0) == "strafe_right"
    assert a(0, 0, 0, 1) == "fire" and a(0, 0, 0, 2) == "use" and a(0, 0, 0, 0) == "noop"
    assert a(0, 0, 0, 128 | 1) == "noop", "a special event's bits are no buttons"


def test_fetch_real_writes_a_sidecar_of_another_action_set_again(tmp_path, monkeypatch):
    """configs/fetch_real.py keeps a sidecar whose header names ACTIONS and writes one that names
    another set (an older ACTIONS) again, from the demo, one line per frame of the rendered clip."""
    import importlib.util

    from conftest import ROOT

    from latentwm.data.actions import read_sidecar
    from latentwm.data.video import encode_mp4

    spec = importlib.util.spec_from_file_location("fetch_real", ROOT / "configs" / "fetch_real.py")
    fetch_real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch_real)
    monkeypatch.setattr(fetch_real, "OUT", tmp_path)
    demo = D.write([0] * 12, [0] * 12, [0, 0, 1, 2, 3, 5, 6, 9, -1, -4, -7, 0])
    encode_mp4(tmp_path / "clip.mp4", [np.zeros((16, 16, 3), np.uint8)] * 12, 35, 16, 16, "clip")
    side = tmp_path / "clip.actions.txt"
    side.write_text("# actions: noop forward back turn_left turn_right\n" + "3\n" * 12)
    assert fetch_real.write_sidecar("clip", demo, "a test clip") is True
    ids, names = read_sidecar(side)
    assert names == list(D.ACTIONS) and [names[a] for a in ids[2:11]] == [
        "turn_left_slow", "turn_left_slow", "turn_left", "turn_left", "turn_left_fast", "turn_left_fast",
        "turn_right_slow", "turn_right", "turn_right_fast"]
    assert fetch_real.write_sidecar("clip", demo, "a test clip") is False, "a current sidecar is kept"


def test_damaged_demos_get_one_line():
    with pytest.raises(PipelineError, match=r"^bad.lmp is not a vanilla Doom v1.9 demo .*version byte 110, expected 109"):
        D.read(b"\x6e" + D.write([0], [0], [0])[1:], "bad.lmp")
    with pytest.raises(PipelineError, match=r"^short.lmp is 5 bytes, shorter than a demo's header"):
        D.read(D.write([0], [0], [0])[:5], "short.lmp")
    with pytest.raises(PipelineError, match=r"no end marker .* truncated"):
        D.read(D.write([0, 0], [0, 0], [0, 0])[:-1], "cut.lmp")
    half_turn = D.write([0, 0], [0, 0], [-128, 0])  # 0x80 inside a tic is not the end
    assert D.read(half_turn).turn.tolist() == [-128, 0]
    with pytest.raises(ValueError, match="forward"):
        D.write([-128], [0], [0])  # a tic starting with 0x80 would end the demo


def _render(tmp_path, demo: bytes, size: str = "320x240") -> np.ndarray:
    """The demo rendered by the engine: uint8 luma frames (T, H, W) at 35 fps, one per tic."""
    from latentwm.data.video import iter_frames

    out = tmp_path / "demo.mkv"
    D.render(D.port(), D.IWADS[1], demo, out, size=size, timeout=300)
    w, h = (int(v) for v in size.split("x"))
    rgb = np.concatenate(list(iter_frames(out, 35, h, w, "stretch")))  # (T, 3, H, W), every frame
    return np.einsum("tchw,c->thw", rgb.astype(np.float32), np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)


@needs_engine
def test_rendered_frame_t_is_the_view_after_tic_t(tmp_path):
    """70 tics of nothing, then a hard right turn: the first frame that changes is tic 70's (after the
    level's first 40 tics: the screen's fade-in and the weapon being raised)."""
    n, at = 100, 70
    turn = np.where(np.arange(n) >= at, -5, 0)
    luma = _render(tmp_path, D.write(np.zeros(n), np.zeros(n), turn, skill=2, episode=1, map=1))
    assert len(luma) == n, f"{len(luma)} frames for {n} tics"
    view = luma[:, : int(luma.shape[1] * 0.8)].astype(float)  # above the status bar
    change = np.abs(np.diff(view, axis=0)).mean((1, 2))  # change[t - 1]: frame t against frame t - 1
    settled = 40
    assert change[settled:at - 1].max() < 1, "nothing moves before the turn"
    first = settled + 1 + int(np.argmax(change[settled:] > 5))
    assert first == at, f"the first changed frame is {first}, the turn is stored at tic {at}"


@needs_engine
def test_global_flow_follows_the_turn_input_on_engine_footage(tmp_path):
    """Held keyboard turns left and right at a walking pace, with pauses, extracted as the pipeline does
    (15 fps, 64 x 64): the horizontal global flow of consecutive frames follows the summed turn input."""
    from latentwm.data.actions import source_index
    from latentwm.data.store import open_store
    from latentwm.data.video import extract
    from latentwm.evaluation import metrics

    rng = np.random.default_rng(0)
    turn = np.concatenate([np.full(int(rng.integers(8, 20)), v) for v in rng.choice([-2, -1, 0, 0, 1, 2], 24)])
    n = len(turn)
    video = tmp_path / "turns.mkv"
    D.render(D.port(), D.IWADS[1], D.write(np.zeros(n), np.zeros(n), turn, map=1), video, size="320x240", timeout=300)
    extract(video, tmp_path / "f.zarr", {"fps": 15, "height": 64, "width": 64, "min_frames": 1, "chunk_frames": 64,
                                         "resize": "crop"}, "turns", lambda m: None)
    f = torch.from_numpy(np.asarray(open_store(tmp_path / "f.zarr")[:])).float() / 255
    idx = source_index(len(f), 35, 15)
    summed = np.array([turn[idx[k - 1] + 1 : idx[k] + 1].sum() for k in range(1, len(f))])
    dx = metrics.global_flow(f[:-1], f[1:])[:, 0].numpy()
    r = np.corrcoef(dx, summed)[0, 1]
    assert r >= 0.8, f"horizontal global flow against the turn input: correlation {r:.2f}"
    assert np.polyfit(summed, dx, 1)[0] > 0, "a left turn (> 0) moves the view's content right (dx > 0)"
