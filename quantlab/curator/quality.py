"""Quality rules on OHLCV bars: each returns the failing rows (pure polars, no Dagster).

Rules, with the severity the gate gives them (thresholds: `quantlab.curator.settings.QualitySettings`):
- `duplicates` (blocking): more than one bar for a (symbol, date).
- `non_positive_price` (blocking): an open/high/low/close that is missing, NaN or <= 0.
- `ohlc_consistency` (blocking): high < max(open, close), low > min(open, close) or high < low (beyond a
  relative rounding tolerance of 1e-9: adjusted prices are products of rounded numbers).
- `missing_session` (blocking): a hole: an expected symbol has no bar on an NYSE session of the range
  although it has a later bar in the range.
- `stale_data` (blocking): data currency against each as-of date d of the range: an expected symbol has no
  bar on d and its newest bar on or before d lags d by more than `max_lag_sessions` sessions. (In a day's
  own run a hole shows as stale data: the later bars are not known yet.)
- `non_positive_volume` (warn): volume missing or <= 0.
- `extreme_jump` (warn): the adjusted close moved more than `jump_threshold` (40%) from the symbol's
  previous bar. Adjusted prices already absorb splits and dividends, so a jump here is not explained by a
  corporate action the adjustment factor records; the raw move and both factors are in the detail.

"Expected" symbols are the registry's active symbols, each from its first bar on.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from quantlab.calendar import sessions_through
from quantlab.curator.settings import QualitySettings

RULES: dict[str, str] = {
    "duplicates": "blocking",
    "non_positive_price": "blocking",
    "ohlc_consistency": "blocking",
    "missing_session": "blocking",
    "stale_data": "blocking",
    "non_positive_volume": "warn",
    "extreme_jump": "warn",
}

_PRICES = ["open", "high", "low", "close"]
REL_TOL = 1e-9


def _issues(df: pl.DataFrame, rule: str, detail: pl.Expr, bar_date: str = "date") -> pl.DataFrame:
    return df.select(
        pl.col("date"),
        pl.lit(rule).alias("rule"),
        pl.lit(RULES[rule]).alias("severity"),
        pl.col("symbol"),
        pl.col(bar_date).alias("bar_date"),
        detail.alias("detail"),
    )


def quality_issues(
    bars: pl.DataFrame,
    sessions: list[dt.date],
    expected: dict[str, dt.date],
    previous: pl.DataFrame | None = None,
    settings: QualitySettings | None = None,
) -> pl.DataFrame:
    """All quality issues of `bars` (the partition range) in the `QualityIssues` table layout.

    `sessions` are the NYSE sessions of the range (the as-of dates); `expected` maps each active symbol to
    its first bar date (from the warehouse and the new bars), from which a bar is expected on every session;
    `previous` holds each symbol's last stored bar before the range (symbol, date, close, close_raw,
    adj_factor), so the first bar of the range is checked for a jump and data currency is measured from it.
    """
    settings = settings or QualitySettings()
    seq = bars.sort("symbol", "date", maintain_order=True)
    repeat = (pl.col("symbol") == pl.col("symbol").shift(1)) & (pl.col("date") == pl.col("date").shift(1))
    seq = seq.with_columns(repeat.fill_null(False).alias("_repeat"))
    dup = seq.filter("_repeat").group_by("symbol", "date").agg((pl.len() + 1).alias("n"))
    dups = _issues(dup, "duplicates", pl.format("{} bars for this symbol and date", pl.col("n")))
    known = seq.filter(~pl.col("_repeat")).select("symbol", "date")

    bad_price = pl.any_horizontal(
        [pl.col(c).is_null() | pl.col(c).is_nan() | (pl.col(c) <= 0) for c in _PRICES]
    )
    non_pos = _issues(
        bars.filter(bad_price),
        "non_positive_price",
        pl.format("open={} high={} low={} close={}", *[pl.col(c) for c in _PRICES]),
    )

    hi, lo = pl.max_horizontal("open", "close"), pl.min_horizontal("open", "close")
    tol = 1.0 + REL_TOL  # adjusted prices are products of two rounded numbers: allow a rounding error
    ohlc_bad = (
        (pl.col("high") * tol < hi) | (pl.col("low") > lo * tol) | (pl.col("high") * tol < pl.col("low"))
    )
    ohlc = _issues(
        bars.filter(~bad_price & ohlc_bad),
        "ohlc_consistency",
        pl.format("open={} high={} low={} close={}", *[pl.col(c) for c in _PRICES]),
    )

    vol = _issues(
        bars.filter(pl.col("volume").is_null() | (pl.col("volume") <= 0)),
        "non_positive_volume",
        pl.format("volume={}", pl.col("volume")),
    )
    return pl.concat(
        [
            dups,
            non_pos,
            ohlc,
            vol,
            *_currency(known, sessions, expected, previous, settings.max_lag_sessions),
            _jumps(bars, previous, settings.jump_threshold),
        ]
    ).sort("date", "rule", "symbol")


def _currency(
    known: pl.DataFrame,
    sessions: list[dt.date],
    expected: dict[str, dt.date],
    previous: pl.DataFrame | None,
    max_lag: int,
) -> list[pl.DataFrame]:
    """`missing_session` (holes) and `stale_data` (a newest bar older than the tolerated lag).

    `known`: the distinct (symbol, date) pairs of the bars. Only symbols with fewer bars on the range's
    sessions than expected are expanded to (symbol, session) pairs, so clean data costs one group-by.
    """
    days = pl.DataFrame({"date": sessions}, schema={"date": pl.Date})
    firsts = pl.DataFrame(
        {"symbol": list(expected), "first": list(expected.values())},
        schema={"symbol": pl.String, "first": pl.Date},
    )
    due = len(sessions) - np.searchsorted(
        np.array(sessions, dtype="datetime64[D]"), firsts.get_column("first").to_numpy(), side="left"
    )
    present = (
        known.filter(pl.col("date").is_in(days.get_column("date").implode()))
        .group_by("symbol")
        .agg(pl.len().alias("present"))
    )
    short = (
        firsts.with_columns(due=pl.Series(due, dtype=pl.Int64))
        .join(present, on="symbol", how="left")
        .filter(pl.col("present").fill_null(0) < pl.col("due"))
        .select("symbol", "first")
    )
    known = known.join(short.select("symbol"), on="symbol", how="semi")
    gaps = (
        short.join(days, how="cross")
        .filter(pl.col("date") >= pl.col("first"))
        .join(known, on=["symbol", "date"], how="anti")
        .join(known.group_by("symbol").agg(pl.col("date").max().alias("newest")), on="symbol", how="left")
    )
    holes = gaps.filter(pl.col("newest") > pl.col("date"))
    missing = _issues(holes, "missing_session", pl.lit("no bar on this NYSE session (later bars exist)"))

    marks = known
    if previous is not None and previous.height:
        marks = pl.concat([previous.select("symbol", "date"), known]).join(short, on="symbol", how="semi")
    tail = (
        gaps.filter(pl.col("newest").is_null() | (pl.col("newest") < pl.col("date")))
        .sort("symbol", "date")
        .join_asof(
            marks.sort("symbol", "date").rename({"date": "bar_date"}),
            left_on="date",
            right_on="bar_date",
            by="symbol",
            strategy="backward",
            check_sortedness=False,  # both sides sorted by (symbol, date) just above
        )
        .with_columns(pl.col("bar_date").fill_null(pl.col("first")))
    )
    lag = sessions_through(tail.get_column("date")) - sessions_through(tail.get_column("bar_date"))
    stale = tail.with_columns(lag=pl.Series(lag, dtype=pl.Int64)).filter(pl.col("lag") > max_lag)
    stale_rows = _issues(
        stale,
        "stale_data",
        pl.format(
            "newest bar is {} session(s) behind the as-of date (max lag {})", pl.col("lag"), pl.lit(max_lag)
        ),
        bar_date="bar_date",
    )
    return [missing, stale_rows]


def _jumps(bars: pl.DataFrame, previous: pl.DataFrame | None, threshold: float) -> pl.DataFrame:
    cols = ["symbol", "date", "close", "close_raw", "adj_factor"]
    frames = [bars.select(cols)]
    if previous is not None and previous.height:
        frames.insert(
            0, previous.select(pl.col("symbol"), pl.lit(None, dtype=pl.Date).alias("date"), *cols[2:])
        )
    seq = pl.concat(frames).sort("symbol", "date", nulls_last=False)
    prev = [pl.col(c).shift(1).over("symbol") for c in ("close", "close_raw", "adj_factor")]
    seq = seq.with_columns(
        ret=pl.col("close") / prev[0] - 1, raw=pl.col("close_raw") / prev[1] - 1, f0=prev[2]
    )
    hit = seq.filter(pl.col("date").is_not_null() & (pl.col("ret").abs() > threshold))
    return _issues(
        hit,
        "extreme_jump",
        pl.format(
            "adjusted close moved {}% (raw {}%, adjustment factor {} -> {})",
            (pl.col("ret") * 100).round(1),
            (pl.col("raw") * 100).round(1),
            pl.col("f0").round(6),
            pl.col("adj_factor").round(6),
        ),
    )
