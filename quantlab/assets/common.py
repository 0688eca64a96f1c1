"""Helpers shared by the asset modules: stage runs, schema-checked writes, markdown tables, the pool.

Each asset module has a `run_<stage>(warehouse, start, end, ...)` function doing the stage's work for a
date range and returning a `StageRun`; the asset is a thin wrapper turning it into a `MaterializeResult`,
and the `history` job (quantlab.jobs) calls the same functions as ops.
"""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl

from quantlab.partitions import TRADING_DAYS
from quantlab.resources.warehouse import SchemaViolation, Warehouse

POOL = "warehouse"  # every step that opens the DuckDB file; dagster.yaml limits the pool to 1


def chain_asset(**kwargs: Any) -> Any:
    """`dg.asset` for a chain stage: trading-day partitions, ranges in one run, the warehouse pool."""
    return dg.asset(
        partitions_def=TRADING_DAYS, backfill_policy=dg.BackfillPolicy.single_run(), pool=POOL, **kwargs
    )


@dataclass
class StageRun:
    """What a stage run produced: materialization metadata and the check results it evaluated."""

    metadata: dict[str, Any]
    checks: list[dg.AssetCheckResult] = field(default_factory=list)

    def result(self) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=self.metadata, check_results=self.checks or None)

    @property
    def blocking_failures(self) -> list[str]:
        """Names of failed checks with ERROR severity (the blocking ones)."""
        return [
            c.check_name or ""
            for c in self.checks
            if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR
        ]


def md_table(df: pl.DataFrame, max_rows: int = 30) -> str:
    """A markdown table of the first `max_rows` rows (floats rounded)."""
    if df.is_empty():
        return "_no rows_"
    shown = df.head(max_rows).with_columns(pl.col(pl.Float64).round(4))
    head = "| " + " | ".join(shown.columns) + " |"
    sep = "|" + "---|" * len(shown.columns)
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in shown.iter_rows()]
    more = [f"\n_{df.height - max_rows} more rows_"] if df.height > max_rows else []
    return "\n".join([head, sep, *body, *more])


def write(
    warehouse: Warehouse,
    table: str,
    df: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    scope: Mapping[str, str] | None = None,
) -> int:
    """`Warehouse.replace`, turning a schema violation into a step failure with the failing rows."""
    try:
        return warehouse.replace(table, df, start, end, scope=scope)
    except SchemaViolation as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"failure_cases": dg.MetadataValue.md(md_table(exc.failure_cases)), "table": table},
        ) from None
