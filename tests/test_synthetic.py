"""Synthetic OHLCV universe: contract, OHLC invariants, determinism, stability and stylised facts."""

from __future__ import annotations

import datetime as dt
from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from quantlab.calendar import CALENDAR_START, sessions
from quantlab.curator import synthetic
from quantlab.curator.contract import OHLCV_SCHEMA
from quantlab.curator.synthetic import SECTORS, synthetic_ohlcv, synthetic_registry, synthetic_symbols

D = dt.date
COLUMNS = OHLCV_SCHEMA


@cache
def bars(n: int, start: dt.date, end: dt.date, seed: int = 7) -> pl.DataFrame:
    return synthetic_ohlcv(n, start, end, seed=seed)


def log_returns(df: pl.DataFrame) -> pl.DataFrame:
    ret = (pl.col("close") / pl.col("close").shift(1).over("symbol")).log()
    return df.with_columns(ret=ret).drop_nulls("ret")


def assert_invariants(df: pl.DataFrame) -> None:
    o, h, lo, c = (df[k].to_numpy() for k in ("open", "high", "low", "close"))
    assert df.null_count().sum_horizontal().item() == 0
    assert np.isfinite(np.column_stack([o, h, lo, c])).all()
    assert (lo > 0).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (np.maximum(o, c) <= h).all()
    assert (df["volume"] > 0).all()


def test_symbols_are_stable_names() -> None:
    assert synthetic_symbols(3) == ["SYN0001", "SYN0002", "SYN0003"]
    assert synthetic_symbols(12)[:3] == synthetic_symbols(3)


def test_schema_order_and_adjustment_columns() -> None:
    df = bars(4, D(2020, 1, 1), D(2020, 12, 31))
    assert df.schema == pl.Schema(COLUMNS)
    assert df.equals(df.sort("symbol", "date"))
    assert df["symbol"].unique().sort().to_list() == synthetic_symbols(4)
    assert (df["close_raw"] == df["close"]).all()
    assert (df["adj_factor"] == 1.0).all()


def test_dates_are_exactly_the_nyse_sessions() -> None:
    start, end = D(2012, 10, 20), D(2013, 1, 10)  # includes the Hurricane Sandy closure and holidays
    df = bars(3, start, end)
    expected = sessions(start, end)
    for sym in synthetic_symbols(3):
        assert df.filter(pl.col("symbol") == sym)["date"].to_list() == expected
    assert D(2012, 10, 29) not in expected


def test_ohlc_invariants_and_overnight_gaps() -> None:
    df = bars(6, D(2000, 1, 1), D(2012, 12, 31))
    assert_invariants(df)
    gaps = df.with_columns(prev=pl.col("close").shift(1).over("symbol")).drop_nulls("prev")
    assert (gaps["open"] != gaps["prev"]).mean() > 0.99
    # intraday range is present on (almost) every bar
    assert ((df["high"] > df[["open", "close"]].max_horizontal()).mean()) > 0.95
    assert ((df["low"] < df[["open", "close"]].min_horizontal()).mean()) > 0.95


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 4),
    start=st.dates(D(1990, 1, 1), D(2026, 6, 30)),
    days=st.integers(0, 400),
)
def test_invariants_hold_for_any_seed_and_window(seed: int, n: int, start: dt.date, days: int) -> None:
    start = max(start, CALENDAR_START)
    df = synthetic_ohlcv(n, start, start + dt.timedelta(days=days), seed=seed)
    assert df.schema == pl.Schema(COLUMNS)
    assert df.height == n * len(sessions(start, start + dt.timedelta(days=days)))
    assert_invariants(df)


def test_reproducible_for_a_seed_and_different_across_seeds() -> None:
    a = synthetic_ohlcv(3, D(2018, 1, 1), D(2018, 6, 30), seed=11)
    assert_frame_equal(a, synthetic_ohlcv(3, D(2018, 1, 1), D(2018, 6, 30), seed=11))
    b = synthetic_ohlcv(3, D(2018, 1, 1), D(2018, 6, 30), seed=12)
    assert a.select("symbol", "date").equals(b.select("symbol", "date"))
    assert not np.isclose(a["close"].to_numpy(), b["close"].to_numpy()).any()
    assert not synthetic_registry(50, seed=11).equals(synthetic_registry(50, seed=12))


def test_extending_end_never_changes_earlier_rows() -> None:
    short = bars(4, D(2005, 3, 1), D(2010, 6, 30))
    long = bars(4, D(2005, 3, 1), D(2016, 2, 29))
    assert_frame_equal(short, long.filter(pl.col("date") <= D(2010, 6, 30)))


def test_moving_start_never_changes_rows() -> None:
    full = bars(4, CALENDAR_START, D(2016, 2, 29))
    for start in (D(2005, 3, 1), D(2015, 7, 4), D(2016, 2, 29)):
        assert_frame_equal(synthetic_ohlcv(4, start, D(2016, 2, 29)), full.filter(pl.col("date") >= start))


