"""Per-frame actions: the videos' own (generator or sidecar), their trip through fps resampling,
the action stores, and how well two action labellings agree.

One convention everywhere: actions[t] is the action that produced frame t (the move from frame
t-1 to frame t); frame 0 has none, NO_ACTION = -1. Action ids are integers 0..n-1.

Sidecar format (a local video's own actions; latentwm.data.sources.sidecar_path finds it): beside
VIDEO.mp4 a text file VIDEO.actions.txt with one line per frame of the video at its own frame
rate; line t (counting from 0) holds the integer id of the action that produced frame t, -1 for
none (frame 0). Blank lines and lines starting with '#' are ignored, except one header line
"# actions: NAME0 NAME1 ..." that names the ids (shown in the action sweep). A file whose line
count differs from the video's frame count is refused.

Files and stores (time on axis 0, aligned with the frame and latent stores):
    results/videos/{video}.actions.json   {"actions": [T ints] | null, "fps", "names": [...] | null}
                                          what the download rule found (null: the video has none)
    results/actions/given/{video}.zarr    int16 (T,) the given actions on the extracted frames;
                                          attrs given (false: all NO_ACTION), n_actions, frames_store
    results/actions/latent/{video}.zarr   int16 (T,) the latent action model's ids; attrs lam_hash,
                                          tokenizer_hash, n_actions
Extraction's fps resampling keeps or repeats whole source frames (ffmpeg's fps filter, rounding
to the nearest output tick). An extracted frame's action stands for the inputs since the previous
extracted frame: the most frequent action of the source frames from the one after the previous
extracted frame's to the one it shows (ties: the latest), so a turn held across dropped frames is
still a turn. A repeated frame (a video slower than the extraction's rate) shows no change: NO_ACTION.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

from latentwm.config.dynamics import ACTION_KINDS
from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.data.sources import SIDECAR_SUFFIX
from latentwm.data.store import StoreWriter, open_store
from latentwm.data.video import probe

NO_ACTION = -1
MAX_ACTION_ID = 1023  # an embedding row per id, and the stores are int16: a larger id is a typo or another format


NAMES_HEADER = "# actions:"


def read_sidecar(path) -> tuple[np.ndarray, list[str] | None]:
    """int64 (T,) actions of a sidecar file and the names of its header (None without one); one line
    naming the file, line and fix on a bad entry."""
    out, names = [], None
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        text = line.strip()
        if text.startswith(NAMES_HEADER):
            names = text[len(NAMES_HEADER):].split()
        if not text or text.startswith("#"):
            continue
        try:
            a = int(text)
        except ValueError:
            raise PipelineError(f"actions file {path} line {n}: {text[:40]!r} is not an integer action id; "
                                f"write one integer per frame (-1: none)") from None
        if a < NO_ACTION or a > MAX_ACTION_ID:
            raise PipelineError(f"actions file {path} line {n}: {a} is not an action id; number the actions 0, 1, ... "
                                f"(at most {MAX_ACTION_ID}) and write -1 for none")
        out.append(a)
    if not out:
        raise PipelineError(f"actions file {path} holds no actions; write one integer per frame of its video or delete it")
    if names is not None and max(out) >= len(names):
        raise PipelineError(f"actions file {path} names {len(names)} actions in its '{NAMES_HEADER}' line but uses id "
                            f"{max(out)}; name every id used, or delete that line")
    return np.array(out, np.int64), names


def given_for_file(video_path, sidecar) -> dict:
    """The actions record of a local video: its sidecar's actions, checked against its frame count."""
    if sidecar is None or not Path(sidecar).exists():
        return {"actions": None, "fps": None, "names": None}
    actions, names = read_sidecar(sidecar)
    info = probe(video_path, count_frames=True)
    n, fps = info.get("frames"), info["fps"]
    if not fps or info["duration"] is None:
        raise PipelineError(f"video {video_path} states no frame rate or duration (a raw stream?), so its actions cannot be "
                            "placed in time; remux it with its true rate (ffmpeg -r RATE -i IN -c copy OUT.mp4)")
    if n is None:
        raise PipelineError(f"video {video_path} cannot be decoded to count its frames; check the file")
    if len(actions) != n:
        raise PipelineError(f"actions file {sidecar} has {len(actions)} actions but video {video_path} has {n} frames; "
                            "give exactly one action per frame (line t: the action that produced frame t)")
    return {"actions": actions.tolist(), "fps": fps, "names": names}


def write_record(path, record: dict) -> None:
    """results/videos/{video}.actions.json, atomically."""
    files.write(path, lambda tmp: tmp.write_text(json.dumps(record) + "\n"))


def source_index(n_out: int, fps_in: float, fps_out: float) -> np.ndarray:
    """int64 (n_out,): the source frame each extracted frame shows. ffmpeg's fps filter gives source
    frame i the output tick round(i * fps_out / fps_in) (half up) and shows, at tick k, the last
    source frame whose tick is <= k; so frames are dropped (or repeated) but never blended."""
    r = fps_out / fps_in
    k = np.arange(n_out)
    # largest i with floor(i r + 1/2) <= k  <=>  i r + 1/2 < k + 1  <=>  i < (k + 1/2) / r
    i = np.ceil((k + 0.5) / r - 1e-9).astype(np.int64) - 1
    return np.maximum(i, 0)


