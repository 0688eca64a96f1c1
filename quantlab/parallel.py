"""Threads for large numpy and polars computations (both release the GIL inside their loops).

Two levels, never nested: `tasks` runs independent computations (the features of one request) in the
pool; `by_slices` cuts one large matrix whose rows (or columns) are independent into slices computed in
the pool, each slice getting exactly the bits it would get in one call. `start` runs one computation in
the pool while the caller goes on (the supervisor's audit text during its turnover rule), `prefetch`
computes the next item of a sequence while the caller works on the current one. Inside a task all of them
run serially: the pool's threads are already busy, and waiting on them from one of them could deadlock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import TypeVar

import numpy as np

__all__ = ["WORKERS", "by_slices", "prefetch", "start", "tasks"]

WORKERS = min(4, os.cpu_count() or 1)
_MIN_CELLS = 1 << 20  # below this many cells a thread costs more than it saves
_MIN_WIDTH = 64  # fewest rows or columns a slice gets
_in_task = threading.local()

T = TypeVar("T")
R = TypeVar("R")


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="quantlab")


def _in_pool(f: Callable[[T], R]) -> Callable[[T], R]:
    """`f` run in a pool thread: with the caller's floating-point error handling (numpy keeps it per
    thread), and marked as a task (no nested use of the pool)."""
    errors = np.geterr()

    def run(item: T) -> R:
        _in_task.active = True
        try:
            with np.errstate(**errors):
                return f(item)
        finally:
            _in_task.active = False

    return run


def tasks(f: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """[f(item) for item in items], computed in the pool's threads (serially from inside a task)."""
    items = list(items)
    if len(items) <= 1 or _serial():
        return [f(item) for item in items]
    return list(_pool().map(_in_pool(f), items))


def _serial() -> bool:
    return WORKERS <= 1 or getattr(_in_task, "active", False)


def start(f: Callable[[], R]) -> Future[R]:
    """`f()` started in the pool (computed at once from inside a task); `.result()` waits for it."""
    if _serial():
        done: Future[R] = Future()
        done.set_result(f())
        return done
    return _pool().submit(_in_pool(lambda _: f()), None)


def prefetch(items: Iterable[T]) -> Iterator[T]:
    """The items in order, each next one computed in the pool while the caller works on the current one
    (one ahead: an item the caller has left may be reused by the producer)."""
    it = iter(items)
    if _serial():
        yield from it
        return
    end = object()
    step = _in_pool(lambda _: next(it, end))
    future = _pool().submit(step, None)
    while (item := future.result()) is not end:
        future = _pool().submit(step, None)
        yield item


def by_slices(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, axis: int) -> np.ndarray:
    """`f(x)` for an `f` that maps a 2-D matrix to one of the same shape and treats each slice along
    `axis` (0: rows, 1: columns) on its own; large matrices are cut into slices computed in threads."""
    parts = min(WORKERS, x.shape[axis] // _MIN_WIDTH) if x.size >= _MIN_CELLS else 1
    if parts <= 1 or _serial():
        return f(x)
    edges = np.linspace(0, x.shape[axis], parts + 1).astype(int)
    index = [
        (slice(None), slice(a, b)) if axis else (slice(a, b),)
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    out = np.empty(x.shape)
    for i, part in zip(index, tasks(lambda i: f(x[i]), index), strict=True):
        out[i] = part
    return out
