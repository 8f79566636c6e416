# Input functions and wildcard constraints. Rules hold no logic; the package holds it.
import os

from latentwm.config.data import SPLITS
from latentwm.core.files import unwritable
from latentwm.data.sources import (
    all_video_specs,
    pinned_splits,
    resolved_lists,
    sidecar_path,
    source_kind,
    static_files,
    static_videos,
    usable_name,
    with_parts,
)
from latentwm.data.splits import assign_splits, shards


wildcard_constraints:
    video=r"[A-Za-z0-9][A-Za-z0-9_]*",
    source=r"[A-Za-z0-9][A-Za-z0-9_]*",
    split="|".join(SPLITS),
    evaluation=r"[A-Za-z0-9][A-Za-z0-9_]*",
    shard=rf"({'|'.join(SPLITS)})_\d\d\d+",


# the configured sources, a local file cut in parts where too few videos come otherwise (all_video_specs
# applies with_parts to config["sources"] again: the same list, it is idempotent)
SOURCES = {s["id"]: s for s in with_parts(config["sources"])}
URL_SOURCES = [sid for sid, s in SOURCES.items() if source_kind(s) == "url"]


# the resolved lists' (path, mtime) -> video_specs(): built once, not once per job
_SPECS = {}


def video_specs():
    """video id -> spec; a video that an earlier source already lists is dropped (no leakage).

    The same function builds the list in the splits rule, so the DAG and splits.json agree.
    URL sources' lists are written by the resolve_source checkpoint.
    """
    files = {
        sid: checkpoints.resolve_source.get(source=sid).output[0] for sid in URL_SOURCES
    }
    key = tuple((f, os.stat(f).st_mtime_ns) for f in files.values())
    if key not in _SPECS:
        lists = resolved_lists(files.values())
        _SPECS[key] = all_video_specs(config["sources"], lists)
    return _SPECS[key]


def all_videos():
    return sorted(video_specs())


def split_map():
    s = config["splits"]
    pins = pinned_splits(config["sources"], video_specs())
    return assign_splits(all_videos(), s["val"], s["test"], s["seed"], pins)


def split_videos(split):
    return split_map()[split]


def shard_map():
    """Shard name -> its videos: the runs of latents.videos_per_job that one encode job writes."""
    return shards(split_map(), config["latents"]["videos_per_job"])


def shard_frames(wildcards):
    """Input function of an encode job: the frame stores of its shard's videos."""
    videos = shard_map().get(wildcards.shard)
    if videos is None:
        raise ValueError(
            f"shard {wildcards.shard!r} holds no videos (see results/splits.json)"
        )
    return frames(videos)


def encoded(kind, *split_names):
    """The shard folders (results/{kind}/SPLIT_NNN) of every video of `split_names` (all: every split)."""
    names = [
        s for s in shard_map() if not split_names or s.split("_")[0] in split_names
    ]
    return expand("results/{kind}/{shard}", kind=kind, shard=names)


def video_source_files(wildcards):
    """Inputs of download: the local file (and its actions sidecar), or the resolved list of a URL source."""
    spec = static_file(wildcards.video)
    if spec is None:
        return {"resolved": resolved_file(wildcards.video)}
    if spec.kind != "path":
        return {}
    if not os.path.isfile(spec.path) or not usable_name(spec.path):
        # as an input, a missing file (or a brace, read as a wildcard) would stop the whole DAG;
        # source_away fails alone instead, naming what is wrong
        return {"away": f"results/videos/{wildcards.video}.away"}
    sidecar = sidecar_path(spec.path)
    return {
        "local": spec.path,
        **({"sidecar": str(sidecar)} if sidecar.exists() else {}),
    }


# video id -> spec of every generator or path video (a part of a cut file included), and file id ->
# spec of every file they are extracted from, known without touching checkpoints (built once: input
# functions look them up per job; the first source to list an id wins)
STATIC_SPECS, STATIC_FILES = {}, {}
for entry in SOURCES.values():
    if source_kind(entry) != "url":
        for spec in static_videos(entry):
            STATIC_SPECS.setdefault(spec.video, spec)
        for spec in static_files(entry):
            STATIC_FILES.setdefault(spec.video, spec)


def static_spec(video):
    """Spec of a generator or path video; None for URL videos."""
    return STATIC_SPECS.get(video)


def static_file(file):
    """Spec of a generator or path file (what download makes); None for URL files."""
    return STATIC_FILES.get(file)


def file_params(file):
    """The download params of a file: its spec's, or for a URL file its id (its URL is in its source's list)."""
    spec = static_file(file)
    return spec.params() if spec else {"video": file, "kind": "url"}


