"""Incremental ingest helpers (pure polars): continuing stored adjusted history, the symbol registry.

Continuity: adjusted prices are only defined up to a constant per symbol. A source re-bases them when a
corporate action arrives (a back-adjusted vendor series rescales its whole history; a forward-adjusted one
restarts at 1 on the first bar it returns). The stored history is never rewritten; instead the new bars are
rescaled so that they continue it: for each symbol whose last stored bar (before the range) is also in
the incoming frame, k = stored adj_factor / incoming adj_factor on that anchor bar, and open, high, low,
close and adj_factor of the new bars are multiplied by k. Returns computed across the boundary are then
the source's own adjusted returns (splits and dividends included), and a re-run gives the same rows.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

_SCALED = ("open", "high", "low", "close", "adj_factor")


def continue_history(
    incoming: pl.DataFrame, previous: pl.DataFrame | None, start: dt.date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The bars of `incoming` dated from `start` on, rescaled to continue `previous`; and the rescalings.

    `previous`: each symbol's last stored bar before `start` (symbol, date, adj_factor, ...). Returns
    (bars, rebased) where `rebased` lists symbol, anchor date and k for every symbol with k != 1.
    """
    bars = incoming.filter(pl.col("date") >= start)
    empty = pl.DataFrame(schema={"symbol": pl.String, "anchor": pl.Date, "k": pl.Float64})
    if previous is None or previous.is_empty():
        return bars, empty
    anchors = (
        incoming.filter(pl.col("date") < start)
        .select("symbol", "date", pl.col("adj_factor").alias("incoming_factor"))
        .join(previous.select("symbol", "date", "adj_factor"), on=["symbol", "date"], how="inner")
        .select(
            "symbol",
            pl.col("date").alias("anchor"),
            (pl.col("adj_factor") / pl.col("incoming_factor")).alias("k"),
        )
        .filter(pl.col("k") != 1.0)
        .unique("symbol", keep="last")
    )
    if anchors.is_empty():
        return bars, empty
    k = pl.col("k").fill_null(1.0)
    scaled = bars.join(anchors.select("symbol", "k"), on="symbol", how="left", maintain_order="left")
    scaled = scaled.with_columns([(pl.col(c) * k).alias(c) for c in _SCALED]).drop("k")
    return scaled, anchors.sort("symbol")


def registry_table(spans: pl.DataFrame, source_registry: pl.DataFrame) -> pl.DataFrame:
    """The `symbols` table: stored spans (symbol, first_date, last_date, bars) with the source's names.

    A symbol the source no longer lists is kept, inactive; a stored symbol without a name gets its ticker.
    """
    listed = source_registry.select("symbol", "name", "sector").unique("symbol", keep="first")
    return (
        spans.join(listed, on="symbol", how="left")
        .select(
            "symbol",
            pl.col("name").fill_null(pl.col("symbol")),
            pl.col("sector").fill_null("unknown"),
            pl.col("symbol").is_in(listed.get_column("symbol").implode()).alias("active"),
            "first_date",
            "last_date",
            pl.col("bars").cast(pl.Int64),
        )
        .sort("symbol")
    )
