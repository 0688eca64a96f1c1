"""`features` and `labels`: the feature store, computed from `ohlcv` with a warm-up window."""

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import polars as pl

from quantlab.assets.common import StageRun, chain_asset, md_table, write
from quantlab.calendar import shift_sessions
from quantlab.features.labels import MAX_HORIZON, compute_labels
from quantlab.features.library import FEATURE_NAMES, compute_features, feature_set_version
from quantlab.features.profile import feature_profile
from quantlab.partitions import partition_dates
from quantlab.resources import ProjectFiles, Warehouse

PROFILE_FILE = "feature_profile.md"


def run_features(warehouse: Warehouse, start: dt.date, end: dt.date, run_dir: Path | None = None) -> StageRun:
    """Features for [start, end], computed over every bar up to `end`.

    A window's sums are split at blocks counted from the symbol's first bar (quantlab.features.windows), so
    their last bits depend on where the computation starts; starting at the beginning of the stored history
    makes a value at t identical whichever range or day it is computed in (a ranged run equals day-by-day
    runs exactly). Only bars up to t enter it.

    With `run_dir`, also writes `reports/feature_profile.md` there: the profile of the rows written
    (quantlab.features.profile: missing rates, moments, first valid dates, drift, correlation clusters).
    """
    bars = warehouse.read_table("ohlcv", end=end)
    version = feature_set_version()
    out = (
        compute_features(bars)
        .filter(pl.col("date").is_between(start, end))
        .with_columns(feature_set=pl.lit(version))
    )
    n = write(warehouse, "features", out, start, end)
    coverage = (
        out.select([pl.col(f).is_not_null().mean().alias(f) for f in FEATURE_NAMES]) if n else pl.DataFrame()
    )
    metadata = {
        "rows": n,
        "feature_set": version,
        "features": len(FEATURE_NAMES),
        "coverage": dg.MetadataValue.md(
            md_table(
                coverage.transpose(include_header=True, column_names=["non_null"]),
                max_rows=len(FEATURE_NAMES),
            )
            if n
            else "_no rows_"
        ),
    }
    if run_dir is not None:
        title = f"Feature profile {start} to {end} (feature set {version})"
        path = _write_atomic(
            run_dir / "reports" / PROFILE_FILE, feature_profile(out, FEATURE_NAMES, title=title)
        )
        metadata["feature_profile"] = dg.MetadataValue.path(str(path))
    return StageRun(metadata=metadata)


def _write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


@chain_asset(
    group_name="features",
    deps=["ohlcv"],
    kinds={"duckdb", "polars"},
    description="Standard features per symbol and date; a value at t uses only bars up to t.",
)
def features(
    context: dg.AssetExecutionContext, warehouse: Warehouse, project_files: ProjectFiles
) -> dg.MaterializeResult:
    run_dir = project_files.run_dir(context.run_id)
    return run_features(warehouse, *partition_dates(context), run_dir).result()


def run_labels(warehouse: Warehouse, start: dt.date, end: dt.date) -> StageRun:
    """Labels that become known in [start, end] (decision date + horizon), from the bars they span."""
    bars = warehouse.read_table("ohlcv", shift_sessions(start, -(MAX_HORIZON + 1)), end)
    out = (
        compute_labels(bars)
        .filter(pl.col("asof_date").is_between(start, end))
        .with_columns(pl.col("label").cast(pl.String))
    )
    n = write(warehouse, "labels", out, start, end)
    summary = (
        out.group_by("label").agg(pl.len().alias("rows"), pl.col("value").mean().alias("mean")).sort("label")
    )
    return StageRun(metadata={"rows": n, "labels": dg.MetadataValue.md(md_table(summary))})


@chain_asset(
    group_name="features",
    deps=["ohlcv"],
    kinds={"duckdb", "polars"},
    description="Forward labels, partitioned by the date they become known (decision date + horizon).",
)
def labels(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    return run_labels(warehouse, *partition_dates(context)).result()
