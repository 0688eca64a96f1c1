"""Incremental ingest into a real DuckDB file: data currency, holes, the registry, continuity, schema gate."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from quantlab.assets.curator import anomaly_scores, ohlcv, run_ohlcv
from quantlab.calendar import sessions
from quantlab.curator import sources
from quantlab.curator.embedded import REGISTRY, embedded_ohlcv
from quantlab.curator.ingest import continue_history
from quantlab.curator.settings import QualitySettings
from quantlab.curator.sources import EmbeddedSource, Source
from quantlab.resources import MarketData, ProjectFiles, Warehouse

REPO = Path(__file__).resolve().parents[1]
D0, D1, D2, D3 = sessions(dt.date(2012, 3, 1), dt.date(2012, 3, 6))


def FrameSource(frame: pl.DataFrame, listed: pl.DataFrame = REGISTRY) -> Source:  # noqa: N802
    """A source serving what a vendor returned, listing the embedded registry by default."""
    return sources.FrameSource(frame, listed)


def _bars(end: dt.date = D3) -> pl.DataFrame:
    return embedded_ohlcv().filter(pl.col("date").is_between(dt.date(2012, 2, 1), end))


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    wh = Warehouse(database=str(tmp_path / "wh.duckdb"))
    run = run_ohlcv(wh, FrameSource(_bars()), dt.date(2012, 2, 1), D0)
    assert run.blocking_failures == []
    return wh


def _check(run, name: str) -> dg.AssetCheckResult:
    return next(c for c in run.checks if c.check_name == name)


def test_stale_data_blocks_unless_the_lag_is_tolerated(wh: Warehouse) -> None:
    late = _bars().filter(~((pl.col("symbol") == "MSFT") & (pl.col("date") == D1)))
    run = run_ohlcv(wh, FrameSource(late), D1, D1)
    assert run.blocking_failures == ["stale_data"]
    rows = wh.read_table("quality_issues", D1, D1).filter(pl.col("rule") == "stale_data")
    assert rows.select("symbol", "bar_date").rows() == [("MSFT", D0)]
    assert "1 session(s) behind" in rows.get_column("detail")[0]
    tolerant = run_ohlcv(wh, FrameSource(late), D1, D1, settings=QualitySettings(max_lag_sessions=1))
    assert tolerant.blocking_failures == []


def test_a_hole_in_a_range_is_a_missing_session(wh: Warehouse) -> None:
    holed = _bars().filter(~((pl.col("symbol") == "IBM") & (pl.col("date") == D2)))
    run = run_ohlcv(wh, FrameSource(holed), D1, D3)
    assert run.blocking_failures == ["missing_session"]
    rows = wh.read_table("quality_issues", D1, D3)
    assert rows.select("rule", "symbol", "date").rows() == [("missing_session", "IBM", D2)]


def test_registry_spans_and_unlisted_symbols_become_inactive(wh: Warehouse) -> None:
    registry = wh.read_table("symbols")
    assert registry.get_column("symbol").to_list() == ["AAPL", "GOOG", "IBM", "MSFT"]  # FB: no bars yet
    aapl = registry.filter(pl.col("symbol") == "AAPL").row(0, named=True)
    assert (aapl["name"], aapl["active"], aapl["first_date"], aapl["last_date"]) == (
        "Apple Inc.",
        True,
        dt.date(2012, 2, 1),
        D0,
    )
    # MSFT delisted: the source neither lists it nor serves bars; it is kept, inactive, and not expected
    gone = _bars().filter(pl.col("symbol") != "MSFT")
    run = run_ohlcv(wh, FrameSource(gone, REGISTRY.filter(pl.col("symbol") != "MSFT")), D1, D3)
    assert run.blocking_failures == []
    after = wh.read_table("symbols").filter(pl.col("symbol") == "MSFT").row(0, named=True)
    assert (after["active"], after["last_date"]) == (False, D0)
    run_ohlcv(wh, FrameSource(gone, REGISTRY.filter(pl.col("symbol") != "MSFT")), D1, D3)  # idempotent
    assert wh.read_table("symbols").height == registry.height


def test_rebased_source_history_is_continued_not_rewritten(wh: Warehouse) -> None:
    """The vendor back-adjusts its whole history for a dividend on D1: stored rows stay, new ones continue."""
    before = wh.read_table("ohlcv").sort("symbol", "date")
    k = 0.98
    vendor = _bars().with_columns(
        [
            (pl.col(c) * pl.when(pl.col("symbol") == "IBM").then(k).otherwise(1.0)).alias(c)
            for c in ("open", "high", "low", "close", "adj_factor")
        ]
    )
    run = run_ohlcv(wh, FrameSource(vendor), D1, D3)
    assert run.blocking_failures == [] and run.metadata["rebased_symbols"] == 1
    stored = wh.read_table("ohlcv").sort("symbol", "date")
    assert stored.filter(pl.col("date") <= D0).equals(before)
    original = _bars().filter(pl.col("date").is_between(D1, D3)).sort("symbol", "date")
    new = stored.filter(pl.col("date") >= D1)
    assert new.select("symbol", "date", "close_raw", "volume").equals(
        original.select("symbol", "date", "close_raw", "volume")
    )
    for col in ("close", "adj_factor", "open"):
        assert (new[col] - original[col]).abs().max() < 1e-9 * original[col].abs().max()


def test_continue_history_is_exact_when_nothing_was_rebased() -> None:
    bars = _bars()
    previous = bars.filter(pl.col("date") == D0).select("symbol", "date", "close", "close_raw", "adj_factor")
    out, rebased = continue_history(bars, previous, D1)
    assert rebased.is_empty() and out.equals(bars.filter(pl.col("date") >= D1))


def test_schema_violation_writes_nothing_and_fails_the_schema_check(wh: Warehouse) -> None:
    bad = _bars().with_columns(
        pl.when(pl.col("date") == D1).then(None).otherwise(pl.col("symbol")).alias("symbol")
    )
    run = run_ohlcv(wh, FrameSource(bad), D1, D1)
    schema = _check(run, "schema")
    assert not schema.passed and schema.severity == dg.AssetCheckSeverity.ERROR
    assert schema.metadata["failing_rows"].value > 0
    assert "not_evaluated" in _check(run, "duplicates").metadata
    assert wh.read_table("ohlcv", D1, D1).is_empty()


def test_quality_report_gives_coverage_duplicates_invalid_prices_and_latency(
    wh: Warehouse, tmp_path: Path
) -> None:
    holed = pl.concat([_bars(), _bars().filter((pl.col("symbol") == "AAPL") & (pl.col("date") == D1))])
    holed = holed.filter(~((pl.col("symbol") == "IBM") & (pl.col("date") == D2)))
    run = run_ohlcv(wh, FrameSource(holed), D1, D3, run_dir=tmp_path)
    text = (tmp_path / "reports" / "quality_report.md").read_text()
    assert "(11 of 12 expected symbol-sessions)" in text  # 4 symbols x 3 sessions; FB has no bars yet
    assert run.metadata["coverage_pct"] == round(100 * 11 / 12, 2)
    assert "1 surplus bars" in text and "invalid prices: 0 bar(s)" in text
    assert "duplicates" in text and "missing_session" in text
    assert "latency: newest bar lags the last session by max 0" in text


def test_anomaly_asset_warns_on_the_real_crash(tmp_path: Path) -> None:
    """AAPL's 2000-09-29 crash, scored by the `anomaly_scores` asset in a real single-partition run."""
    wh = Warehouse(database=str(tmp_path / "wh.duckdb"))
    crash = dt.date(2000, 9, 29)
    assert run_ohlcv(wh, EmbeddedSource(), dt.date(2000, 3, 1), crash).blocking_failures == []
    resources = {
        "warehouse": wh,
        "project_files": ProjectFiles(root=str(REPO), artifacts=str(tmp_path / "a")),
    }
    result = dg.materialize([anomaly_scores], resources=resources, partition_key=crash.isoformat())
    assert result.success  # a warning never blocks
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "anomalies" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert "| 2000-09-29 | AAPL |" in check.metadata["top"].value
    stored = wh.read_table("anomaly_scores", crash, crash).sort("score", descending=True)
    assert stored.get_column("symbol")[0] == "AAPL" and stored.get_column("score")[0] >= 0.75
    assert stored.get_column("model_date").unique().to_list() == [dt.date(2000, 8, 31)]


def test_synthetic_dataset_through_the_assets(tmp_path: Path) -> None:
    wh = Warehouse(database=str(tmp_path / "wh.duckdb"))
    day = dt.date(2025, 6, 2)
    resources = {
        "warehouse": wh,
        "market_data": MarketData(dataset="synthetic", synthetic_symbols=8),
        "project_files": ProjectFiles(root=str(REPO), artifacts=str(tmp_path / "a")),
    }
    result = dg.materialize([ohlcv, anomaly_scores], resources=resources, partition_key=day.isoformat())
    assert result.success
    assert wh.read_table("ohlcv", day, day).height == 8
    assert wh.read_table("anomaly_scores", day, day).height == 8  # no history yet: null scores, still rows
    registry = wh.read_table("symbols")
    assert registry.height == 8 and registry.get_column("active").all()
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()}["missing_session"]
