"""`ohlcv`: daily bars from the configured source, gated by partition-aware quality checks."""

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import polars as pl

from quantlab.assets.common import StageRun, chain_asset, md_table, write
from quantlab.calendar import sessions
from quantlab.curator.anomaly import AnomalySettings, history_start, score_bars, top_anomalies
from quantlab.curator.ingest import continue_history, registry_table
from quantlab.curator.quality import RULES, quality_issues
from quantlab.curator.report import quality_report
from quantlab.curator.settings import QualitySettings
from quantlab.curator.sources import Source
from quantlab.partitions import TRADING_DAYS, partition_dates
from quantlab.resources import MarketData, ProjectFiles, Warehouse
from quantlab.resources.warehouse import SchemaViolation, validate

SCHEMA_CHECK = "schema"
CHECKS: dict[str, str] = {SCHEMA_CHECK: "blocking", **RULES}

QUALITY_CHECKS = [
    dg.AssetCheckSpec(
        name=rule,
        asset="ohlcv",
        partitions_def=TRADING_DAYS,
        blocking=severity == "blocking",
        description=(
            "The bars match the OHLCV table contract (columns, types, keys); on a violation nothing is written."
            if rule == SCHEMA_CHECK
            else f"Quality rule `{rule}` ({severity}); failing rows in the metadata and `quality_issues`."
        ),
    )
    for rule, severity in CHECKS.items()
]
_ANCHOR_DAYS = 10  # calendar days before the range the source is asked for, to continue stored history


def _severity(rule: str) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if CHECKS[rule] == "blocking" else dg.AssetCheckSeverity.WARN


def _schema_failure(source: Source, exc: SchemaViolation, start: dt.date, end: dt.date) -> StageRun:
    """Nothing written: the schema check fails (blocking) and the rules are reported as not evaluated."""
    cases = exc.failure_cases.select(
        [c for c in ("column", "check", "index", "failure_case") if c in exc.failure_cases.columns]
    )
    checks = [
        dg.AssetCheckResult(
            check_name=SCHEMA_CHECK,
            passed=False,
            severity=_severity(SCHEMA_CHECK),
            metadata={
                "failing_rows": cases.height,
                "rows": dg.MetadataValue.md(md_table(cases.cast(pl.String))),
                "error": str(exc),
            },
        ),
        *[
            dg.AssetCheckResult(
                check_name=rule,
                passed=False,
                severity=_severity(rule),
                metadata={"not_evaluated": "the bars broke the table schema; nothing was written"},
            )
            for rule in RULES
        ],
    ]
    metadata = {
        "dataset": source.name,
        "rows": 0,
        "first_date": str(start),
        "last_date": str(end),
        "error": str(exc),
    }
    return StageRun(metadata=metadata, checks=checks)


def run_ohlcv(
    warehouse: Warehouse,
    source: Source,
    start: dt.date,
    end: dt.date,
    settings: QualitySettings | None = None,
    run_dir: Path | None = None,
) -> StageRun:
    """Load the source's bars for [start, end], gate them, write `ohlcv`, `quality_issues` and `symbols`.

    Incremental: only the range (plus a few days before it, to continue the stored adjusted history across a
    corporate action the source re-based) is asked from the source. With `run_dir`, writes
    `reports/quality_report.md`.
    """
    settings = settings or QualitySettings()
    stored = warehouse.has_table("ohlcv")
    previous = None
    if stored:
        previous = warehouse.read(
            "SELECT symbol, max(date) AS date, arg_max(close, date) AS close, arg_max(close_raw, date) AS close_raw, "
            "arg_max(adj_factor, date) AS adj_factor FROM ohlcv WHERE date < ? GROUP BY symbol",
            [start],
        )
    began = time.perf_counter()
    incoming = source.bars(start - dt.timedelta(days=_ANCHOR_DAYS), end)
    fetch_s = time.perf_counter() - began
    bars, rebased = continue_history(incoming, previous, start)
    try:
        validate("ohlcv", bars)
    except SchemaViolation as exc:
        return _schema_failure(source, exc, start, end)

    source_registry = source.registry()
    firsts = bars.group_by("symbol").agg(pl.col("date").min())
    if stored:
        earlier = warehouse.read(
            "SELECT symbol, min(date) AS date FROM ohlcv WHERE date < ? GROUP BY symbol", [start]
        )
        firsts = pl.concat([earlier, firsts]).group_by("symbol").agg(pl.col("date").min())
    active = set(source_registry.get_column("symbol").to_list()) | set(bars.get_column("symbol").unique())
    expected = {s: d for s, d in firsts.iter_rows() if s in active}
    days = sessions(start, end)
    issues = quality_issues(bars, days, expected, previous, settings)

    n = write(warehouse, "ohlcv", bars, start, end)
    write(warehouse, "quality_issues", issues, start, end)
    spans = warehouse.read(
        "SELECT symbol, min(date) AS first_date, max(date) AS last_date, count(*) AS bars FROM ohlcv GROUP BY symbol"
    )
    registry = registry_table(spans, source_registry)
    warehouse.replace_all("symbols", registry)

    checks = [
        dg.AssetCheckResult(
            check_name=SCHEMA_CHECK,
            passed=True,
            severity=_severity(SCHEMA_CHECK),
            metadata={"rows": bars.height, "columns": ", ".join(bars.columns)},
        )
    ]
    for rule in RULES:
        failing = issues.filter(pl.col("rule") == rule)
        checks.append(
            dg.AssetCheckResult(
                check_name=rule,
                passed=failing.is_empty(),
                severity=_severity(rule),
                metadata={
                    "failing_rows": failing.height,
                    "rows": dg.MetadataValue.md(
                        md_table(failing.select("date", "symbol", "bar_date", "detail"))
                    ),
                },
            )
        )
    report = quality_report(bars, issues, days, expected, source.name, fetch_s, rebased)
    metadata: dict = {
        "dataset": source.name,
        "rows": n,
        "symbols": bars.get_column("symbol").n_unique(),
        "first_date": str(start),
        "last_date": str(end),
        "quality_issues": issues.height,
        "coverage_pct": report.coverage_pct,
        "fetch_seconds": round(fetch_s, 3),
        "rebased_symbols": rebased.height,
        "registry": dg.MetadataValue.md(md_table(registry)),
        "preview": dg.MetadataValue.md(md_table(bars.tail(10))),
    }
    if run_dir is not None:
        path = run_dir / "reports" / "quality_report.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.markdown)
        metadata["quality_report"] = dg.MetadataValue.path(str(path))
    return StageRun(metadata=metadata, checks=checks)


