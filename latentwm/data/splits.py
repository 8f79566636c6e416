"""Train / val / test splits by video, fixed by config and seed.

Assignment is a pure function of the sorted video ids, the fractions and the seed, so the
Snakefile (to build the DAG) and the `splits` rule (to record it) always agree.
"""

from __future__ import annotations

import random

from latentwm.core.errors import PipelineError


def assign_splits(videos: list[str], val: float, test: float, seed: int = 0,
                  pinned: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Videos `pinned` to a split (video id -> train | val | test: sources[].split) go there. The
    others, sorted, are shuffled with `seed`; val and test get round(fraction * n) of these n, at
    least 1 each unless a pinned video is there already. Without pins the assignment is the one
    before pins existed, and adding pinned videos moves no unpinned one."""
    videos = set(videos)
    pinned = {v: s for v, s in (pinned or {}).items() if v in videos}
    free = sorted(videos - set(pinned))
    n = len(free)
    has = set(pinned.values())
    n_val, n_test = (round(f * n) if key in has else max(1, round(f * n)) for f, key in ((val, "val"), (test, "test")))
    order = free[:]
    random.Random(seed).shuffle(order)
    out = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    for video, split in pinned.items():
        out[split].append(video)
    if not all(out.values()):
        pins = f", {len(pinned)} of them pinned," if pinned else ""
        raise PipelineError(
            f"splits: {len(videos)} video(s){pins} cannot fill train, val and test (val {len(out['val'])}, test "
            f"{len(out['test'])}, train {len(out['train'])}); "
            "add sources (or generator clips), lower splits.val / splits.test, pin a source to the empty split "
            "(sources[].split), or cut the videos into parts (sources[].parts of a path or url source; not a file "
            "with an actions sidecar)"
        )
    return {k: sorted(v) for k, v in out.items()}


def shards(splits: dict[str, list[str]], size: int) -> dict[str, list[str]]:
    """The encode jobs' shards: each split's sorted videos cut into runs of `size`, named SPLIT_000,
    SPLIT_001, ... ({"train_000": [...], "val_000": [...], ...}; an empty split has none).

    A shard never mixes splits, so a stage that reads one split depends on that split's shards
    only, and the shards of a split concatenated in name order list its videos in sorted order.
    """
    return {
        f"{split}_{k // size:03d}": videos[k : k + size]
        for split, videos in splits.items()
        for k in range(0, len(videos), size)
    }
