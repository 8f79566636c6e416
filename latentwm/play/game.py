"""What the play server steers: one trained world model (loaded once) and the sessions played in it.

    Game     the dynamics checkpoint, its tokenizer and the test videos of a results folder; the
             action set (named given actions, latent codes with what each does, or none), the start
             frames a player may pick, and thumbnails
    Session  one player's run: the real context frames before a start frame, then one frame per
             step under the action held; reset, and recordings (a GIF and its replay file)

A session's memory is what the model reads: the rollout keeps the model's window of past frames
(models.sampler.Rollout), the actions since the reset are a few bytes a frame, and a recording keeps
at most RECORD_FRAMES frames. The same start, seed, sampler and actions give the same pixels as
`workflow_scripts/steer.py --replay` of the recording's JSON (tested).
"""

from __future__ import annotations

import json
import time
from array import array
from pathlib import Path

import numpy as np
import torch

from latentwm.config.data import FramesConfig
from latentwm.config.evaluation import EvalConfig
from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.core.image import to_uint8
from latentwm.data.actions import NO_ACTION
from latentwm.data.store import open_store, video_store
from latentwm.evaluation.actions import action_names
from latentwm.evaluation.steer import action_store, context_of, frames_sha, load
from latentwm.figures.samples import frames_gif
from latentwm.models.sampler import Rollout, own_sampler, trained_tau_ctx

RECORD_FRAMES = 1800  # a recording stops itself here (1-2 minutes at 30-15 fps): bounded memory
THUMBS = 12  # start frames offered per video
SWEEP_STEPS = 4  # a latent code's picture: the frame after holding it this many steps


def needed(results: Path) -> dict[str, tuple[Path, str]]:
    """The files the server reads, each with the rule that makes it."""
    return {"dynamics": (results / "dynamics" / "dynamics.pt", "train_dynamics"),
            "tokenizer": (results / "tokenizer" / "tokenizer.pt", "train_tokenizer"),
            "splits": (results / "splits.json", "splits")}


class Game:
    """One model, loaded once, and the test videos it can be played from."""

    def __init__(self, results, recordings=None, context: int | None = None, seed: int = 0, **sampling):
        self.results = Path(results)
        paths = {}
        for name, (path, rule) in needed(self.results).items():
            if not path.is_file():
                raise PipelineError(f"{path} is missing: run the pipeline first (snakemake --cores N; the rule "
                                    f"{rule} makes it), or pass --results of a finished run")
            paths[name] = path
        self.model, self.codec, self.ckpt = load(paths["dynamics"], paths["tokenizer"], need_actions=False)
        self.paths, self.seed = paths, seed
        self.context = context or EvalConfig().context
        self.sampler, self.tau_ctx = own_sampler(self.model, **sampling), trained_tau_ctx(self.ckpt)
        self.kind = (self.ckpt.get("actions") or {}).get("kind", "none")
        self.n_actions = int(self.model.cfg.actions or 0)
        self.recordings = Path(recordings) if recordings else self.results / "play"
        self.videos = self._videos(json.loads(paths["splits"].read_text()).get("test", []))
        self.names = action_names(self.n_actions, self._names()) if self.n_actions else []
        if self.kind == "latent":
            self.names = [f"code {a}" for a in range(self.n_actions)]
        self.effects = self._effects() if self.kind == "latent" else {}

    def _videos(self, test: list[str]) -> dict[str, dict]:
        out = {}
        for vid in test:
            lat, fr = video_store(self.results / "latents", vid), self.results / "frames" / f"{vid}.zarr"
            if not (lat.exists() and fr.exists()):
                continue
            frames = open_store(fr)
            if frames.shape[0] <= self.context:
                continue
            out[vid] = {"latents": lat, "frames": frames, "actions": action_store(self.results, self.ckpt, vid),
                        "n": int(frames.shape[0]), "fps": float(dict(frames.attrs).get("fps") or FramesConfig().fps)}
        if not out:
            raise PipelineError(f"{self.results}: no test video with more than {self.context} frames has its latents "
                                "and frames; run the pipeline to the end (snakemake --cores N)")
        return out

    def _names(self) -> list[str] | None:
        for v in self.videos.values():
            if v["actions"] is not None:
                return dict(open_store(v["actions"], scan=False).attrs).get("names")
        return None

    def video(self, vid) -> dict:
        if not isinstance(vid, str) or vid not in self.videos:
            raise KeyError(f"unknown video {str(vid)[:80]!r}: pick one of {', '.join(sorted(self.videos))}")
        return self.videos[vid]

    def starts(self, vid: str) -> list[int]:
        """THUMBS evenly spaced start frames of a video: each has `context` real frames before it."""
        n = self.video(vid)["n"]
        return sorted({int(s) for s in np.linspace(self.context, n - 1, THUMBS).round()})

    def thumbnail(self, vid: str, start: int) -> np.ndarray:
        """The real frame before `start` (H, W, 3) uint8: what a session starting there shows first."""
        return np.asarray(self.video(vid)["frames"][start - 1]).transpose(1, 2, 0)

    def check_start(self, vid: str, start) -> int:
        n = self.video(vid)["n"]
        if isinstance(start, bool) or not isinstance(start, int) or not self.context <= start <= n:
            raise ValueError(f"start {str(start)[:40]} of {vid}: give an integer frame from {self.context} (the "
                             f"{self.context} real frames before it are the context) to {n}")
        return start

    def check_action(self, action) -> int:
        if isinstance(action, bool) or not isinstance(action, int):
            raise ValueError(f"action {str(action)[:40]!r}: give an integer id")
        if self.n_actions and not NO_ACTION <= action < self.n_actions:
            raise ValueError(f"action {action}: give an id from 0 to {self.n_actions - 1}, or -1 for none")
        if not self.n_actions and action != NO_ACTION:
            raise ValueError(f"action {action}: this model takes no actions (dynamics.actions: none); send -1")
        return action

    def decode(self, z: torch.Tensor) -> np.ndarray:
        """One normalised latent frame (1, 1, C, h, w) -> uint8 (H, W, 3)."""
        return to_uint8(self.codec.decode(z))[0, 0].permute(1, 2, 0).contiguous().numpy()

    def _effects(self) -> dict[int, np.ndarray]:
        """What each latent code does: from the first test video's first start, the frame after
        holding the code SWEEP_STEPS steps (the action sweep, one frame per code)."""
        vid = next(iter(self.videos))
        v, start = self.videos[vid], self.context
        ctx, ctx_actions = context_of(self.ckpt, v["latents"], start - self.context, self.context, v["actions"])
        n = self.n_actions
        run = Rollout(self.model, ctx.expand(n, -1, -1, -1, -1), self.sampler,
                      torch.Generator().manual_seed(self.seed), context_actions=ctx_actions.expand(n, -1),
                      tau_ctx=self.tau_ctx)
        for _ in range(SWEEP_STEPS):
            z = run.step(torch.arange(n)[:, None])
        px = to_uint8(self.codec.decode(z)).permute(0, 1, 3, 4, 2).numpy()  # (n, 1, H, W, 3)
        return {a: px[a, 0] for a in range(n)}


