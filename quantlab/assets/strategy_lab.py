"""`targets`: each strategy's target weights decided at the close of each as-of date."""

import datetime as dt

import dagster as dg
import polars as pl

from quantlab.assets.common import StageRun, chain_asset, md_table, write
from quantlab.partitions import partition_dates
from quantlab.project import Project
from quantlab.resources import MarketData, ProjectFiles, Warehouse
from quantlab.strategy_lab.targets import all_targets


def run_targets(
    warehouse: Warehouse, market_data: MarketData, project: Project, start: dt.date, end: dt.date
) -> StageRun:
    """Targets of every strategy for [start, end]; fails before any write if a universe names a symbol
    the dataset does not have."""
    specs = project.strategies
    known = set(market_data.source().registry().get_column("symbol").to_list())
    unknown = {s: sorted(set(spec.universe.symbols or []) - known) for s, spec in specs.items()}
    unknown = {s: u for s, u in unknown.items() if u}
    if unknown:
        raise dg.Failure(f"universe symbols without data in dataset '{market_data.dataset}': {unknown}")
    feats = warehouse.read_table("features", start, end)
    out = all_targets(feats, specs)
    n = write(warehouse, "targets", out, start, end)
    summary = (
        out.group_by("strategy")
        .agg(
            pl.col("date").n_unique().alias("dates"),
            (pl.col("weight") != 0).sum().alias("positions"),
            pl.col("weight").abs().sum().truediv(pl.col("date").n_unique()).alias("avg_gross"),
        )
        .sort("strategy")
        if n
        else pl.DataFrame()
    )
    return StageRun(
        metadata={"rows": n, "strategies": len(specs), "summary": dg.MetadataValue.md(md_table(summary))}
    )


@chain_asset(
    group_name="strategy_lab",
    deps=["features", "labels"],
    kinds={"duckdb", "polars"},
    description="Target weights (score, side) per strategy, date and symbol from strategies/*.yaml.",
)
def targets(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    market_data: MarketData,
    project_files: ProjectFiles,
) -> dg.MaterializeResult:
    return run_targets(warehouse, market_data, project_files.load(), *partition_dates(context)).result()
