"""`approvals`: the portfolio supervisor's verdict on every strategy's targets."""

import datetime as dt

import dagster as dg
import polars as pl

from quantlab.assets.common import StageRun, chain_asset, md_table, write
from quantlab.partitions import partition_dates
from quantlab.project import Project
from quantlab.resources import ProjectFiles, Warehouse
from quantlab.supervisor.rules import approve


def run_approvals(warehouse: Warehouse, project: Project, start: dt.date, end: dt.date) -> StageRun:
    tgt = warehouse.read_table("targets", start, end, columns=["date", "strategy", "symbol", "weight"])
    kp = warehouse.read_table(
        "kpis", start, end, where={"window": "full"}, columns=["date", "strategy", "max_dd"]
    )
    frames = [
        approve(
            tgt.filter(pl.col("strategy") == sid),
            kp.filter(pl.col("strategy") == sid),
            project.supervisor.for_strategy(spec.risk),
        )
        for sid, spec in project.strategies.items()
    ]
    out = pl.concat(frames) if frames else pl.DataFrame()
    n = write(warehouse, "approvals", out, start, end)
    summary = (
        out.group_by("strategy")
        .agg(
            pl.col("date").n_unique().alias("dates"),
            (~pl.col("approved")).sum().alias("rejected_rows"),
            (pl.col("risk_flags") != "").sum().alias("flagged_rows"),
        )
        .sort("strategy")
        if n
        else pl.DataFrame()
    )
    return StageRun(metadata={"rows": n, "summary": dg.MetadataValue.md(md_table(summary))})


@chain_asset(
    group_name="supervisor",
    deps=["targets", "kpis"],
    kinds={"duckdb", "polars"},
    description="Approved weight, flag, risk flags and reason per strategy, date and symbol.",
)
def approvals(
    context: dg.AssetExecutionContext, warehouse: Warehouse, project_files: ProjectFiles
) -> dg.MaterializeResult:
    return run_approvals(warehouse, project_files.load(), *partition_dates(context)).result()
