"""Sources in config -> videos. One video = one download job, one frame store, one id.

A source entry has an `id` and exactly one of:
    generator: {...}   the built-in gameplay-like clip generator; one video per clip
    path: FILE         a local video file, used as it is (linked, never modified)
    url: URL           a video, playlist or channel; resolved by yt-dlp into one video per entry

Video ids are safe names ([A-Za-z0-9_], see rules/common.smk): generator clips are
"{id}_{index:03d}", a local file is "{id}", a URL entry is "{id}_{yt-dlp id made safe}". A file
(a local one, or a URL entry) cut in time into `parts` gives the videos "{file}_part{k:02d}": one
download of the file, one frame store per part.
Nothing from config ever reaches a shell string; ids only ever become file names.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from latentwm.config.data import KINDS, GeneratorConfig
from latentwm.config.fields import SAFE_NAME, from_dict, to_dict
from latentwm.core.errors import PipelineError

SIDECAR_SUFFIX = ".actions.txt"  # a local video's own actions (format: latentwm.data.actions)
SAFE_ID = re.compile(SAFE_NAME)
SPLITS_NEED = 3  # videos: one each for train, val and test
AUTO_PARTS = 8  # parts per local file when the sources give fewer: val 1, test 2, train 5 (splits defaults)


@dataclass(frozen=True)
class VideoSpec:
    """One video of the sources (one frame store): where its file comes from and, for a part of a
    cut file, which part. Two specs with one `key` are one video (the first source keeps it)."""

    video: str  # its id: results/frames/{video}.zarr
    source: str
    kind: str  # generator | path | url
    index: int | None = None  # generator: the clip
    generator: dict | None = None  # generator: its settings but the clip count
    path: str | None = None
    url: str | None = None
    key: str | None = None
    file: str | None = None  # a part: the id of the whole file (results/videos/{file}.mp4)
    part: list[int] | None = None  # a part: [k, parts]

    @property
    def file_id(self) -> str:
        """The id of the file it is extracted from: its own, or its file's for a part."""
        return self.file or self.video

    @property
    def extract_source(self):
        """The extract_frames `source` param: the source id, or {"source": id, "part": [k, parts]} for a
        part. A whole video keeps the plain id, so its params, and so its extraction, stay what they
        were before parts existed (Snakemake reruns on a changed param)."""
        return {"source": self.source, "part": self.part} if self.part else self.source

    def params(self) -> dict:
        """Its plain dict (the keys it has): a rule's params, which Snakemake compares to rerun, and an
        entry of a URL source's list in results/sources/."""
        return {k: v for k, v in asdict(self).items() if v is not None}


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


def static_videos(entry: dict) -> list[VideoSpec] | None:
    """The videos of a generator or path source (a file with `parts`: its parts); None for a URL
    source (it needs resolving)."""
    files = static_files(entry)
    return None if files is None else [v for f in files for v in cut(f, entry.get("parts", 1))]


def static_files(entry: dict) -> list[VideoSpec] | None:
    """The files a generator or path source makes (one download job each), uncut; None for a URL source."""
    kind, sid = source_kind(entry), entry["id"]
    if kind == "generator":
        # a clip depends on everything but the clip count: adding clips leaves the others alone
        gen = to_dict(from_dict(GeneratorConfig, entry["generator"], f"sources.{sid}.generator"))
        clips = gen.pop("clips")
        key = f"generator:{json.dumps(gen, sort_keys=True)}"
        return [VideoSpec(f"{sid}_{i:03d}", sid, "generator", index=i, generator=gen, key=f"{key}:{i}") for i in range(clips)]
    if kind == "path":
        # the key is the real path, so one file listed by two sources is one video
        return [VideoSpec(sid, sid, "path", path=str(entry["path"]), key=f"file:{os.path.realpath(entry['path'])}")]
    return None


def cut(spec: VideoSpec, parts: int) -> list[VideoSpec]:
    """A file's spec -> the specs of its `parts` equal stretches in time (itself when parts is 1):
    videos "{file}_part{k:02d}", each with the file it is read from (`file`) and its part [k, parts]."""
    if parts == 1:
        return [spec]
    return [replace(spec, video=f"{spec.video}_part{k:02d}", file=spec.video, part=[k, parts],
                    key=f"{spec.key}#part{k}/{parts}") for k in range(parts)]


def with_parts(sources: list[dict], resolved: dict[str, list[VideoSpec]] | None = None) -> list[dict]:
    """The source list as the pipeline uses it: when the sources give fewer videos than the splits
    need, the ones to cut get `parts: AUTO_PARTS`, so one long recording (or one YouTube video) can be
    trained and tested. With every source local, each path source that sets no `parts` and has no
    actions sidecar; with URL sources, each URL source that sets none, once `resolved` (URL source id
    -> its listed videos) gives the count (without it, at parse time, the list stays as it is)."""
    kinds = [source_kind(e) for e in sources]
    if "url" in kinds:
        if resolved is None or len(_listed(sources, resolved)) >= SPLITS_NEED:
            return sources
        return [dict(e, parts=AUTO_PARTS) if k == "url" and "parts" not in e else e for e, k in zip(sources, kinds)]
    if sum(len(static_videos(e)) for e in sources) >= SPLITS_NEED:
        return sources
    return [dict(e, parts=AUTO_PARTS) if k == "path" and "parts" not in e and not sidecar_path(e["path"]).exists()
            else e for e, k in zip(sources, kinds)]


