"""Vanilla Doom demos (v1.9 .lmp): read and write the player's inputs, and name them as actions.

A demo is a 13-byte header, then per game tic and per player in the game one 4-byte ticcmd, then
the byte 0x80 where the next tic would start:

    header   version (109), skill, episode, map, deathmatch, respawn, fast, nomonsters,
             consoleplayer, playeringame[4]
    ticcmd   forwardmove int8 (> 0 forward), sidemove int8 (> 0 strafe right),
             angleturn int8 (the high byte of a 16-bit turn in 1/65536 of a circle; > 0 turns
             left, 5 = 7.0 degrees a tic: a running keyboard turn), buttons uint8
             (1 fire, 2 use, 4 weapon change; 128: a special event, whose other bits are no buttons)

Rendered by the engine with -timedemo and one captured frame per tic, video frame t is the view
right after ticcmd t was applied, so the action that produced frame t is ticcmd t's (a sidecar's
line t; latentwm.data.actions). ACTIONS is the small action set the inputs are named with, one per tic
(`action_of`): the turn and its speed first (it moves the view most), then the move, then the
buttons.
"""

from __future__ import annotations

import os
import shlex
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentwm.core.errors import PipelineError
from latentwm.data.video import ffmpeg_exe

VERSION = 109
END = 0x80
HEADER = 13
FIRE, USE, SPECIAL = 1, 2, 128
# One id per tic; turn left/right include strafing or backing while turning (the view still turns).
# A turn carries its speed, as the amount the view moves is what a frame's future hinges on: per
# tic |angleturn| 1-2 (at most 2.8 degrees) is _slow, 3-5 (up to a running keyboard turn) plain, 6
# and more (a mouse flick) _fast. The speeds come after the first eleven, so those keep their ids.
TURN_SPEEDS = (("_slow", 1), ("", 3), ("_fast", 6))  # (suffix, the least |angleturn| it names)
TURNS = tuple(f"{m}turn_{s}" for m in ("", "forward_") for s in ("left", "right"))
ACTIONS = ("noop", "forward", "back", "turn_left", "turn_right", "strafe_left", "strafe_right",
           "forward_turn_left", "forward_turn_right", "fire", "use") + tuple(
    t + suffix for suffix, _ in TURN_SPEEDS if suffix for t in TURNS)


@dataclass(frozen=True)
class Demo:
    """A demo's header fields and the console player's ticcmds, int arrays (T,) each."""

    skill: int
    episode: int
    map: int
    forward: np.ndarray
    side: np.ndarray
    turn: np.ndarray
    buttons: np.ndarray

    def __len__(self) -> int:
        return len(self.forward)


def read(data: bytes, where: str = "demo") -> Demo:
    """A vanilla v1.9 demo's console player's inputs; one line naming the demo on anything else."""
    if not data or data[0] != VERSION:
        raise PipelineError(f"{where} is not a vanilla Doom v1.9 demo (version byte {data[0] if data else 'missing'}, "
                            f"expected {VERSION}); record it with a vanilla-compatible port (-complevel 2)")
    if len(data) < HEADER + 1:
        raise PipelineError(f"{where} is {len(data)} bytes, shorter than a demo's header and end marker; the file is "
                            "cut: copy or extract the demo again")
    players = [i for i in range(4) if data[9 + i]]
    if data[8] not in players:
        raise PipelineError(f"{where}: its console player {data[8]} is not in the game; the header is damaged: use an "
                            "undamaged copy of the demo")
    body = data[HEADER:]
    # the engine reads 0x80 at the start of any player's ticcmd as the end; inside a ticcmd it is a value
    starts = np.flatnonzero(np.frombuffer(body, np.uint8)[::4] == END)
    if not len(starts):
        raise PipelineError(f"{where} has no end marker (0x80) after its tics; the demo is truncated: copy or extract it again")
    end = 4 * int(starts[0]) // (4 * len(players)) * (4 * len(players))  # whole tics before the marker
    tics = np.frombuffer(body[:end], np.uint8).reshape(-1, len(players), 4)[:, players.index(data[8])]
    signed = tics.view(np.int8)
    return Demo(data[1], data[2], data[3], signed[:, 0].astype(np.int64), signed[:, 1].astype(np.int64),
                signed[:, 2].astype(np.int64), tics[:, 3].astype(np.int64))


