"""Sample rollouts to look at: filmstrips (PNG), animated GIFs and one HTML page embedding them.

Every row is one condition (the truth, each sampler's rollout, the mean, copy_last, the motion oracle, the tokenizer
ceiling); a reader sees at a glance whether a rollout keeps its sprites and HUD or dissolves.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from latentwm.core import files
from latentwm.figures.plots import _save, plt


def _chw_to_hwc(x) -> np.ndarray:
    return np.asarray(x).transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)


def filmstrip(truth, predictions: dict, context: int, path, title: str = "") -> None:
    """Rows: truth, then each prediction; columns: the last context frame, then the horizon steps.

    truth uint8 (S, 3, H, W) with S = context + horizon; predictions name -> uint8 (horizon, 3, H, W).
    """
    truth = np.asarray(truth)
    horizon = len(truth) - context
    rows = [("truth", truth[context - 1 :])] + [
        (name, np.concatenate([truth[context - 1 : context], np.asarray(p)])) for name, p in predictions.items()
    ]
    fig, axes = plt.subplots(len(rows), horizon + 1, figsize=(1.1 * (horizon + 1) + 1, 1.15 * len(rows)), squeeze=False)
    for r, (name, seq) in enumerate(rows):
        for c in range(horizon + 1):
            ax = axes[r, c]
            ax.imshow(_chw_to_hwc(seq[c]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("context end" if c == 0 else f"+{c}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path)


def sample_gif(truth, predictions: dict, context: int, path, min_height: int = 128, fps: float = 4.0) -> None:
    """Side-by-side animation truth | each prediction, upscaled (nearest) to at least min_height px.

    Context frames show the truth in every panel, framed in grey; predicted frames in red.
    """
    truth = np.asarray(truth)  # (S, 3, H, W)
    S, _, H, W = truth.shape
    k = max(1, -(-min_height // H))
    frames = []
    for t in range(S):
        panels = [truth[t]] + [truth[t] if t < context else np.asarray(p)[t - context] for p in predictions.values()]
        border = (128, 128, 128) if t < context else (220, 30, 30)
        tiles = [np.pad(_chw_to_hwc(p).repeat(k, 0).repeat(k, 1), ((2, 2), (2, 2), (0, 0))) for p in panels]
        for i, tile in enumerate(tiles):
            if i > 0:  # the truth panel keeps a black frame
                tile[:2], tile[-2:], tile[:, :2], tile[:, -2:] = border, border, border, border
        row = np.concatenate(tiles, axis=1).astype(np.uint8)
        frame = Image.new("RGB", (row.shape[1], row.shape[0] + 14), (255, 255, 255))
        frame.paste(Image.fromarray(row), (0, 14))
        draw = ImageDraw.Draw(frame)  # panel names above the panels, in pillow's built-in font
        for i, name in enumerate(["truth", *predictions]):
            draw.text((i * tiles[0].shape[1] + 3, 1), f"{name} t={t - context + 1:+d}" if i == 0 else name, fill=(0, 0, 0))
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


def samples_html(items: list[tuple[str, Path]], path, title: str) -> None:
    """One page embedding (base64) the sample GIFs and filmstrips, so the report can show animation."""
    parts = []
    for caption, file in items:
        mime = "image/gif" if str(file).endswith(".gif") else "image/png"
        data = base64.b64encode(Path(file).read_bytes()).decode()
        parts.append(f"<figure><img src='data:{mime};base64,{data}'><figcaption>{html.escape(caption)}</figcaption></figure>")
    Path(path).write_text(
        f"<html><head><meta charset='utf-8'></head><body style='font-family:sans-serif'><h3>{html.escape(title)}</h3>"
        + ("".join(parts) or "<p>no samples (evaluation samples: 0)</p>") + "</body></html>"
    )


def write_samples(samples: list[dict], context: int, out_dir: Path) -> list[dict]:
    """GIF + filmstrip per sample window, listed in out_dir/index.json (names relative to out_dir)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    listed = []
    for i, s in enumerate(samples):
        video, window, start = s["key"]
        stem = f"sample{i:02d}_{video}_w{window}"
        title = f"{video}, frames {start}..{start + len(s['truth']) - 1} (context {context})"
        sample_gif(s["truth"], s["predictions"], context, out_dir / f"{stem}.gif")
        filmstrip(s["truth"], s["predictions"], context, out_dir / f"{stem}.png", title)
        if "sweep" in s:  # an action model's: one row per action held for the whole horizon, same context
            filmstrip(s["truth"], s["sweep"], context, out_dir / f"{stem}_action_sweep.png",
                      f"{title}: each action held for the horizon")
        listed.append({"video": video, "window": window, "start": start, "gif": f"{stem}.gif", "png": f"{stem}.png",
                       "panels": ["truth", *s["predictions"]], "title": title})
    (out_dir / "index.json").write_text(json.dumps(listed, indent=1))
    return listed


def frames_gif(frames, path, fps: float) -> None:
    """uint8 frames (N, H, W, 3) as a looping GIF at their own size and rate, written whole or not at
    all (a play recording and its replay: the same frames give the same file)."""
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    files.write(path, lambda tmp: images[0].save(tmp, save_all=True, append_images=images[1:], loop=0,
                                                 duration=max(20, round(1000 / fps))), keep_suffix=True)


def gif_frames(path) -> int:
    """Number of frames of a GIF (tests and checks)."""
    with Image.open(io.BytesIO(Path(path).read_bytes())) as im:
        return getattr(im, "n_frames", 1)