@chain_asset(
    group_name="curator",
    check_specs=QUALITY_CHECKS,
    kinds={"duckdb", "polars"},
    description="Daily OHLCV (adjusted open/high/low/close, raw close, factor, volume) for each as-of date.",
)
def ohlcv(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    market_data: MarketData,
    project_files: ProjectFiles,
) -> dg.MaterializeResult:
    project = project_files.load()
    return run_ohlcv(
        warehouse,
        market_data.source(),
        *partition_dates(context),
        settings=project.curator.quality,
        run_dir=project_files.run_dir(context.run_id),
    ).result()


ANOMALY_CHECK = "anomalies"


def run_anomaly_scores(
    warehouse: Warehouse, settings: AnomalySettings, start: dt.date, end: dt.date
) -> StageRun:
    """Score every stored bar of [start, end] with the monthly IsolationForest models; write `anomaly_scores`.

    The check warns (never blocks) when a bar scores at or above the threshold, listing the top ones.
    """
    bars = warehouse.read_table("ohlcv", history_start(start, settings), end)
    scores = score_bars(bars, start, end, settings)
    n = write(warehouse, "anomaly_scores", scores, start, end)
    top = top_anomalies(scores, settings)
    flagged = scores.filter(pl.col("score") >= settings.threshold).height
    scored = scores.get_column("score").drop_nulls()
    table = dg.MetadataValue.md(md_table(top))
    check = dg.AssetCheckResult(
        check_name=ANOMALY_CHECK,
        passed=flagged == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"threshold": settings.threshold, "anomalies": flagged, "top": table},
    )
    metadata = {
        "rows": n,
        "scored": scored.len(),
        "max_score": float(scored.max()) if scored.len() else None,
        "anomalies": flagged,
        "threshold": settings.threshold,
        "models": scores.get_column("model_date").drop_nulls().n_unique(),
        "top_anomalies": table,
    }
    return StageRun(metadata={k: v for k, v in metadata.items() if v is not None}, checks=[check])


@chain_asset(
    group_name="curator",
    deps=[ohlcv],
    check_specs=[
        dg.AssetCheckSpec(
            name=ANOMALY_CHECK,
            asset="anomaly_scores",
            partitions_def=TRADING_DAYS,
            description="Bars the IsolationForest scores at or above the threshold (curator.yaml), for review.",
        )
    ],
    kinds={"duckdb", "scikit-learn"},
    description="Anomaly sentinel: an IsolationForest score per bar (monthly models fit on a trailing window).",
)
def anomaly_scores(
    context: dg.AssetExecutionContext, warehouse: Warehouse, project_files: ProjectFiles
) -> dg.MaterializeResult:
    settings = project_files.load().curator.anomaly
    return run_anomaly_scores(warehouse, settings, *partition_dates(context)).result()
