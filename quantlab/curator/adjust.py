"""Corporate actions (splits, cash dividends) -> adjusted bars in the OHLCV contract (pure polars, vectorized).

Forward (total-return) adjustment. Per symbol, with bars in date order t = 1..n:

    F_1 = 1
    F_t = F_{t-1} * split_t * (1 + dividend_t / close_t)        (t > 1)

    open_t, high_t, low_t, close_t (adjusted) = raw price_t * F_t;  close_raw_t = raw close_t;  adj_factor_t = F_t

`split_t` is the split coefficient as Alpha Vantage gives it on the ex-date (2.0 for a 2:1 split, 0.5 for a
1:2 reverse split, 1.0 otherwise); `dividend_t` is the cash dividend per share on its ex-date (0.0 otherwise),
in the same share units as close_t. Then for every t > 1

    adjusted close_t / adjusted close_{t-1} = split_t * (close_t + dividend_t) / close_{t-1}

which is the total return of holding the stock over the bar (dividend reinvested at the ex-date close).

Why forward and not the usual backward adjustment: a backward-adjusted history (the vendor's "adjusted close")
is rescaled every time a new action arrives, so every stored bar would have to be rewritten. A forward factor
only grows with time: past bars keep their values. Factors are consistent within one call only (the first bar
of each symbol gets factor 1); continuing a stored history is the caller's job (rescale by the stored factor
of the overlapping bar). An action on a symbol's first bar has no previous bar to compare with and is ignored.
"""

from __future__ import annotations

import polars as pl

from quantlab.curator.contract import OHLCV_SCHEMA

RAW_SCHEMA: dict[str, type[pl.DataType]] = {
    **{k: v for k, v in OHLCV_SCHEMA.items() if k not in ("close_raw", "adj_factor")},
    "dividend": pl.Float64,
    "split": pl.Float64,
}
"""Raw (as traded) bars with their corporate actions: what `apply_actions` takes."""

MAX_SHOWN = 5


def _reject(df: pl.DataFrame, bad: pl.Expr, what: str) -> None:
    rows = df.filter(bad.fill_null(True))
    if rows.height == 0:
        return
    shown = "; ".join(
        f"{sym} on {day}: split={split!r}, dividend={div!r}, close={close!r}"
        for sym, day, split, div, close in rows.select("symbol", "date", "split", "dividend", "close")
        .head(MAX_SHOWN)
        .iter_rows()
    )
    more = f" (and {rows.height - MAX_SHOWN} more)" if rows.height > MAX_SHOWN else ""
    raise ValueError(f"invalid corporate actions ({what}): {shown}{more}")


def apply_actions(raw: pl.DataFrame) -> pl.DataFrame:
    """Adjusted bars (`OHLCV_SCHEMA`, sorted by symbol and date) from raw bars and their actions.

    `raw` has the `RAW_SCHEMA` columns (symbol, date, open, high, low, close as traded, volume, dividend,
    split); extra columns are ignored. The factor follows the forward total-return formula of the module
    docstring: F = 1 on each symbol's first bar, then F_t = F_{t-1} * split_t * (1 + dividend_t / close_t).

    Raises ValueError (naming symbol and date) for a split that is not a finite number > 0, a dividend that
    is not a finite number >= 0, or a dividend on a bar whose close is not a finite number > 0.
    """
    missing = [c for c in RAW_SCHEMA if c not in raw.columns]
    if missing:
        raise ValueError(f"apply_actions: missing column(s) {missing}; columns found: {raw.columns}")
    df = raw.select(list(RAW_SCHEMA)).cast(RAW_SCHEMA).sort("symbol", "date", maintain_order=True)

    split, dividend, close = pl.col("split"), pl.col("dividend"), pl.col("close")
    _reject(df, split.is_null() | ~split.is_finite() | (split <= 0), "split must be a finite number > 0")
    _reject(
        df, dividend.is_null() | ~dividend.is_finite() | (dividend < 0), "dividend must be finite and >= 0"
    )
    close_ok = (close.is_finite() & (close > 0)).fill_null(False)
    _reject(df, (dividend > 0) & ~close_ok, "a dividend needs a finite close > 0")

    growth = split * (1.0 + pl.when(dividend > 0).then(dividend / close).otherwise(0.0))
    growth = pl.when(pl.col("symbol").is_first_distinct()).then(1.0).otherwise(growth)
    factor = growth.cum_prod().over("symbol").alias("adj_factor")

    return (
        df.with_columns(factor)
        .select(
            "symbol",
            "date",
            (pl.col("open") * pl.col("adj_factor")).alias("open"),
            (pl.col("high") * pl.col("adj_factor")).alias("high"),
            (pl.col("low") * pl.col("adj_factor")).alias("low"),
            (close * pl.col("adj_factor")).alias("close"),
            close.alias("close_raw"),
            "adj_factor",
            "volume",
        )
        .cast(OHLCV_SCHEMA)
    )
