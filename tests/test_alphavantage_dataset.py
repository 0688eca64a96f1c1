"""The `alphavantage` dataset through the Dagster `ohlcv` asset: a local server answering with the recorded
fixtures, the key from ALPHAVANTAGE_API_KEY through an `EnvVar`, never in the run's events."""

import datetime as dt
import warnings
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from av_server import serve

from quantlab.assets.curator import ohlcv
from quantlab.resources import MarketData, ProjectFiles, Warehouse
from quantlab.resources.market_data import API_KEY_ENV, AlphaVantageConfig

warnings.filterwarnings("ignore", message=".*(beta|preview).*")
REPO = Path(__file__).resolve().parents[1]
KEY = "QLTESTKEY7F3A9C2E"  # the key error_daily_limit.json echoes
ROUTES = {("TIME_SERIES_DAILY_ADJUSTED", "IBM", "json"): "daily_adjusted_IBM.json"}
SPLIT, BEFORE = dt.date(2024, 3, 18), dt.date(2024, 3, 15)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, KEY)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _materialize(
    tmp_path: Path, url: str, instance: dg.DagsterInstance, **run: object
) -> dg.ExecuteInProcessResult:
    market_data = MarketData(
        dataset="alphavantage",
        alphavantage=AlphaVantageConfig(
            api_key=dg.EnvVar(API_KEY_ENV),
            symbols=["IBM"],
            adjusted=True,
            outputsize="full",
            base_url=url,
            retry_budget_s=0,
        ),
    )
    resources = {
        "warehouse": Warehouse(database=str(tmp_path / "wh.duckdb")),
        "market_data": market_data,
        "project_files": ProjectFiles(root=str(REPO), artifacts=str(tmp_path / "artifacts")),
    }
    return dg.materialize([ohlcv], resources=resources, instance=instance, raise_on_error=False, **run)


def _no_key_in_events(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    for record in instance.all_logs(result.run_id):
        assert KEY not in str(record)


def test_ingest_through_the_asset_continues_across_a_split(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with serve(ROUTES) as (url, seen):
        ranged = _materialize(
            tmp_path,
            url,
            instance,
            tags={
                "dagster/asset_partition_range_start": "2024-02-01",
                "dagster/asset_partition_range_end": BEFORE.isoformat(),
            },
        )
        day = _materialize(tmp_path, url, instance, partition_key=SPLIT.isoformat())
    assert ranged.success and day.success
    assert {q["apikey"] for q in seen} == {KEY} and {q["function"] for q in seen} == {
        "TIME_SERIES_DAILY_ADJUSTED"
    }
    _no_key_in_events(instance, ranged)
    _no_key_in_events(instance, day)
    stored = Warehouse(database=str(tmp_path / "wh.duckdb")).read_table("ohlcv").sort("date")
    assert stored.get_column("date").max() == SPLIT
    a, b = (
        stored.filter(pl.col("date") == BEFORE).row(0, named=True),
        stored.filter(pl.col("date") == SPLIT).row(0, named=True),
    )
    # a 2:1 split on the 18th: the raw close halves, the adjusted close moves by the true return
    assert b["close_raw"] / a["close_raw"] < 0.55
    assert b["close"] / a["close"] == pytest.approx(2 * b["close_raw"] / a["close_raw"], rel=1e-12)
    checks = {e.check_name: e.passed for e in day.get_asset_check_evaluations()}
    assert checks["extreme_jump"] and checks["stale_data"] and checks["schema"]


def test_daily_limit_fails_the_step_without_leaking_the_key(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    limited = {("TIME_SERIES_DAILY_ADJUSTED", "IBM", "json"): "error_daily_limit.json"}
    with serve(limited) as (url, _):
        result = _materialize(tmp_path, url, instance, partition_key=SPLIT.isoformat())
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "DailyLimitError" in str(failure.event_specific_data.error) and "25 requests per day" in str(
        failure.event_specific_data.error
    )
    _no_key_in_events(instance, result)
    assert not Warehouse(database=str(tmp_path / "wh.duckdb")).has_table("ohlcv")  # nothing half-written
