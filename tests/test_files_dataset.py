"""The `files` dataset through the Dagster chain: clean files flow through; a bad bar trips the gate."""

import datetime as dt
import warnings
from pathlib import Path

import dagster as dg
import polars as pl

from quantlab.curator.embedded import embedded_ohlcv
from quantlab.definitions import CHAIN_JOB, build_definitions
from quantlab.resources import MarketData, Warehouse

warnings.filterwarnings("ignore", message=".*(beta|preview).*")
REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2012, 3, 1)


def _files(folder: Path) -> Path:
    folder.mkdir()
    raw = embedded_ohlcv().filter(pl.col("date").is_between(dt.date(2012, 1, 3), DAY))
    for (symbol,), rows in raw.group_by("symbol"):
        rows.select(
            pl.col("date").dt.strftime("%d/%m/%Y").alias("Day"),
            pl.col("open").alias("Open"),
            pl.col("high").alias("High"),
            pl.col("low").alias("Low"),
            pl.col("close").alias("Close"),
            pl.col("volume").alias("Vol"),
        ).write_csv(folder / f"{symbol.lower()}.csv")
    return folder


def _defs(tmp_path: Path, folder: Path) -> tuple[dg.Definitions, Warehouse]:
    wh = Warehouse(database=str(tmp_path / "wh.duckdb"))
    md = MarketData(
        dataset="files",
        files_path=str(folder),
        files_columns={
            "date": "Day",
            "open": "Open",
            "high": "High",
            "low": "Low",
            "close": "Close",
            "volume": "Vol",
        },
        files_date_format="%d/%m/%Y",
    )
    return build_definitions(project_root=str(REPO), warehouse=wh, market_data=md), wh


def test_files_dataset_feeds_ohlcv(tmp_path: Path) -> None:
    defs, wh = _defs(tmp_path, _files(tmp_path / "bars"))
    job = defs.resolve_job_def(CHAIN_JOB)
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=DAY.isoformat())
    assert result.success
    stored = wh.read_table("ohlcv", DAY, DAY).sort("symbol")
    expected = (
        embedded_ohlcv().filter(pl.col("date") == DAY).with_columns(close_raw=pl.col("close"), adj_factor=1.0)
    )
    assert stored.get_column("symbol").to_list() == ["AAPL", "GOOG", "IBM", "MSFT"]
    assert stored.select("open", "close").equals(expected.sort("symbol").select("open", "close"))


def test_bad_bar_fails_the_gate_and_stops_downstream(tmp_path: Path) -> None:
    folder = _files(tmp_path / "bars")
    ibm = pl.read_csv(folder / "ibm.csv")
    ibm.with_columns(
        pl.when(pl.col("Day") == DAY.strftime("%d/%m/%Y")).then(-1.0).otherwise(pl.col("Low")).alias("Low")
    ).write_csv(folder / "ibm.csv")
    defs, wh = _defs(tmp_path, folder)
    job = defs.resolve_job_def(CHAIN_JOB)
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key=DAY.isoformat(), raise_on_error=False
    )
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["non_positive_price"].passed
    issues = wh.read_table("quality_issues", DAY, DAY)
    assert issues.filter(pl.col("rule") == "non_positive_price").get_column("symbol").to_list() == ["IBM"]
    assert not wh.has_table("features")  # blocked: nothing downstream ran