def write(forward, side, turn, buttons=None, *, skill: int = 2, episode: int = 1, map: int = 1) -> bytes:
    """A single-player vanilla v1.9 demo of the given per-tic inputs (ints in the ticcmd ranges)."""
    cols = [np.asarray(c, np.int64) for c in (forward, side, turn)]
    cols.append(np.zeros(len(cols[0]), np.int64) if buttons is None else np.asarray(buttons, np.int64))
    for name, c, lo, hi in zip(("forward", "side", "turn", "buttons"), cols, (-127, -128, -128, 0), (127, 127, 127, 255)):
        if len(c) != len(cols[0]) or (len(c) and (c.min() < lo or c.max() > hi)):
            raise ValueError(f"{name}: {len(c)} values in [{lo}, {hi}] expected, one per tic")
    tics = np.stack(cols, 1).astype(np.int64) % 256
    header = struct.pack("13B", VERSION, skill, episode, map, 0, 0, 0, 0, 0, 1, 0, 0, 0)
    return header + tics.astype(np.uint8).tobytes() + bytes([END])


def action_of(forward: int, side: int, turn: int, buttons: int) -> int:
    """The ACTIONS id of one ticcmd."""
    if turn:
        side_name = "left" if turn > 0 else "right"
        suffix = [sfx for sfx, least in TURN_SPEEDS if abs(turn) >= least][-1]
        return ACTIONS.index(("forward_" if forward > 0 else "") + f"turn_{side_name}{suffix}")
    if forward or side:
        if abs(forward) >= abs(side):
            return ACTIONS.index("forward" if forward > 0 else "back")
        return ACTIONS.index("strafe_right" if side > 0 else "strafe_left")
    if not buttons & SPECIAL and buttons & FIRE:
        return ACTIONS.index("fire")
    if not buttons & SPECIAL and buttons & USE:
        return ACTIONS.index("use")
    return ACTIONS.index("noop")


def actions(demo: Demo) -> np.ndarray:
    """int64 (T,): the ACTIONS id of every tic."""
    return np.array([action_of(*t) for t in zip(demo.forward, demo.side, demo.turn, demo.buttons)], np.int64)


def sidecar_text(ids: np.ndarray, what: str) -> str:
    """The sidecar of a rendered demo (one line per video frame: line t is tic t's action), with the
    action names in its header."""
    head = [f"# {what}", f"# actions: {' '.join(ACTIONS)}",
            "# line t: the action of tic t, which produced video frame t (one frame per tic)"]
    return "\n".join(head + [str(int(a)) for a in ids]) + "\n"


def read_file(path) -> Demo:
    return read(Path(path).read_bytes(), str(path))


IWADS = {1: Path("/usr/share/games/doom/freedoom1.wad"), 2: Path("/usr/share/games/doom/freedoom2.wad")}


def port() -> str | None:
    """A Doom source port with -viddump (dsda-doom or prboom-plus), or None."""
    for name in ("dsda-doom", "prboom-plus"):
        exe = shutil.which(name) or (f"/usr/games/{name}" if os.access(f"/usr/games/{name}", os.X_OK) else None)
        if exe:
            return exe
    return None


def render(exe: str, iwad, demo: bytes, out, size: str = "640x480", timeout: int = 1800) -> None:
    """A demo replayed headless by the engine (-timedemo: every tic, as fast as it runs) into a
    lossless H.264 video `out` at 35 fps, one frame per tic: frame t is the view after tic t."""
    with tempfile.TemporaryDirectory(prefix="doom_render.") as tmp:
        tmp = Path(tmp)
        (tmp / "demo.lmp").write_bytes(demo)
        cfg = tmp / "capture.cfg"
        cfg.write_text(
            f'videomode "Software"\nscreen_resolution "{size}"\nuse_fullscreen 0\nuncapped_framerate 0\n'
            "render_wipescreen 0\nhudadd_demoprogressbar 0\nhud_displayed 0\n"
            'cap_soundcommand "cat > /dev/null"\n'
            f'cap_videocommand "{ffmpeg_exe()} -loglevel error -f rawvideo -pix_fmt rgb24 -r %r -s %wx%h -i - '
            f'-c:v libx264 -preset ultrafast -qp 0 -threads 1 -y {shlex.quote(str(Path(out).resolve()))}"\n'
            'cap_muxcommand "true"\n'
            f'cap_tempfile1 "{tmp}/unused_a"\ncap_tempfile2 "{tmp}/unused_b"\ncap_remove_tempfiles 0\n'
            "cap_wipescreen 0\ncap_fps 35\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
        env.update(HOME=str(tmp), SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy")
        # -playdemo runs in real time and, headless, captures almost nothing; -timedemo captures every tic
        cmd = [exe, "-config", str(cfg), "-iwad", str(iwad), "-nosound", "-nomusic",
               "-timedemo", str(tmp / "demo.lmp"), "-viddump", str(tmp / "unused.mkv")]
        cmd = (["nice", "-n", "10"] if shutil.which("nice") else []) + cmd  # a background job beside the user's
        Path(out).unlink(missing_ok=True)  # what was there before is no proof of this render
        r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        if not Path(out).exists() or Path(out).stat().st_size == 0:
            tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
            raise PipelineError(f"{Path(exe).name} wrote no video (exit {r.returncode}): {' | '.join(tail)}")
