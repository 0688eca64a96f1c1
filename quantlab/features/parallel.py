"""Threads for large numpy computations whose rows (or columns) are independent of each other.

numpy releases the GIL inside its loops, so slices of a large matrix computed in threads use every core;
each slice gets exactly the bits it would get in one call (the computations are per row or per column).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np

__all__ = ["by_slices"]

WORKERS = min(4, os.cpu_count() or 1)
_MIN_CELLS = 1 << 20  # below this many cells a thread costs more than it saves
_MIN_WIDTH = 64  # fewest rows or columns a slice gets


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="quantlab-features")


def by_slices(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, axis: int) -> np.ndarray:
    """`f(x)` for an `f` that maps a 2-D matrix to one of the same shape and treats each slice along
    `axis` (0: rows, 1: columns) on its own; large matrices are cut into slices computed in threads."""
    parts = min(WORKERS, x.shape[axis] // _MIN_WIDTH) if x.size >= _MIN_CELLS else 1
    if parts <= 1:
        return f(x)
    edges = np.linspace(0, x.shape[axis], parts + 1).astype(int)
    index = [
        (slice(None), slice(a, b)) if axis else (slice(a, b),)
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    errors = np.geterr()  # the caller's floating-point error handling (thread-local in numpy)

    def run(i: tuple[slice, ...]) -> np.ndarray:
        with np.errstate(**errors):
            return f(x[i])

    out = np.empty(x.shape)
    for i, part in zip(index, _pool().map(run, index), strict=True):
        out[i] = part
    return out
