"""Quality rules on OHLCV bars: each returns the failing rows (pure polars, no Dagster).

Rules, with the severity the gate gives them:
- `duplicates` (blocking): more than one bar for a (symbol, date).
- `non_positive_price` (blocking): an open/high/low/close that is missing, NaN or <= 0.
- `ohlc_consistency` (blocking): high < max(open, close), low > min(open, close) or high < low (beyond a
  relative rounding tolerance of 1e-9: adjusted prices are products of rounded numbers).
- `missing_session` (blocking): a symbol listed before a session (first bar on or before it) has no bar
  on that NYSE session; this is also how a source that stopped updating is caught.
- `non_positive_volume` (warn): volume missing or <= 0.
- `extreme_jump` (warn): the adjusted close moved more than `JUMP_THRESHOLD` (40%) from the symbol's
  previous bar. Adjusted prices already absorb splits and dividends, so a jump here is not explained by a
  corporate action the adjustment factor records; the raw move and both factors are in the detail.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

RULES: dict[str, str] = {
    "duplicates": "blocking",
    "non_positive_price": "blocking",
    "ohlc_consistency": "blocking",
    "missing_session": "blocking",
    "non_positive_volume": "warn",
    "extreme_jump": "warn",
}
JUMP_THRESHOLD = 0.4

_PRICES = ["open", "high", "low", "close"]
REL_TOL = 1e-9


def _issues(df: pl.DataFrame, rule: str, detail: pl.Expr) -> pl.DataFrame:
    return df.select(
        pl.col("date"),
        pl.lit(rule).alias("rule"),
        pl.lit(RULES[rule]).alias("severity"),
        pl.col("symbol"),
        pl.col("date").alias("bar_date"),
        detail.alias("detail"),
    )


def quality_issues(
    bars: pl.DataFrame,
    sessions: list[dt.date],
    first_dates: dict[str, dt.date],
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """All quality issues of `bars` (the partition range) in the `QualityIssues` table layout.

    `sessions` are the NYSE sessions of the range; `first_dates` maps each known symbol to its first bar
    date (from the warehouse and the new bars), which decides from when a session is expected; `previous`
    holds each symbol's last stored bar before the range (symbol, close, close_raw, adj_factor), so the
    first bar of the range is checked for a jump too.
    """
    dup = bars.group_by("symbol", "date").agg(pl.len().alias("n")).filter(pl.col("n") > 1)
    dups = _issues(dup, "duplicates", pl.format("{} bars for this symbol and date", pl.col("n")))

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

    expected = (
        pl.DataFrame(
            {"symbol": list(first_dates), "first": list(first_dates.values())},
            schema={"symbol": pl.String, "first": pl.Date},
        )
        .join(pl.DataFrame({"date": sessions}, schema={"date": pl.Date}), how="cross")
        .filter(pl.col("date") >= pl.col("first"))
        .select("symbol", "date")
    )
    missing = _issues(
        expected.join(bars.select("symbol", "date").unique(), on=["symbol", "date"], how="anti"),
        "missing_session",
        pl.lit("no bar on this NYSE session"),
    )
    return pl.concat([dups, non_pos, ohlc, vol, missing, _jumps(bars, previous)]).sort(
        "date", "rule", "symbol"
    )


def _jumps(bars: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
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
    hit = seq.filter(pl.col("date").is_not_null() & (pl.col("ret").abs() > JUMP_THRESHOLD))
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
