"""Integer codes of string columns (no Dagster imports)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


def run_codes(values: pl.Series, keys: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """The index of each value in `keys` (-1 where absent) and the keys (default: the sorted distinct
    values). Each run of equal consecutive values is looked up once, so grouped columns are cheap."""
    run = values.rle_id().to_numpy()
    heads = values.gather(np.flatnonzero(np.diff(run, prepend=-1)))
    keys = sorted(heads.unique().to_list()) if keys is None else list(keys)
    codes = heads.cast(pl.Enum(keys), strict=False).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
    return codes[run], keys
