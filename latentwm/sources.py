"""Sources in config -> videos. One video = one download job, one frame store, one id.

A source entry has an `id` and exactly one of:
    generator: {...}   the built-in gameplay-like clip generator; one video per clip
    path: FILE         a local video file, used as it is (linked, never modified)
    url: URL           a video, playlist or channel; resolved by yt-dlp into one video per entry

Video ids are safe names ([A-Za-z0-9_], see rules/common.smk): generator clips are
"{id}_{index:03d}", a local file is "{id}", a URL entry is "{id}_{yt-dlp id made safe}".
Nothing from config ever reaches a shell string; ids only ever become file names.
"""

from __future__ import annotations

import re

from .errors import PipelineError

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
KINDS = ("generator", "path", "url")


def safe_name(text: str) -> str:
    """A string made safe for a video id: anything outside [A-Za-z0-9_] becomes '_'."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", text).strip("_")
    return out or "video"


def source_kind(entry: dict) -> str:
    kinds = [k for k in KINDS if k in entry]
    if len(kinds) != 1:
        raise PipelineError(
            f"source {entry.get('id')!r} must have exactly one of {', '.join(KINDS)}; it has {kinds or 'none'}"
        )
    if not SAFE_ID.match(str(entry.get("id", ""))):
        raise PipelineError(
            f"source id {entry.get('id')!r} is not a safe name; use letters, digits and _ (e.g. 'my_videos')"
        )
    return kinds[0]


def static_videos(entry: dict) -> list[dict] | None:
    """The videos of a generator or path source; None for a URL source (it needs resolving)."""
    kind, sid = source_kind(entry), entry["id"]
    if kind == "generator":
        gen = entry["generator"]
        return [
            {"video": f"{sid}_{i:03d}", "source": sid, "kind": "generator", "index": i, "generator": gen}
            for i in range(gen["clips"])
        ]
    if kind == "path":
        return [{"video": sid, "source": sid, "kind": "path", "path": str(entry["path"])}]
    return None
