"""Train / val / test splits by video, fixed by config and seed.

Assignment is a pure function of the sorted video ids, the fractions and the seed, so the
Snakefile (to build the DAG) and the `splits` rule (to record it) always agree.
"""

from __future__ import annotations

import random

from latentwm.core.errors import PipelineError


def assign_splits(videos: list[str], val: float, test: float, seed: int = 0) -> dict[str, list[str]]:
    """Shuffle the sorted ids with `seed`; val and test get round(fraction * n), at least 1 each."""
    videos = sorted(set(videos))
    n = len(videos)
    n_val, n_test = max(1, round(val * n)), max(1, round(test * n))
    if n - n_val - n_test < 1:
        raise PipelineError(
            f"splits: {n} video(s) cannot fill train, val and test (val {n_val}, test {n_test}); "
            "add sources (or generator clips), lower splits.val / splits.test, or cut the videos into parts "
            "(sources[].parts of a path or url source; not a file with an actions sidecar)"
        )
    order = videos[:]
    random.Random(seed).shuffle(order)
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


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
