"""The built-in generator of gameplay-like clips: offline, deterministic per (seed, clip index).

A clip is a top-down arena seen through a camera that pans at a constant per-clip velocity over
a tiled, shaded floor; 3-5 sprites (distinct colours and shapes) glide with momentum (speed
relaxes to a cruise speed, heading turns slowly), bounce off the arena walls and occlude each
other in a fixed draw order; a HUD strip on top shows a score (wall bounces) and a timer.

Everything moves 1-3 px per frame at 64x64 with sub-pixel, anti-aliased rendering, so motion
is smooth and predictable (extrapolating it beats copying the last frame) but not trivial.

The player (`player=True`, the default): one more sprite, a white square drawn on top, driven by
actions (ACTIONS: noop + 4 directions, PLAYER_SPEED px per frame at 64x64) that a persistent random
policy picks (an action held for 2-8 frames; a move into a wall is never picked). It draws from its
own random stream, so the rest of a clip is the same with or without it. Actions are per frame:
actions[t] is the action that produced frame t (the move from t-1 to t); frame 0 has none (-1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.data.actions import NO_ACTION
from latentwm.data.video import encode_mp4

# 3x5 bitmaps of the digits 0-9, one string of 15 bits per digit (rows top to bottom)
DIGITS = [
    "111101101101111", "010110010010111", "111001111100111", "111001111001111", "101101111001001",
    "111100111001111", "111100111101111", "111001010010010", "111101111101111", "111101111001111",
]  # fmt: skip
FONT = np.array([[int(b) for b in d] for d in DIGITS], dtype=bool).reshape(10, 5, 3)
SHAPES = ("circle", "square", "diamond", "ring", "plus")
ACTIONS = ("noop", "up", "down", "left", "right")  # the player's actions; the id is the index
MOVES = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]], float)  # (len(ACTIONS), 2): (dx, dy) per action
PLAYER_SPEED = 2.5  # px per frame at 64x64: about 0.6 latent cells of a 16x16 grid
HOLD = (2, 9)  # an action is held for integers in [2, 9) frames


class Player:
    """The action-driven sprite: position (x, y) in arena pixels, moved by the action of each step."""

    def __init__(self, index: int, seed: int, arena: np.ndarray, s: float):
        self.rng = np.random.default_rng([seed, index, 1])  # its own stream: the other sprites are unchanged
        self.arena, self.speed = arena, PLAYER_SPEED * s
        self.radius = 4.0 * s
        self.pos = self.rng.uniform(self.radius + self.speed, arena - self.radius - self.speed)
        self.action, self.left = 0, 0  # the action held and the frames it is still held for

    def fits(self, action: int) -> bool:
        nxt = self.pos + self.speed * MOVES[action]
        return bool(((nxt >= self.radius) & (nxt <= self.arena - self.radius)).all())

    def step(self) -> int:
        """Pick the action of the next frame (hold or redraw), move; returns its id."""
        if self.left <= 0 or not self.fits(self.action):
            allowed = [a for a in range(len(ACTIONS)) if self.fits(a)]  # noop always fits
            self.action = int(allowed[self.rng.integers(len(allowed))])
            self.left = int(self.rng.integers(*HOLD))
        self.left -= 1
        self.pos = self.pos + self.speed * MOVES[self.action]
        return self.action


class Clip:
    """State of one clip; each call of `frame()` renders the next frame (t = 0, 1, 2, ...)."""

    def __init__(self, index: int, size: int, seed: int, player: bool = True):
        if size % 2:
            raise PipelineError(f"generator size {size} is odd; H.264 (yuv420p) needs an even size, e.g. {size + 1}")
        rng = np.random.default_rng([seed, index])
        self.size, s = size, size / 64  # s: pixel scale relative to the 64x64 design
        self.digit = max(1, size // 64)
        self.hud = 5 * self.digit + 2
        self.texture = _floor(rng, tile=max(4, round(8 * s)), tiles=8)  # (P, P, 3) float, periodic
        angle = rng.uniform(0, 2 * np.pi)
        self.pan = rng.uniform(0.5, 1.5) * s * np.array([np.cos(angle), np.sin(angle)])  # px/frame
        self.arena = _arena(size)  # (x extent, y extent)
        k = int(rng.integers(3, 6))
        self.radius = rng.uniform(3, 6, k) * s  # 6-12 px wide sprites
        self.pos = np.stack([rng.uniform(self.radius, self.arena[0] - self.radius),
                             rng.uniform(self.radius, self.arena[1] - self.radius)], 1)  # fmt: skip
        heading = rng.uniform(0, 2 * np.pi, k)
        self.cruise = rng.uniform(1.0, 2.5, k) * s  # px/frame
        self.vel = self.cruise[:, None] * np.stack([np.cos(heading), np.sin(heading)], 1)  # (k, 2)
        self.turn = rng.uniform(-0.03, 0.03, k)  # rad/frame: gently curved paths
        hues = (rng.uniform() + np.arange(k) / k) % 1.0  # evenly spread: distinct colours
        self.colour = np.stack([_hue(h) for h in hues])  # (k, 3) in [0, 1]
        self.shape = rng.permutation(len(SHAPES))[:k] % len(SHAPES)
        self.score, self.t = 0, 0
        self.player = Player(index, seed, self.arena, s) if player else None
        self.actions = [NO_ACTION]  # actions[t] produced frame t

    def frame(self) -> np.ndarray:
        """The next frame, uint8 (H, W, 3)."""
        img = self._background()
        for i in range(len(self.pos)):  # fixed draw order: later sprites occlude earlier ones
            self._draw(img, i)
        if self.player is not None:  # on top of every other sprite: never occluded
            p = self.player
            self._sprite(img, "square", p.pos, p.radius, np.array([0.95, 0.95, 0.95]))
        img = np.concatenate([self._hud_strip(), img], 0)
        self._step()
        return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

    def _background(self) -> np.ndarray:
        """The floor seen from the panned camera, bilinear so sub-pixel pans stay smooth."""
        h, w = int(self.arena[1]), int(self.arena[0])
        ox, oy = self.pan * self.t
        tex, p = self.texture, self.texture.shape[0]
        x, y = np.arange(w) + ox, np.arange(h) + oy
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = (x - x0)[None, :, None], (y - y0)[:, None, None]
        x0, y0, x1, y1 = x0 % p, y0 % p, (x0 + 1) % p, (y0 + 1) % p
        top = tex[y0][:, x0] * (1 - fx) + tex[y0][:, x1] * fx
        bottom = tex[y1][:, x0] * (1 - fx) + tex[y1][:, x1] * fx
        return top * (1 - fy) + bottom * fy  # (h, w, 3)

    def _draw(self, img: np.ndarray, i: int) -> None:
        self._sprite(img, SHAPES[self.shape[i]], self.pos[i], self.radius[i], self.colour[i])

    def _sprite(self, img: np.ndarray, shape: str, pos, r: float, colour: np.ndarray) -> None:
        """Anti-aliased sprite from a signed distance (px); a dark 1 px rim, then the body."""
        cx, cy = pos
        y0, y1 = max(0, int(cy - r - 2)), min(img.shape[0], int(cy + r + 3))
        x0, x1 = max(0, int(cx - r - 2)), min(img.shape[1], int(cx + r + 3))
        dy, dx = np.mgrid[y0:y1, x0:x1] + 0.5 - np.array([cy, cx])[:, None, None]
        d = _sdf(shape, dx, dy, r)
        patch = img[y0:y1, x0:x1]
        for dist, c in ((d - 1, colour * 0.25), (d, colour)):
            a = np.clip(0.5 - dist, 0, 1)[..., None]
            shade = 1.0 - 0.25 * np.clip((dx + dy) / (2 * r), -1, 1)[..., None]  # light from top-left
            patch[:] = patch * (1 - a) + a * c * shade

    def _hud_strip(self) -> np.ndarray:
        """(hud, W, 3): score (wall bounces) on the left, a timer that counts up every 4 frames on the right."""
        hud = np.full((self.hud, self.size, 3), 0.08)
        for text, right in ((f"{self.score:03d}", False), (f"{self.t // 4:04d}", True)):
            g = self.digit
            width = len(text) * 4 * g - g
            x = self.size - width - g if right else g
            for ch in text:
                glyph = np.kron(FONT[int(ch)], np.ones((g, g), bool))
                hud[1 : 1 + 5 * g, x : x + 3 * g][glyph] = (1.0, 0.85, 0.2) if not right else (0.8, 0.9, 1.0)
                x += 4 * g
        return hud

    def _step(self) -> None:
        """Momentum: heading turns slowly, speed relaxes to cruise (friction/thrust), walls reflect."""
        c, s = np.cos(self.turn), np.sin(self.turn)
        vx, vy = self.vel[:, 0], self.vel[:, 1]
        self.vel = np.stack([c * vx - s * vy, s * vx + c * vy], 1)
        speed = np.linalg.norm(self.vel, axis=1, keepdims=True)
        self.vel *= 1 + 0.05 * (self.cruise[:, None] / speed - 1)
        self.pos += self.vel
        lo, hi = self.radius[:, None], self.arena[None, :] - self.radius[:, None]
        for bound, side in ((lo, self.pos < lo), (hi, self.pos > hi)):
            self.pos = np.where(side, 2 * bound - self.pos, self.pos)
            self.vel = np.where(side, -self.vel, self.vel)
            self.score += int(side.sum())
        self.actions.append(self.player.step() if self.player is not None else NO_ACTION)
        self.t += 1


def _arena(size: int) -> np.ndarray:
    """(x extent, y extent) in pixels of the arena below the HUD strip (5 px digits per 64 px + 2)."""
    return np.array([size, size - (5 * max(1, size // 64) + 2)], float)


def _sdf(shape: str, dx, dy, r):
    """Signed distance (px, negative inside) of a shape of radius r centred at 0."""
    if shape == "circle":
        return np.hypot(dx, dy) - r
    if shape == "square":
        return np.maximum(abs(dx), abs(dy)) - 0.85 * r
    if shape == "diamond":
        return (abs(dx) + abs(dy) - 1.2 * r) / np.sqrt(2)
    if shape == "ring":
        return abs(np.hypot(dx, dy) - 0.7 * r) - 0.35 * r
    arm = 0.38 * r  # plus
    return np.minimum(np.maximum(abs(dx) - r, abs(dy) - arm), np.maximum(abs(dy) - r, abs(dx) - arm))


def _hue(h: float) -> np.ndarray:
    """Saturated colour of hue h in [0, 1)."""
    return np.clip(np.abs((h * 6 + np.array([0, 4, 2])) % 6 - 3) - 1, 0, 1) * 0.8 + 0.2


def _floor(rng, tile: int, tiles: int) -> np.ndarray:
    """Periodic floor texture (P, P, 3), P = tile * tiles: tiles of varied tone, grout lines, shading."""
    p = tile * tiles
    base = rng.uniform(0.2, 0.5, 3)
    tone = rng.uniform(-0.12, 0.12, (tiles, tiles, 1))
    tex = base + np.kron(tone, np.ones((tile, tile, 1)))
    yy, xx = np.mgrid[0:p, 0:p] * (2 * np.pi / p)
    for _ in range(3):  # integer frequencies keep the texture periodic
        fx, fy = rng.integers(1, 4, 2)
        tex += 0.06 * np.sin(fx * xx + fy * yy + rng.uniform(0, 2 * np.pi))[..., None]
    grout = np.arange(p) % tile == 0
    tex[grout] *= 0.6
    tex[:, grout] *= 0.6
    return tex


def iter_clip(index: int, frames: int, size: int = 64, seed: int = 0, player: bool = True) -> Iterator[np.ndarray]:
    """Frames of clip `index`, uint8 (H, W, 3) each, one at a time (memory flat in `frames`)."""
    clip = Clip(index, size, seed, player)
    for _ in range(frames):
        yield clip.frame()


def render_clip(index: int, frames: int, size: int = 64, seed: int = 0, player: bool = True) -> np.ndarray:
    """The whole clip `index`, uint8 (T, H, W, 3)."""
    return np.stack(list(iter_clip(index, frames, size, seed, player)))


def clip_actions(index: int, frames: int, size: int = 64, seed: int = 0, player: bool = True) -> np.ndarray:
    """int64 (T,): the action that produced each frame of clip `index` (frame 0: NO_ACTION), without
    rendering; all NO_ACTION without a player."""
    out = np.full(frames, NO_ACTION, np.int64)
    if player:
        p = Player(index, seed, _arena(size), size / 64)
        out[1:] = [p.step() for _ in range(frames - 1)]
    return out


def write_clip(path, index: int, frames: int, fps: float, size: int = 64, seed: int = 0, player: bool = True) -> None:
    """Encode clip `index` to an H.264 mp4 (yuv420p, crf 18) at `path`, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write(path, lambda tmp: _encode(tmp, index, frames, fps, size, seed, player), keep_suffix=True)


def _encode(tmp: Path, index: int, frames: int, fps: float, size: int, seed: int, player: bool) -> None:
    """Pipe the clip's frames through ffmpeg into the mp4 `tmp`."""
    encode_mp4(tmp, iter_clip(index, frames, size, seed, player), fps, size, size, f"clip {index}")