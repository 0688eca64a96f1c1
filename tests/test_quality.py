"""Quality rules on real bars: the embedded history is clean except AAPL's real crash of 2000-09-29."""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from quantlab.assets.curator import run_ohlcv
from quantlab.calendar import sessions
from quantlab.curator.embedded import embedded_ohlcv
from quantlab.curator.quality import quality_issues
from quantlab.curator.sources import EmbeddedSource
from quantlab.resources import Warehouse


def _firsts(bars: pl.DataFrame) -> dict[str, dt.date]:
    return dict(bars.group_by("symbol").agg(pl.col("date").min()).iter_rows())


def test_embedded_history_flags_only_the_real_crash() -> None:
    bars = embedded_ohlcv()
    issues = quality_issues(bars, sessions(dt.date(2000, 3, 1), dt.date(2013, 3, 1)), _firsts(bars))
    assert issues.select("rule", "symbol", "bar_date").rows() == [
        ("extreme_jump", "AAPL", dt.date(2000, 9, 29))
    ]
    assert issues.get_column("severity").to_list() == ["warn"]
    assert "-51.9%" in issues.get_column("detail")[0]


def test_split_missing_from_the_adjustment_factor_is_a_jump() -> None:
    """MSFT's 2003-02-18 split with the factor left unchanged: the adjusted close halves."""
    bars = embedded_ohlcv().filter(
        (pl.col("symbol") == "MSFT") & pl.col("date").is_between(dt.date(2003, 2, 10), dt.date(2003, 2, 21))
    )
    f0 = pl.col("adj_factor").first()
    broken = bars.with_columns(
        *[(pl.col(c) / pl.col("adj_factor") * f0).alias(c) for c in ("open", "high", "low")],
        close=pl.col("close_raw") * f0,
        adj_factor=f0,
    )
    issues = quality_issues(broken, [], {})
    assert issues.select("rule", "bar_date").rows() == [("extreme_jump", dt.date(2003, 2, 18))]
    assert quality_issues(bars, [], {}).is_empty()  # with the factor applied, the split is no jump


def test_first_bar_of_a_range_is_compared_with_the_stored_previous_bar(tmp_path: Path) -> None:
    wh = Warehouse(database=str(tmp_path / "wh.duckdb"))
    before, crash = dt.date(2000, 9, 28), dt.date(2000, 9, 29)
    assert run_ohlcv(wh, EmbeddedSource(), before, before).blocking_failures == []
    run = run_ohlcv(wh, EmbeddedSource(), crash, crash)
    jump = next(c for c in run.checks if c.check_name == "extreme_jump")
    assert not jump.passed and jump.severity == dg.AssetCheckSeverity.WARN
    assert run.blocking_failures == []  # a warning: the chain goes on
    stored = wh.read_table("quality_issues", crash, crash)
    assert stored.select("rule", "symbol").rows() == [("extreme_jump", "AAPL")]
