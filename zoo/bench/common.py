"""What the benchmarks share: the integer lists their options take, and timing runs interleaved."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from zoo.errors import ZooError


def int_list(text: str, key: str) -> list[int]:
    """'1,32' -> [1, 32]: a comma-separated list of integers >= 1 (one-line error otherwise)."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ZooError(f"{key}={text!r} must be a comma-separated list of integers >= 1, e.g. {key}=1,32")
    return values


def interleaved(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, after one warm-up each, interleaved so a change in load hits all alike."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(t)) for name, t in times.items()}
