"""Shared by the benchmarks (run as `python bench/<name>.py`, so this folder is on sys.path)."""

import time


def best_time(fn, repeats: int) -> float:
    """The fastest of `repeats` timed calls of fn(), in seconds (the least disturbed by load)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
