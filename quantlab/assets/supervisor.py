"""`approvals`: the portfolio supervisor's verdict on every strategy's targets, with its audit log."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from quantlab.assets.common import StageRun, chain_asset, md_table, write
from quantlab.partitions import partition_dates
from quantlab.project import Project
from quantlab.resources import ProjectFiles, Warehouse
from quantlab.supervisor.report import approval_summary
from quantlab.supervisor.rules import supervise

_PREVIOUS_BOOK = """
WITH last AS (SELECT strategy, max(date) AS date FROM targets WHERE date < ? GROUP BY strategy)
SELECT a.strategy, a.symbol, a.approved_weight FROM approvals a JOIN last USING (strategy, date)
"""


def previous_books(warehouse: Warehouse, start: dt.date) -> pl.DataFrame:
    """Each strategy's approved book on its last target date before `start` (the turnover rule's state)."""
    if not (warehouse.has_table("approvals") and warehouse.has_table("targets")):
        return pl.DataFrame(
            schema={"strategy": pl.String, "symbol": pl.String, "approved_weight": pl.Float64}
        )
    return warehouse.read(_PREVIOUS_BOOK, [start])


def run_approvals(
    warehouse: Warehouse, project: Project, start: dt.date, end: dt.date, run_dir: Path | None = None
) -> StageRun:
    """Approve every strategy's targets of [start, end]; write `approvals` and `audit_log` (and, with
    `run_dir`, `reports/approval_summary.md`)."""
    tgt = warehouse.read_table(
        "targets", start, end, columns=["date", "strategy", "symbol", "weight", "score"]
    )
    kp = warehouse.read_table(
        "kpis", start, end, where={"window": "full"}, columns=["date", "strategy", "max_dd"]
    )
    limits = {sid: project.supervisor.for_strategy(spec.risk) for sid, spec in project.strategies.items()}
    tgt = tgt.filter(pl.col("strategy").is_in(list(limits)))
    result = supervise(tgt, kp, limits, previous=previous_books(warehouse, start))
    out = result.approvals
    n = write(warehouse, "approvals", out, start, end)
    write(warehouse, "audit_log", result.audit, start, end)
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
    meta: dict = {
        "rows": n,
        "triggers": result.audit.height,
        "summary": dg.MetadataValue.md(md_table(summary)),
    }
    if run_dir is not None:
        path = run_dir / "reports" / "approval_summary.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(approval_summary(out, result.audit, limits, start, end))
        meta["approval_summary"] = dg.MetadataValue.path(str(path))
    return StageRun(metadata=meta)


@chain_asset(
    group_name="supervisor",
    deps=["targets", "kpis"],
    kinds={"duckdb", "polars"},
    description="Approved weight, flag, risk flags and reason per strategy, date and symbol; `audit_log` rows.",
)
def approvals(
    context: dg.AssetExecutionContext, warehouse: Warehouse, project_files: ProjectFiles
) -> dg.MaterializeResult:
    run_dir = project_files.run_dir(context.run_id)
    return run_approvals(warehouse, project_files.load(), *partition_dates(context), run_dir).result()