def resample(actions: np.ndarray, fps_in: float, fps_out: float, n_out: int, where: str) -> np.ndarray:
    """int64 (n_out,) actions of the extracted frames: each the most frequent action of the source
    frames since the previous extracted frame (ties: the latest); frame 0 and repeated frames get
    NO_ACTION (nothing in the clip produced them). Refuses a record too short for the extracted frames."""
    idx = source_index(n_out, fps_in, fps_out)
    if idx[-1] >= len(actions):
        raise PipelineError(f"{where}: {n_out} frames extracted at {fps_out:g} fps need source frame {idx[-1]} at "
                            f"{fps_in:g} fps but the actions cover {len(actions)} frames; give one action per source "
                            "frame (a variable frame rate video cannot carry actions: re-encode it at a constant rate)")
    actions = np.asarray(actions, np.int64)
    out = actions[idx]
    for k in range(1, n_out):
        span = actions[idx[k - 1] + 1 : idx[k] + 1]
        if len(span) == 0:  # a repeated frame: nothing changed
            out[k] = NO_ACTION
        elif len(span) > 1:
            ids, last = np.unique(span[::-1], return_index=True)  # last: distance from the end
            counts = np.bincount(np.searchsorted(ids, span), minlength=len(ids))
            out[k] = ids[np.lexsort((last, -counts))[0]]
    out[0] = NO_ACTION
    return out


def write_given(record_path, frames_path, out_path, log: Callable[[str], None] = print) -> int:
    """results/videos/{video}.actions.json + the frame store -> the given actions store; returns T."""
    record = json.loads(Path(record_path).read_text())
    frames = open_store(frames_path, scan=False)
    n, attrs = frames.shape[0], dict(frames.attrs)
    given = record.get("actions") is not None
    if given and attrs.get("part"):  # the sources refuse to cut a file with actions; a stale store might not
        raise PipelineError(f"{frames_path} is part {attrs['part'][0]} of {attrs['part'][1]} of a video whose actions "
                            f"({record_path}) cannot follow the cut; remove the source's parts")
    if given:
        fps_in = record.get("fps") or (attrs.get("probe") or {}).get("fps")
        if not fps_in:
            raise PipelineError(f"{record_path}: the video's frame rate is unknown, so its actions cannot follow the "
                                "extracted frames; re-encode the video with a constant frame rate")
        actions = resample(np.array(record["actions"]), float(fps_in), float(attrs["fps"]), n, str(record_path))
    else:
        actions = np.full(n, NO_ACTION, np.int64)
    n_actions = int(actions.max()) + 1 if given else 0
    out = {"given": given, "n_actions": n_actions, "names": record.get("names"), "frames_store": str(frames_path),
           "fps": attrs.get("fps"), "source": attrs.get("source"), "video": Path(out_path).name.removesuffix(".zarr")}
    write_store(out_path, actions, out)
    log(f"[actions] wrote {out_path}: {n} frames, " + (f"{n_actions} action ids" if given else "no given actions"))
    return n


def write_store(path, actions: np.ndarray, attrs: dict, chunk: int = 4096) -> int:
    actions = np.asarray(actions)
    bad = np.flatnonzero((actions < NO_ACTION) | (actions > MAX_ACTION_ID))
    if len(bad):  # int16 would wrap it into a valid-looking id
        raise PipelineError(f"action store {path}: frame {bad[0]} has action {actions[bad[0]]}, outside -1..{MAX_ACTION_ID}; "
                            "fix the actions it is written from and rerun")
    with StoreWriter(path, (), "int16", chunk, attrs, compress=False) as w:
        w.append(np.asarray(actions, np.int16))
        return w.commit()


def read_store(path, expect: dict | None = None, frames: int | None = None) -> np.ndarray:
    """int64 (T,) actions of an action store, its provenance checked (`expect`) and, given, its
    length against the latents it belongs to."""
    arr = open_store(path, expect)
    if frames is not None and arr.shape[0] != frames:
        raise PipelineError(f"action store {path} has {arr.shape[0]} frames but its latents have {frames}; "
                            "rerun the rule that writes it (snakemake --forcerun encode_actions)")
    return np.asarray(arr[:], np.int64)


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information I(a; b) / sqrt(H(a) H(b)) of two labellings of the same frames
    (NO_ACTION frames left out); 0 when either is constant."""
    a, b = np.asarray(a), np.asarray(b)
    keep = (a != NO_ACTION) & (b != NO_ACTION)
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return float("nan")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1)
    p = joint / joint.sum()
    pa, pb = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    ha, hb = -float((pa * np.log(pa)).sum()), -float((pb * np.log(pb)).sum())
    return 0.0 if ha <= 0 or hb <= 0 else mi / math.sqrt(ha * hb)


def conditioning(kind: str, paths: list, lam_path=None) -> dict:
    """What a stage conditioned on `kind` actions reads from `paths` (one store per video):
    {"kind", "n" (action ids), "expect" (the attrs every store must have), "lam_hash"}."""
    if kind not in ACTION_KINDS:
        raise PipelineError(f"dynamics.actions is {kind!r}; expected none or one of {', '.join(ACTION_KINDS)}")
    if not paths:
        raise PipelineError(f"dynamics.actions is {kind} but no action stores were given; check the rule's inputs")
    if kind == "latent":
        if lam_path is None:
            raise PipelineError("dynamics.actions is latent but no latent action model (lam.pt) was given")
        lam_hash = files.file_hash(lam_path)
        expect = {"lam_hash": lam_hash}
        n = int(open_store(paths[0], expect, scan=False).attrs["n_actions"])
        return {"kind": kind, "n": n, "expect": expect, "lam_hash": lam_hash}
    n = 0
    for p in paths:
        attrs = dict(open_store(p, scan=False).attrs)
        if not attrs.get("given"):
            raise PipelineError(f"video {attrs.get('video')} has no actions of its own (no {SIDECAR_SUFFIX} sidecar, or "
                                "a URL source) but dynamics.actions is given; add its sidecar or use dynamics.actions: latent")
        n = max(n, int(attrs["n_actions"]))
    return {"kind": kind, "n": n, "expect": {"given": True}, "lam_hash": None}



