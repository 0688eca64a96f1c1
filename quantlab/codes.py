"""Integer codes of string columns, runs of equal rows and index ranges of row groups (no Dagster imports)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


def run_codes(values: pl.Series, keys: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """The index of each value in `keys` (-1 where absent) and the keys (default: the sorted distinct
    values). In a grouped column (runs of equal values) each run is looked up once."""
    run = values.rle_id().to_numpy()
    first = run_starts(run)
    grouped = 2 * len(first) < len(values)
    heads = values.gather(first) if grouped else values
    keys = sorted(heads.unique().to_list()) if keys is None else list(keys)
    codes = heads.cast(pl.Enum(keys), strict=False).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
    return (codes[run] if grouped else codes), keys


def run_starts(*columns: np.ndarray) -> np.ndarray:
    """The first index of each run of consecutive rows equal in every column (none for no rows)."""
    new = np.zeros(len(columns[0]), dtype=bool)
    new[:1] = True
    for c in columns:
        new[1:] |= c[1:] != c[:-1]
    return np.flatnonzero(new)


def ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The indices of the ranges [lo, hi), concatenated (a cumulative sum of steps: one array of the
    output's size)."""
    on = hi > lo
    lo, hi = lo[on], hi[on]
    out = np.ones(int((hi - lo).sum()), dtype=np.int64)
    if len(lo):
        out[0] = lo[0]
        out[np.cumsum(hi - lo)[:-1]] = lo[1:] - hi[:-1] + 1  # the jump from the previous range's end
    return np.cumsum(out, out=out)