def video_spec(video):
    """Spec of any video (a URL video's waits for its source's resolve_source checkpoint)."""
    spec = static_spec(video) or source_specs(url_source(video)).get(video)
    if spec is None:
        raise ValueError(
            f"video {video!r} is listed by no configured source (see results/sources/)"
        )
    return spec


def video_file(kind):
    """Input function: results/videos/{file}.{kind} of the video's file (its own, or for a part
    the whole file's, downloaded once)."""
    return lambda w: f"results/videos/{video_spec(w.video).file_id}.{kind}"


def url_source(video):
    """The URL source whose id prefixes `video` (the longest, if ids are prefixes of each other)."""
    for sid in sorted(URL_SOURCES, key=len, reverse=True):
        if video.startswith(f"{sid}_"):
            return sid
    raise ValueError(f"video {video!r} belongs to no configured source")


def resolved_file(video):
    """The resolve_source output of the URL source of `video`."""
    return f"results/sources/{url_source(video)}.json"


def video_source(video):
    """The source id of `video` (recorded in its frame store), with its part of a cut file."""
    return video_spec(video).extract_source


def frames(videos):
    return expand("results/frames/{video}.zarr", video=videos)


def static_frames(wildcards):
    """The frame stores of the generator and path videos, known without any URL source's list."""
    return frames(STATIC_SPECS)


def source_specs(sid):
    """video id -> spec of URL source `sid`'s videos. It waits for that source's list alone, so under
    --keep-going a source that cannot be listed holds up only what needs every video (splits,
    training), not the other sources' videos; once every list is there, exactly its videos in
    video_specs() (a video an earlier source lists dropped, parts cut)."""
    own = checkpoints.resolve_source.get(source=sid).output[0]
    if all(os.path.exists(f"results/sources/{s}.json") for s in URL_SOURCES):
        return {v: spec for v, spec in video_specs().items() if spec.source == sid}
    return {spec.video: spec for spec in resolved_lists([own])[sid]}


def source_frames(sid):
    """Input function: the frame stores of URL source `sid`'s videos (source_specs)."""
    return lambda wildcards: frames(source_specs(sid))


def train_frames(wildcards):
    return frames(split_videos("train"))


def val_frames(wildcards):
    return frames(split_videos("val"))


ACTIONS = config["dynamics"]["actions"]  # none | latent | given


def action_stores(split, kind=ACTIONS):
    """The action stores of the videos of `split` that dynamics and evaluation read: the given ones
    per video, the latent ones in their encode jobs' shards; none without actions."""
    if kind == "none":
        return []
    if kind == "latent":
        return encoded("actions/latent", split)
    return expand("results/actions/given/{video}.zarr", video=split_videos(split))


def action_inputs(*split_names):
    """Input function: the action stores of the videos of `split_names` (one named input per split),
    and the latent action model whose ids they are (its hash is checked against theirs).
    """

    def inputs(wildcards):
        if ACTIONS == "none":
            return {}
        out = {f"{s}_actions": action_stores(s) for s in split_names}
        if ACTIONS == "latent":
            out["lam"] = "results/lam/lam.pt"
        return out

    return inputs


def truth_actions(wildcards):
    """The test videos' given actions, scored against the latent ones (latent actions only)."""
    if ACTIONS != "latent":
        return {}
    return {"truth": action_stores("test", "given")}


def all_targets(wildcards):
    """Every final product; each rule names its own outputs (rules.NAME.output), listed nowhere else."""
    evaluations = list(config["evaluations"])
    return [  # the frames: static_frames and source_frames, inputs of their own (one waits for no list)
        *rules.splits.output,
        *rules.train_tokenizer.output,
        *encoded("latents"),
        *rules.latent_stats.output,
        *(rules.train_lam.output if ACTIONS == "latent" else []),
        *rules.train_dynamics.output,
        *expand(rules.evaluate_rollouts.output, evaluation=evaluations),
        *expand(rules.plot_evaluation.output, evaluation=evaluations),
        *rules.plot_training.output,
        *(rules.plot_refiner.output if config["refiner"]["enabled"] else []),
    ]


def stop_if_unwritable(jobs):
    """Exit with one line per folder the jobs to run cannot write (a read-only results/): Snakemake
    removes a job's old outputs itself before the job starts, and fails there with a traceback.
    """
    problems = unwritable(f for job in jobs for f in [*job.output, *job.log])
    if problems:
        raise SystemExit("\n".join(f"ERROR: {p}" for p in problems))
