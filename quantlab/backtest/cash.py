"""What uninvested cash earns in a backtest: zero, a constant rate, or a risk-free series.

A series is a CSV of annualized decimal rates (`date`, `rate`). The return of session t uses the last rate
quoted strictly before t (known at the previous close: no look-ahead); sessions before the first quote
earn 0. Daily return = (1 + annual rate)^(1/252) - 1.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from quantlab.metrics import PERIODS_PER_YEAR
from quantlab.strategy_lab.spec import Cash


def daily_from_annual(rate: np.ndarray | float) -> np.ndarray:
    """(1 + rate)^(1/252) - 1."""
    return np.power(1.0 + np.asarray(rate, dtype=np.float64), 1.0 / PERIODS_PER_YEAR) - 1.0


def read_rate_series(path: str) -> pl.DataFrame:
    """The (date, rate) CSV, validated: a ValueError names the file and the problem."""
    try:
        df = pl.read_csv(path, try_parse_dates=True).select(
            pl.col("date").cast(pl.Date), pl.col("rate").cast(pl.Float64)
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ValueError(
            f"risk-free series {path}: needs columns date (YYYY-MM-DD) and rate: {exc}"
        ) from None
    if df.get_column("date").is_duplicated().any() or df.get_column("rate").is_null().any():
        raise ValueError(f"risk-free series {path}: duplicate dates or missing rates")
    return df.sort("date")


def cash_returns(cash: Cash, dates: list[dt.date] | pl.Series) -> np.ndarray | None:
    """Daily cash returns for `dates` (sessions, ascending), or None when cash earns nothing."""
    n = len(dates)
    if cash.series is not None:
        quotes = read_rate_series(cash.series)
        days = pl.DataFrame({"date": pl.Series(dates, dtype=pl.Date)})
        # strictly before t: join on the previous calendar day, backward
        joined = days.with_columns(prev=pl.col("date") - pl.duration(days=1)).join_asof(
            quotes.rename({"date": "prev"}), on="prev", strategy="backward"
        )
        return daily_from_annual(joined.get_column("rate").fill_null(0.0).to_numpy())
    if cash.annual_rate:
        return np.full(n, float(daily_from_annual(cash.annual_rate)))
    return None
