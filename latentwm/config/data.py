"""The data stages' sections: `sources[].generator`, `download`, `frames`, `splits`, `latents`."""

from __future__ import annotations

from dataclasses import dataclass

from latentwm.config.fields import setting
from latentwm.config.train import DEVICES

RESIZE = ("crop", "pad", "stretch")  # frames.resize: how a frame of another aspect fits


@dataclass
class GeneratorConfig:
    """A `generator:` source: `clips` videos of `frames` frames, size x size pixels."""

    clips: int = setting(48, "Number of clips (videos).", minimum=1)
    frames: int = setting(60, "Frames per clip.", minimum=2)
    fps: float = setting(15, exclusiveMinimum=0)
    size: int = setting(64, "Rendered width and height in pixels (even, for H.264).", minimum=16, multipleOf=2)
    seed: int = 0
    player: bool = setting(True, "One more sprite, driven by actions (noop + 4 directions, each held 2-8 frames), whose "
                                 "per-frame actions are written next to the clip (the truth latent actions are checked "
                                 "against); false: the same clips without it.")


@dataclass
class DownloadConfig:
    """yt-dlp settings of URL sources (download rule)."""

    max_height: int = setting(360, "Height cap for yt-dlp format selection.", minimum=16)
    retries: int = setting(3, minimum=0)
    socket_timeout: float = setting(30, exclusiveMinimum=0)
    playlist_limit: int = setting(0, "Max entries per playlist/channel; 0 = all.", minimum=0)
    max_mb: float = setting(2048, "A download that grows past this many MiB fails (and leaves nothing): an hour of "
                                  "gameplay at 360p is a few hundred.", exclusiveMinimum=0)
    max_seconds: float = setting(3600, "A download still running after this many seconds fails (and leaves nothing).",
                                 exclusiveMinimum=0)


@dataclass
class FramesConfig:
    """Frame extraction (extract_frames rule): every video resampled (to fps, or its own lower rate) and resized alike."""

    fps: float = setting(30, "Frames are resampled to this rate, at most 240; a video slower than it keeps its own "
                                 "rate (resampling up would repeat frames, which teaches the model to copy). 30, not "
                                 "15: a turn moves the view half as far a frame, which the dynamics follow more "
                                 "sharply and steer more by (docs/EXPERIMENTS.md).",
                         exclusiveMinimum=0, maximum=240)
    height: int = setting(64, "Frame height in pixels, at most 4096 (memory and compute grow with its square).",
                          minimum=8, maximum=4096)
    width: int = setting(64, "Frame width in pixels, at most 4096.", minimum=8, maximum=4096)
    resize: str = setting("crop", "crop: scale to cover then center-crop; pad: scale to fit then pad black; "
                          "stretch: ignore aspect.", enum=list(RESIZE))
    min_frames: int = setting(48, "A shorter video fails its job with a clear error.", minimum=1)
    max_decode_errors: float = setting(0.01, "ffmpeg decode errors per extracted frame above which a video is refused as "
                                             "damaged (ffmpeg conceals them and exits 0); under it a warning, and the count "
                                             "in the store's attrs. 0: none tolerated.", minimum=0)
    chunk_frames: int = setting(64, "Frames per zarr chunk (time axis).", minimum=1)


@dataclass
class SplitsConfig:
    """Train / val / test split by video, fixed by seed (splits rule)."""

    val: float = setting(0.125, "Fraction of videos for validation (at least 1).", minimum=0, maximum=1)
    test: float = setting(0.25, "Fraction of videos for test (at least 1).", minimum=0, maximum=1)
    seed: int = 0


@dataclass
class LatentsConfig:
    """Encoding every video's frames into latents (encode_latents); no retraining on change."""

    videos_per_job: int = setting(64, "Videos one encode job writes (encode_latents, and encode_actions with latent "
                                      "actions): each split's videos in runs of this many, a folder results/latents/"
                                      "SPLIT_NNN each. Every job pays Python, torch and the model's start (seconds); "
                                      "fewer jobs also keep the DAG small (1,000 videos: 2,000 jobs, not 3,000).",
                                  minimum=1)
    batch_size: int = setting(64, "Frames per encoder call.", minimum=1)
    chunk_frames: int = setting(64, "Latent frames per zarr chunk (time axis).", minimum=1)
    device: str = setting("auto", enum=DEVICES)
KINDS = ("generator", "path", "url")
SPLITS = ("train", "val", "test")  # sources[].split: where a pinned source's videos go
