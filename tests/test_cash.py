"""Cash returns: zero, a constant rate, or a risk-free series read without look-ahead."""

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from quantlab.backtest.cash import cash_returns, daily_from_annual
from quantlab.backtest.run import backtest_strategy
from quantlab.calendar import sessions
from quantlab.config import ConfigError
from quantlab.strategy_lab.spec import Cash, StrategySpec, load_strategy

DAYS = sessions(dt.date(2012, 1, 3), dt.date(2012, 1, 10))  # Jan 3, 4, 5, 6, 9, 10


def test_no_cash_return_by_default() -> None:
    assert cash_returns(Cash(), DAYS) is None
    assert cash_returns(Cash(annual_rate=0.0), DAYS) is None


def test_constant_rate_compounds_to_the_annual_rate() -> None:
    r = cash_returns(Cash(annual_rate=0.05), DAYS)
    assert r is not None and r.shape == (6,)
    assert (1 + r[0]) ** 252 == pytest.approx(1.05, rel=1e-12)


def test_series_uses_the_last_quote_strictly_before_each_session(tmp_path: Path) -> None:
    path = tmp_path / "rf.csv"
    path.write_text("date,rate\n2012-01-04,0.02\n2012-01-06,0.04\n")
    r = cash_returns(Cash(series=str(path)), DAYS)
    expected = daily_from_annual(np.array([0.0, 0.0, 0.02, 0.02, 0.04, 0.04]))
    np.testing.assert_allclose(r, expected, rtol=0, atol=0)


def test_bad_series_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rf.csv"
    path.write_text("day,yield\n2012-01-04,0.02\n")
    with pytest.raises(ValueError, match="rf.csv"):
        cash_returns(Cash(series=str(path)), DAYS)


def _strategy(tmp_path: Path, cash: str) -> Path:
    (tmp_path / "strategies").mkdir(exist_ok=True)
    path = tmp_path / "strategies" / "cashy.yaml"
    path.write_text(f"id: cashy\nuniverse: {{symbols: [AAA]}}\nsignal: {{score: mom_20}}\ncash: {cash}\n")
    return path


def test_series_path_is_resolved_next_to_the_strategy(tmp_path: Path) -> None:
    (tmp_path / "rf.csv").write_text("date,rate\n2012-01-02,0.03\n")
    spec = load_strategy(_strategy(tmp_path, "{series: ../rf.csv}"))
    assert spec.cash.series == str((tmp_path / "rf.csv").resolve())


def test_missing_series_file_and_both_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cash\.series: no file"):
        load_strategy(_strategy(tmp_path, "{series: nowhere.csv}"))
    with pytest.raises(ConfigError, match="either `annual_rate` or `series`"):
        load_strategy(_strategy(tmp_path, "{annual_rate: 0.01, series: rf.csv}"))


def test_backtest_books_the_cash_return_on_uninvested_capital(tmp_path: Path) -> None:
    """Half invested in a flat-priced symbol: the day's return is exactly half the cash return."""
    (tmp_path / "rf.csv").write_text("date,rate\n2011-12-01,0.10\n")
    spec = load_strategy(_strategy(tmp_path, "{series: ../rf.csv}"))
    spec = StrategySpec.model_validate(
        spec.model_dump() | {"portfolio": {"long": {"top": 1}, "max_weight": 0.5}}
    )
    days = pl.Series(DAYS, dtype=pl.Date)
    ohlcv = pl.DataFrame(
        {"symbol": "AAA", "date": days, "open": 10.0, "close": 10.0, "close_raw": 10.0, "volume": 1}
    )
    targets = pl.DataFrame({"date": days, "symbol": "AAA", "weight": 0.5})
    returns, _ = backtest_strategy(ohlcv, targets, spec, DAYS[2], DAYS[-1], inception=DAYS[0])
    daily = float(daily_from_annual(0.10))
    later = returns.filter(pl.col("date") >= DAYS[3])
    np.testing.assert_allclose(later.get_column("cash_ret").to_numpy(), 0.5 * daily, rtol=1e-9)
    np.testing.assert_allclose(
        later.get_column("gross").to_numpy(), later.get_column("cash_ret").to_numpy(), rtol=1e-12
    )
