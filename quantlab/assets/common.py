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

from quantlab.markdown import md_table
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
