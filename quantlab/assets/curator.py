"""`ohlcv`: daily bars from the configured source, gated by partition-aware quality checks."""

import datetime as dt

import dagster as dg
import polars as pl

from quantlab.assets.common import StageRun, chain_asset, md_table, write
from quantlab.calendar import sessions
from quantlab.curator.quality import RULES, quality_issues
from quantlab.curator.sources import Source
from quantlab.partitions import TRADING_DAYS, partition_dates
from quantlab.resources import MarketData, Warehouse

QUALITY_CHECKS = [
    dg.AssetCheckSpec(
        name=rule,
        asset="ohlcv",
        partitions_def=TRADING_DAYS,
        blocking=severity == "blocking",
        description=f"Quality rule `{rule}` ({severity}); failing rows in the metadata and `quality_issues`.",
    )
    for rule, severity in RULES.items()
]


def run_ohlcv(warehouse: Warehouse, source: Source, start: dt.date, end: dt.date) -> StageRun:
    """Load the source's bars for [start, end], run the quality rules, write `ohlcv` and `quality_issues`."""
    bars = source.bars(start, end)
    first_dates = dict(bars.group_by("symbol").agg(pl.col("date").min()).iter_rows())
    if warehouse.has_table("ohlcv"):
        earlier = warehouse.read(
            "SELECT symbol, min(date) FROM ohlcv WHERE date < ? GROUP BY symbol", [start]
        )
        first_dates.update(dict(earlier.iter_rows()))
    previous = None
    if warehouse.has_table("ohlcv"):
        previous = warehouse.read(
            "SELECT symbol, arg_max(close, date) AS close, arg_max(close_raw, date) AS close_raw, "
            "arg_max(adj_factor, date) AS adj_factor FROM ohlcv WHERE date < ? GROUP BY symbol",
            [start],
        )
    issues = quality_issues(bars, sessions(start, end), first_dates, previous)
    n = write(warehouse, "ohlcv", bars, start, end)
    write(warehouse, "quality_issues", issues, start, end)
    results = []
    for rule, severity in RULES.items():
        failing = issues.filter(pl.col("rule") == rule)
        results.append(
            dg.AssetCheckResult(
                check_name=rule,
                passed=failing.is_empty(),
                severity=dg.AssetCheckSeverity.ERROR
                if severity == "blocking"
                else dg.AssetCheckSeverity.WARN,
                metadata={
                    "failing_rows": failing.height,
                    "rows": dg.MetadataValue.md(md_table(failing.select("symbol", "bar_date", "detail"))),
                },
            )
        )
    return StageRun(
        metadata={
            "dataset": source.name,
            "rows": n,
            "symbols": bars.get_column("symbol").n_unique(),
            "first_date": str(start),
            "last_date": str(end),
            "quality_issues": issues.height,
            "preview": dg.MetadataValue.md(md_table(bars.tail(10))),
        },
        checks=results,
    )


@chain_asset(
    group_name="curator",
    check_specs=QUALITY_CHECKS,
    kinds={"duckdb", "polars"},
    description="Daily OHLCV (adjusted open/high/low/close, raw close, factor, volume) for each as-of date.",
)
def ohlcv(
    context: dg.AssetExecutionContext, warehouse: Warehouse, market_data: MarketData
) -> dg.MaterializeResult:
    return run_ohlcv(warehouse, market_data.source(), *partition_dates(context)).result()