class Session:
    """One player's run from a start frame of a test video."""

    def __init__(self, game: Game, vid: str, start: int):
        self.game, self.vid, self.start = game, vid, game.check_start(vid, start)
        self.seen = time.monotonic()
        self.reset()

    def reset(self) -> np.ndarray:
        """Back to the real context: the frame shown is the real frame before the start."""
        g, v = self.game, self.game.video(self.vid)
        ctx, ctx_actions = context_of(g.ckpt, v["latents"], self.start - g.context, g.context, v["actions"])
        self.run = Rollout(g.model, ctx, g.sampler, torch.Generator().manual_seed(g.seed),
                           context_actions=ctx_actions if g.n_actions else None, tau_ctx=g.tau_ctx)
        self.actions = array("h")  # since the reset: what a replay needs
        self.frame, self.action = g.thumbnail(self.vid, self.start), NO_ACTION
        self.recording: list[np.ndarray] | None = None
        return self.frame

    def step(self, action: int) -> np.ndarray:
        g = self.game
        action = g.check_action(action)
        z = self.run.step(torch.tensor([[action]]) if g.n_actions else None)
        self.frame, self.action = g.decode(z), action
        self.actions.append(action)
        if self.recording is not None:
            self.recording.append(self.frame)
        return self.frame

    @property
    def index(self) -> int:
        """Frames predicted since the reset (0: the real frame before the start is shown)."""
        return len(self.actions)

    @property
    def full(self) -> bool:
        return self.recording is not None and len(self.recording) >= RECORD_FRAMES

    def record(self, on: bool) -> dict:
        """Start recording the frames from the next one on (a no-op while recording); or stop and save: the
        GIF and its replay file."""
        if on:
            if self.recording is None:
                self.recording, self.record_from = [], self.index
            return {"recording": True}
        if self.recording is None:
            raise ValueError("not recording: start a recording first")
        frames, self.recording = self.recording, None
        if not frames:
            return {"recording": False, "saved": None}
        return {"recording": False, "saved": self.save(frames)}

    def save(self, frames: list[np.ndarray]) -> dict:
        g = self.game
        g.recordings.mkdir(parents=True, exist_ok=True)
        stem = g.recordings / f"{self.vid}_{self.start}_{time.strftime('%Y%m%d-%H%M%S')}_{id(self) % 10000:04d}"
        replay = {"video": self.vid, "start": self.start - g.context, "context": g.context, "seed": g.seed,
                  "temperature": g.sampler.temperature, "guidance": g.sampler.guidance,
                  "actions": [int(a) for a in self.actions], "first_frame": self.record_from, "frames": len(frames),
                  "frames_sha256": frames_sha(frames), "dynamics": str(g.paths["dynamics"]),
                  "tokenizer": str(g.paths["tokenizer"]), "results": str(g.results), "fps": g.video(self.vid)["fps"]}
        frames_gif(np.stack(frames), stem.with_suffix(".gif"), replay["fps"])
        files.write(stem.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(replay, indent=1)))
        return {"gif": str(stem.with_suffix(".gif")), "replay": str(stem.with_suffix(".json")), "frames": len(frames)}
