"""Trailing-window mean and sample variance along the rows of a matrix, each value from its window alone.

The rows are cut into blocks of w. A window of w rows ending at row j starts at s = j - w + 1 and is the
tail of s's block (rows s .. e, e the block's last row) plus the head of the next block (rows e + 1 .. j,
empty when j = e). Both partial sums are running sums within a block (a suffix sum and a prefix sum), of
deviations from the reference x[e], a value inside the window:

    S = sum_{i in window} (x_i - x[e]),   Q = sum_{i in window} (x_i - x[e])**2,
    mean = x[e] + S / w,                  var = (Q - S**2 / w) / (w - 1)   (ddof = 1, clipped at 0).

So a value depends only on its window's values and on the row's place in its block (the symbol's row
count): the data after it never enters (no look-ahead, bit for bit), a NaN affects exactly the windows
that hold it, no rounding error carries over from earlier history (as an incremental sum's would), and
a flat window has exactly its value as mean and exactly 0 as variance. The running sums loop over the w
offsets of a block, each step vectorized over all blocks and columns; a large matrix is computed in column
slices in threads (`quantlab.features.parallel`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quantlab.features.parallel import by_slices

__all__ = ["window_mean", "window_var"]


def _running(x: np.ndarray, w: int, square: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """The references (one per block) and the buffers of S (and Q) for every row of `x` (n, k). A buffer
    has w - 1 more rows than the (padded) input, NaN, so that the sums of the window starting at s land on
    its last row s + w - 1: buffer[:n] is the (n, k) result, buffer[w - 1:] is in block layout."""
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
    head = xb - prev[:, None, :]
    bufs = [np.empty((w - 1 + blocks * w, k)) for _ in range(2 if square else 1)]
    tails = [b[w - 1 :].reshape(blocks, w, k) for b in bufs]
    np.subtract(xb, ref[:, None, :], out=tails[0])
    heads = [head]
    if square:
        np.multiply(tails[0], tails[0], out=tails[1])
        heads.append(head * head)
    for tail, head in zip(tails, heads, strict=True):
        for i in range(w - 2, -1, -1):  # suffix sums: rows i .. e of each block
            tail[:, i] += tail[:, i + 1]
        for i in range(1, w - 1):  # prefix sums: rows 0 .. i
            head[:, i] += head[:, i - 1]
        # the window starting at s: tail(s) + head(s + w - 1); a window ending on a block's last row has
        # an empty head
        head[:, w - 1] = 0.0
        tail.reshape(-1, k)[: n - w + 1] += head.reshape(-1, k)[w - 1 : n]
    for b in bufs:
        b[: w - 1] = np.nan
    return ref, bufs


def _mean(x: np.ndarray, w: int) -> np.ndarray:
    n, k = x.shape
    ref, (s,) = _running(x, w, square=False)
    s /= w
    s[w - 1 :].reshape(-1, w, k)[:] += ref[:, None, :]  # the reference of the window's first block
    return s[:n]


def _var(x: np.ndarray, w: int) -> np.ndarray:
    _, (s, q) = _running(x, w, square=True)
    s *= s
    s /= w
    q -= s
    q /= w - 1
    np.maximum(q, 0.0, out=q, where=~np.isnan(q))
    return q[: x.shape[0]]


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
