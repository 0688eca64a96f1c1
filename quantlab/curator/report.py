"""`quality_report.md`: coverage, duplicate rate, invalid prices and latency of one ingest (pure polars)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from quantlab.calendar import sessions_through
from quantlab.markdown import md_table

_MAX_ISSUES = 30


@dataclass(frozen=True)
class QualityReport:
    markdown: str
    coverage_pct: float


def quality_report(
    bars: pl.DataFrame,
    issues: pl.DataFrame,
    sessions: list[dt.date],
    expected: dict[str, dt.date],
    dataset: str,
    fetch_seconds: float,
    rebased: pl.DataFrame,
) -> QualityReport:
    """Coverage = bars present on expected (symbol, session) pairs / expected pairs; duplicate rate =
    surplus bars / bars; invalid prices = bars failing non_positive_price or ohlc_consistency; latency =
    sessions between each symbol's newest bar and the range's last session, and the source's fetch time."""
    end = sessions[-1] if sessions else None
    present = bars.select("symbol", "date").unique()
    firsts = pl.DataFrame(
        {"symbol": list(expected), "first": list(expected.values())},
        schema={"symbol": pl.String, "first": pl.Date},
    ).sort("symbol")
    before = np.searchsorted(
        np.array(sessions, dtype="datetime64[D]"), firsts["first"].to_numpy(), side="left"
    )
    due = firsts.select("symbol", expected=pl.Series(len(sessions) - before, dtype=pl.Int64))
    have = (
        present.filter(pl.col("date").is_in(sessions))
        .group_by("symbol")
        .agg(pl.len().cast(pl.Int64).alias("present"))
    )
    newest = bars.group_by("symbol").agg(pl.col("date").max().alias("newest_bar"))
    cov = (
        due.join(have, on="symbol", how="left")
        .join(newest, on="symbol", how="left")
        .with_columns(pl.col("present").fill_null(0))
    )
    if end is not None:
        lag = sessions_through(pl.Series([end] * cov.height, dtype=pl.Date)) - sessions_through(
            cov.get_column("newest_bar").fill_null(dt.date(1970, 1, 1))
        )
        cov = cov.with_columns(lag_sessions=pl.Series(lag, dtype=pl.Int64))
        cov = cov.with_columns(
            pl.when(pl.col("newest_bar").is_null())
            .then(None)
            .otherwise(pl.col("lag_sessions"))
            .alias("lag_sessions")
        )
    cov = cov.with_columns(coverage_pct=(100 * pl.col("present") / pl.col("expected")).round(2))
    total_expected, total_present = int(cov["expected"].sum() or 0), int(cov["present"].sum() or 0)
    coverage = round(100.0 * total_present / total_expected, 2) if total_expected else 100.0
    rows = bars.height
    surplus = rows - present.height
    invalid = issues.filter(pl.col("rule").is_in(["non_positive_price", "ohlc_consistency"])).height
    by_rule = issues.group_by("rule", "severity").agg(pl.len().alias("issues")).sort("rule")
    lags = cov.get_column("lag_sessions") if "lag_sessions" in cov.columns else pl.Series([], dtype=pl.Int64)
    md = [
        f"# Quality report — {dataset}, {sessions[0] if sessions else '-'} to {end or '-'}",
        "",
        f"- sessions: {len(sessions)}; symbols expected: {len(expected)}; bars: {rows}",
        f"- coverage: **{coverage}%** ({total_present} of {total_expected} expected symbol-sessions)",
        f"- duplicate rate: {(100.0 * surplus / rows if rows else 0.0):.3f}% ({surplus} surplus bars)",
        f"- invalid prices: {invalid} bar(s) (missing, non-positive or inconsistent OHLC)",
        f"- latency: newest bar lags the last session by max {lags.max() if lags.len() else '-'} / "
        f"median {lags.median() if lags.len() else '-'} session(s); source fetch {fetch_seconds:.2f} s",
        f"- adjusted history continued across a re-basing for {rebased.height} symbol(s)",
        "",
        "## Issues by rule",
        "",
        md_table(by_rule),
        "",
        "## Coverage by symbol",
        "",
        md_table(cov, max_rows=len(expected)),
        "",
        f"## First {_MAX_ISSUES} issues",
        "",
        md_table(issues.select("date", "rule", "severity", "symbol", "bar_date", "detail"), _MAX_ISSUES),
    ]
    if rebased.height:
        md += ["", "## Re-based symbols", "", md_table(rebased)]
    return QualityReport(markdown="\n".join(md) + "\n", coverage_pct=coverage)
