"""Trailing-window mean and sample variance along the rows of a matrix, each value from its window alone.

The rows are cut into blocks of w. A window of w rows ending at row j starts at s = j - w + 1 and is the
tail of s's block (rows s .. e, e the block's last row) plus the head of the next block (rows e + 1 .. j,
empty when j = e). Both partial sums are running sums within a block (a suffix sum and a prefix sum):

    mean = sum_{i in window} x_i / w,
    var = (Q - S**2 / w) / (w - 1)   (ddof = 1, clipped at 0),
    with S = sum_{i in window} (x_i - x[e]), Q = sum_{i in window} (x_i - x[e])**2,

the variance's sums taken about the reference x[e], a value inside the window, so that they do not cancel
catastrophically when the mean is large against the spread (prices).

So a value depends only on its window's values and on the row's place in its block (the symbol's row
count): the data after it never enters (no look-ahead, bit for bit), a NaN affects exactly the windows
that hold it, no rounding error carries over from earlier history (as an incremental sum's would), and
a flat window has a variance of exactly 0. The running sums loop over the w offsets of a block, each step
vectorized over all blocks and columns (one pass over the data per sum); a large matrix is computed in
column slices in threads (`quantlab.parallel`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quantlab.parallel import by_slices

__all__ = ["window_mean", "window_std", "window_var"]


def _running(x: np.ndarray, w: int, centered: bool) -> list[np.ndarray]:
    """Window sums for every row of `x` (n, k): [S] of the values, or [S, Q] of the deviations from the
    window's reference (`centered`). Each buffer has w - 1 more rows than the (padded) input, NaN, so that
    the sums of the window starting at s land on its last row s + w - 1: buffer[:n] is the (n, k) result.
    The sums are accumulated in place in these buffers (the heads in one running (blocks, k) sum): fresh
    memory is the dearest part of the computation."""
    n, k = x.shape
    blocks = -(-n // w)
    if blocks * w != n:
        padded = np.full((blocks * w, k), np.nan)
        padded[:n] = x
        x = padded
    xb = x.reshape(blocks, w, k)
    ref = xb[:, -1, :]
    prev = np.empty_like(ref)  # the reference of a block's head: the previous block's last value
    prev[0] = np.nan  # windows ending in block 0 are warm-up
    prev[1:] = ref[:-1]
    bufs = [np.empty((w - 1 + blocks * w, k)) for _ in range(2 if centered else 1)]
    tails = [b[w - 1 :].reshape(blocks, w, k) for b in bufs]  # [b, i]: the window starting at b * w + i
    heads = [np.zeros((blocks, k)) for _ in bufs]  # running prefix sums of each block
    d, d2 = np.empty((blocks, k)), np.empty((blocks, k))

    def terms(i: int, base: np.ndarray) -> list[np.ndarray]:
        """The values of offset i of every block (centered: their deviations from `base`, and squares)."""
        if not centered:
            return [xb[:, i]]
        np.subtract(xb[:, i], base, out=d)
        return [d, np.multiply(d, d, out=d2)]

    for i in range(w - 1, -1, -1):  # tails: suffix sums, rows i .. e of each block
        for tail, term in zip(tails, terms(i, ref), strict=True):
            if i == w - 1:
                tail[:, i] = term
            else:
                np.add(tail[:, i + 1], term, out=tail[:, i])
    for i in range(w - 1):  # heads: the window starting at offset i + 1 ends at offset i of the next block
        for tail, head, term in zip(tails, heads, terms(i, prev), strict=True):
            head += term
            tail[:-1, i + 1] += head[1:]
    for b in bufs:
        b[: w - 1] = np.nan
    return bufs


def _mean(x: np.ndarray, w: int) -> np.ndarray:
    (s,) = _running(x, w, centered=False)
    s /= w
    return s[: x.shape[0]]


def _var(x: np.ndarray, w: int) -> np.ndarray:
    s, q = _running(x, w, centered=True)
    s *= s
    s /= w
    q -= s
    q /= w - 1
    np.maximum(q, 0.0, out=q)  # NaN stays NaN
    return q[: x.shape[0]]


def _std(x: np.ndarray, w: int) -> np.ndarray:
    v = _var(x, w)
    return np.sqrt(v, out=v)


def _window(f: Callable[[np.ndarray, int], np.ndarray], x: np.ndarray, w: int) -> np.ndarray:
    if x.shape[0] < w:
        return np.full(x.shape, np.nan)
    return by_slices(lambda part: f(part, w), x, axis=1)  # columns are independent


def window_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean of the last `w` rows (current included) for every row of `x` (n, k); NaN on the first w - 1
    rows and wherever the window holds a NaN."""
    return _window(_mean, x, w)


def window_var(x: np.ndarray, w: int) -> np.ndarray:
    """Sample variance (ddof=1) of the last `w` rows, like `window_mean`; exactly 0 on a flat window."""
    return _window(_var, x, w)


def window_std(x: np.ndarray, w: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of the last `w` rows, the root of `window_var`."""
    return _window(_std, x, w)