def test_each_variate_stream_is_prefix_stable() -> None:
    """Drawing n then m > n values from a stream gives the same first n values (what the anchoring needs)."""
    for variate in range(7):
        a, b = (
            synthetic._rng(7, synthetic._SYMBOL, 3, variate),
            synthetic._rng(7, synthetic._SYMBOL, 3, variate),
        )
        np.testing.assert_array_equal(synthetic._unit_t(a, 4.5, 1000), synthetic._unit_t(b, 4.5, 2500)[:1000])
        a, b = (
            synthetic._rng(7, synthetic._SYMBOL, 3, variate),
            synthetic._rng(7, synthetic._SYMBOL, 3, variate),
        )
        np.testing.assert_array_equal(a.standard_normal(999), b.standard_normal(5000)[:999])
        a, b = (
            synthetic._rng(7, synthetic._SYMBOL, 3, variate),
            synthetic._rng(7, synthetic._SYMBOL, 3, variate),
        )
        np.testing.assert_array_equal(a.standard_exponential(1001), b.standard_exponential(3000)[:1001])


def test_streams_are_keyed_apart() -> None:
    keys = [(7, 0, 0, 2), (7, 1, 0, 2), (7, 2, 0, 2), (7, 2, 1, 2), (7, 2, 1, 3), (8, 2, 1, 3)]
    draws = [synthetic._rng(*k).random(4) for k in keys]
    assert len({d.tobytes() for d in draws}) == len(keys)


def test_a_symbol_does_not_depend_on_the_universe_size() -> None:
    small = bars(3, D(2011, 1, 1), D(2013, 12, 31))
    large = bars(8, D(2011, 1, 1), D(2013, 12, 31))
    assert_frame_equal(small, large.filter(pl.col("symbol").is_in(synthetic_symbols(3))))
    reg_small, reg_large = synthetic_registry(3), synthetic_registry(8)
    assert_frame_equal(reg_small, reg_large.head(3))


def test_symbols_subset_equals_the_filtered_full_output() -> None:
    full = bars(8, D(2011, 1, 1), D(2013, 12, 31))
    subset = ["SYN0007", "SYN0002", "SYN0005", "SYN0002"]
    got = synthetic_ohlcv(8, D(2011, 1, 1), D(2013, 12, 31), symbols=subset)
    assert_frame_equal(got, full.filter(pl.col("symbol").is_in(subset)))
    empty = synthetic_ohlcv(8, D(2011, 1, 1), D(2013, 12, 31), symbols=[])
    assert empty.is_empty() and empty.schema == pl.Schema(COLUMNS)


def test_window_without_sessions_is_empty_with_the_schema() -> None:
    df = synthetic_ohlcv(3, D(2021, 7, 3), D(2021, 7, 5))  # Saturday to the Independence Day holiday
    assert df.is_empty() and df.schema == pl.Schema(COLUMNS)


def test_fat_tails() -> None:
    rets = log_returns(bars(8, D(2015, 1, 1), D(2019, 12, 31)))
    kurt = rets.group_by("symbol").agg(pl.col("ret").kurtosis())["ret"]  # excess kurtosis
    assert kurt.mean() > 1.0
    assert (kurt > 0.5).all()


def test_returns_are_positively_cross_correlated() -> None:
    rets = log_returns(bars(8, D(2015, 1, 1), D(2019, 12, 31)))
    wide = rets.pivot(on="symbol", index="date", values="ret").drop("date").to_numpy()
    corr = np.corrcoef(wide.T)[np.triu_indices(wide.shape[1], 1)]
    assert 0.05 < corr.mean() < 0.6


def test_volatility_drift_and_volume_are_plausible() -> None:
    rets = log_returns(bars(8, D(2000, 1, 1), D(2012, 12, 31)))
    stats = rets.group_by("symbol").agg(
        vol=pl.col("ret").std() * np.sqrt(252),
        vcorr=pl.corr(pl.col("volume").log(), pl.col("ret").abs()),
    )
    assert stats["vol"].is_between(0.08, 0.9).all()
    assert (stats["vcorr"] > 0.1).all()  # volume rises with |return|
    params = synthetic._symbol_params(7, list(range(1, 201)))
    assert ((params["vol"] >= 0.15) & (params["vol"] <= 0.6)).all()
    assert ((params["drift"] * 252 > 0.01) & (params["drift"] * 252 < 0.1)).all()


def test_registry() -> None:
    reg = synthetic_registry(30)
    assert reg.schema == pl.Schema({"symbol": pl.String, "name": pl.String, "sector": pl.String})
    assert reg["symbol"].to_list() == synthetic_symbols(30)
    assert set(reg["sector"]) <= set(SECTORS)
    assert reg["name"].str.len_chars().min() > 0
    assert_frame_equal(reg, synthetic_registry(30, seed=7))
    assert reg["sector"].n_unique() >= 5


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: synthetic_ohlcv(0, D(2020, 1, 1), D(2020, 2, 1)), "n_symbols"),
        (lambda: synthetic_ohlcv(-3, D(2020, 1, 1), D(2020, 2, 1)), "n_symbols"),
        (lambda: synthetic_ohlcv(2, D(1989, 12, 29), D(2020, 2, 1)), "calendar start"),
        (lambda: synthetic_ohlcv(2, D(2020, 2, 1), D(2020, 1, 1)), "before start"),
        (lambda: synthetic_ohlcv(2, D(2020, 1, 1), D(2020, 2, 1), symbols=["SYN0003"]), "SYN0003"),
        (lambda: synthetic_ohlcv(2, D(2020, 1, 1), D(2020, 2, 1), seed=-1), "seed"),
        (lambda: synthetic_symbols(0), "n_symbols"),
        (lambda: synthetic_registry(0), "n_symbols"),
    ],
)
def test_bad_arguments_raise(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