def sources_problems(sources: list[dict]) -> list[str]:
    """What makes the source list ambiguous as a whole, one line each (checked at parse time).

    Each id must name one source (a repeated id would make the DAG and the splits each pick a
    different entry), each local file must be listed once (two ids on one file, through a copy of
    its path or a symlink, is one video under two names: it could land in train and test), and
    no video id may be produced twice (a path id equal to a generator clip's id). A `path` that
    is a directory is caught here too; a path that does not exist is not: that is a per-run fault
    (an unmounted drive) that fails only its own jobs (rule source_away, which keeps what was made
    from the file for its return).
    """
    problems, first_id, first_file, first_video = [], {}, {}, {}
    for i, entry in enumerate(sources):
        sid = entry.get("id")
        try:
            kind = source_kind(entry)
        except PipelineError:
            continue  # reported by the schema
        if sid in first_id:
            j, other = first_id[sid]
            also = f"the {other} source sources[{j}]" if other != kind else f"sources[{j}]"
            problems.append(
                f"config key sources[{i}].id: {sid!r} ({kind}) is also the id of {also}; "
                "expected each id once: rename one of them or remove the duplicate"
            )
            continue
        first_id[sid] = (i, kind)
        if "parts" in entry and kind == "generator":
            problems.append(f"config key sources[{i}].parts: {sid!r} is a generator source; parts cuts a file "
                            "(path or url) only: remove it (set generator.clips instead)")
        if kind == "path" and entry.get("parts", 1) > 1 and sidecar_path(entry["path"]).exists():
            problems.append(f"config key sources[{i}].parts: {entry['path']} has an actions sidecar, whose actions "
                            "cannot follow a cut yet; remove parts (or the sidecar)")
        if kind == "path":
            path = os.path.expanduser(str(entry["path"]))
            if os.path.isdir(path):
                problems.append(
                    f"config key sources[{i}].path: {entry['path']} is a directory; expected a video file "
                    "(list each file of it as its own source)"
                )
                continue
            real = os.path.realpath(path)
            if real in first_file:
                j, other = first_file[real]
                problems.append(
                    f"config key sources[{i}].path: {entry['path']} (id {sid!r}) is the same file as sources[{j}] "
                    f"(id {other!r}), both {real}; expected each file once: remove one of them"
                )
                continue
            first_file[real] = (i, sid)
        for spec in static_videos(entry) or []:
            video = spec.video
            if video in first_video:
                problems.append(
                    f"config key sources[{i}].id: {sid!r} gives video id {video!r}, which sources[{first_video[video]}] "
                    "gives too; expected distinct video ids: rename one of the sources"
                )
                break
            first_video[video] = i
    return problems




def resolved_lists(paths) -> dict[str, list[VideoSpec]]:
    """URL source id -> its videos, from the lists the resolve_source rule writes
    (results/sources/{source}.json); the one reader behind rules/common.smk and the splits rule."""
    lists = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        try:
            lists[data["source"]] = [VideoSpec(**v) for v in data["videos"]]
        except (TypeError, KeyError):  # edited by hand, or written by another program
            raise PipelineError(f"{path} is not a video list that resolve_source wrote; delete it and rerun") from None
    return lists


def all_video_specs(sources: list[dict], resolved: dict[str, list[VideoSpec]]) -> dict[str, VideoSpec]:
    """video id -> spec over all sources in config order, cut in parts where with_parts says;
    `resolved` maps URL source id -> its specs. The one implementation behind rules/common.smk and
    the splits rule."""
    return _listed(with_parts(sources, resolved), resolved)


def _listed(sources: list[dict], resolved: dict[str, list[VideoSpec]]) -> dict[str, VideoSpec]:
    """video id -> spec of the sources as given (their `parts` only). A video an earlier source
    already lists (same key) is dropped, so no video can land in two splits."""
    specs, seen = {}, set()
    for entry in sources:
        listed = static_videos(entry)
        if listed is None:
            listed = [v for f in resolved[entry["id"]] for v in cut(f, entry.get("parts", 1))]
        for spec in listed:
            key = spec.key or spec.video
            if key not in seen and spec.video not in specs:
                seen.add(key)
                specs[spec.video] = spec
    return specs


def pinned_splits(sources: list[dict], specs: dict[str, VideoSpec]) -> dict[str, str]:
    """video id -> the split its source pins it to (sources[].split), for the videos of `specs` whose
    source sets one."""
    pins = {e["id"]: e["split"] for e in sources if e.get("split")}
    return {video: pins[spec.source] for video, spec in specs.items() if spec.source in pins}


def usable_name(path) -> bool:
    """Whether Snakemake can take the file as a job input: a brace in its path reads as a wildcard."""
    return not any(c in str(path) for c in "{}")


def sidecar_path(video_path) -> Path:
    """VIDEO.actions.txt beside VIDEO.mp4 (any video suffix)."""
    p = Path(video_path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)
