"""The OHLCV contract every source returns and the `ohlcv` table stores: column order and polars dtypes.

open/high/low/close are split- and dividend-adjusted; close_raw is the traded close; adj_factor is
close / close_raw; volume is as traded. `quantlab.schemas` builds the table's pandera schema from this.
"""

import polars as pl

OHLCV_SCHEMA: dict[str, type[pl.DataType]] = {
    "symbol": pl.String,
    "date": pl.Date,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "close_raw": pl.Float64,
    "adj_factor": pl.Float64,
    "volume": pl.Int64,
}
OHLCV_COLUMNS: tuple[str, ...] = tuple(OHLCV_SCHEMA)
